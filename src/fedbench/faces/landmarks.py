"""Face Landmarker (MediaPipe): every face in the image, 478 landmarks and 52 blendshapes each."""

from __future__ import annotations

import threading
import weakref
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
        from fedbench.faces.runtime import mediapipe_vision

        BaseOptions, vision = mediapipe_vision()  # without matplotlib.pyplot: faster worker start-up
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
        self._landmarker = landmarker
        # MediaPipe's __del__ calls close(), which raises when it runs during interpreter teardown: its
        # dispatcher's thread pool is shut down by then. So it is closed earlier, once: on close(), when
        # this wrapper is collected (the finalizer), or at exit before thread pools shut down (the
        # hook threading runs ahead of them; atexit would be too late). MediaPipe's close() is
        # idempotent, so its own __del__ then does nothing.
        self._finalizer = weakref.finalize(self, landmarker.close)
        self._finalizer.atexit = False
        threading._register_atexit(self._finalizer)  # type: ignore[attr-defined]
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
        self._finalizer()  # closes the landmarker once; later calls do nothing
        self._landmarker = None
