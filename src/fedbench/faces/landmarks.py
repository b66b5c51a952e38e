"""Face Landmarker (MediaPipe): every face in the image, 478 landmarks and 52 blendshapes each."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fedbench.faces.blendshapes import BLENDSHAPE_NAMES
from fedbench.faces.native_logs import filtered_native_stderr
from fedbench.models.store import artifact_path


@dataclass(frozen=True)
class FaceObservation:
    landmarks: np.ndarray  # 478 x 3 float32; x, y normalised to the image, z relative depth
    blendshapes: np.ndarray  # 52 float32 in [0, 1], BLENDSHAPE_NAMES order


class FaceLandmarker:
    name = "face-landmarker"
    version = "face_landmarker_v2_with_blendshapes"

    def __init__(self, max_faces: int = 4, min_confidence: float = 0.5) -> None:
        from mediapipe.tasks.python import BaseOptions, vision

        options = vision.FaceLandmarkerOptions(
            base_options=BaseOptions(model_asset_path=str(artifact_path("face-landmarker"))),
            running_mode=vision.RunningMode.IMAGE,
            num_faces=max_faces,
            min_face_detection_confidence=min_confidence,
            min_face_presence_confidence=min_confidence,
            output_face_blendshapes=True,
        )
        with filtered_native_stderr():
            landmarker = vision.FaceLandmarker.create_from_options(options)
        # MediaPipe's __del__ calls close(), which raises when it runs during interpreter shutdown
        # (its dispatcher pool is gone by then). The process is ending and frees everything, so a
        # landmarker that was not closed explicitly is let go silently instead.
        landmarker.__class__ = type("FedbenchFaceLandmarker", (type(landmarker),), {"__del__": lambda _self: None})
        self._landmarker = landmarker
        self._warm = False

    def detect(self, rgb: np.ndarray) -> list[FaceObservation]:
        import mediapipe as mp

        image = mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(rgb))
        if self._warm:
            result = self._landmarker.detect(image)
        else:  # the first inference logs its delegate set-up from C++
            with filtered_native_stderr():
                result = self._landmarker.detect(image)
            self._warm = True
        faces = []
        for points, shapes in zip(result.face_landmarks, result.face_blendshapes):
            names = tuple(c.category_name for c in shapes)
            if names != BLENDSHAPE_NAMES:
                raise RuntimeError("Face Landmarker returned blendshapes in an unexpected order")
            faces.append(
                FaceObservation(
                    landmarks=np.array([(p.x, p.y, p.z) for p in points], dtype=np.float32),
                    blendshapes=np.array([c.score for c in shapes], dtype=np.float32),
                )
            )
        return faces

    def close(self) -> None:
        if self._landmarker is not None:
            self._landmarker.close()
            self._landmarker = None
