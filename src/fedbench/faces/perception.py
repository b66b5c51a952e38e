"""Perception, once per image: faces, landmarks, blendshapes, emotion, identity and quality.

`ImageFeatures` is what the feature cache stores and what every FED-Score component reads. It keeps
every face found (largest first) so that E and G can later pick the face that overlaps S's face.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Annotated, Literal

import cv2
import numpy as np
from pydantic import BaseModel, Field, model_validator

from fedbench.faces.emotion import BlendshapePrototype, EmotionEnsemble, FacexCNN, FerCNN, grey_of
from fedbench.faces.faceapi import FaceApiCNN
from fedbench.faces.geometry import box_area, box_iou, bounding_box
from fedbench.faces.identity import OnnxArcFace, SFace
from fedbench.faces.landmarks import FaceLandmarker, FaceObservation
from fedbench.faces.quality import laplacian_quality
from fedbench.models.store import ARTIFACTS

# Bump when anything below changes the numbers for the same config. 2: a frame without a face is
# padded and searched again (tight crops), and the padding is recorded. 3: SFace runs at int8 by
# default (identity_precision; faces/sface_int8.py).
PERCEPTION_VERSION = "3"

# Native libraries whose version can change a perceived number for the same model files: the
# landmarker (mediapipe), OpenVINO and LiteRT runtimes, and OpenCV (decoding, resizing, crops, SFace
# on the reference runtime). Every OpenCV distribution is listed: whichever is installed is keyed.
PERCEPTION_LIBRARIES: tuple[str, ...] = (
    "mediapipe", "openvino", "ai-edge-litert",
    "opencv-contrib-python", "opencv-python", "opencv-python-headless", "opencv-contrib-python-headless",
)

# The model-store files each emotion member loads (the blendshape prototype loads none).
MEMBER_ARTIFACTS: dict[str, tuple[str, ...]] = {
    "fer-cnn": ("fer-cnn",), "facex-cnn": ("facex-cnn",),
    "faceapi-cnn": ("faceapi-expression", "faceapi-expression-manifest"),
}

FUSION_V1_MEMBERS = ("fer-cnn", "facex-cnn", "faceapi-cnn")  # what fusion_head_v1/v2.json read (tested)

ImageStatus = Literal["ok", "no_face", "multi_face"]
PadMode = Literal["replicate", "grey"]  # what fills the border of a padded retry


class PerceptionConfig(BaseModel):
    """Which backbones perceive the images. The defaults run offline from PyPI wheels."""

    max_side: int = Field(1024, ge=128, description="long side of the working copy of each image")
    runtime: Literal["openvino", "reference"] = Field(
        "openvino", description="openvino: SFace and facex at fp32 on OpenVINO (fast); reference: "
        "OpenCV dnn and LiteRT on the shipped files")
    identity: Literal["sface", "arcface-onnx"] = "sface"
    identity_model: Path | None = Field(None, description="ONNX file for identity='arcface-onnx'")
    identity_precision: Literal["int8", "fp32"] = Field(
        "int8", description="SFace on OpenVINO: int8 (post-training quantised, about 3x faster; identity cosines "
        "within about 0.01 of fp32 on average, benchmarks/quantise_sface.py) or fp32 (the published weights "
        "exactly); the reference runtime always runs the published file")
    identity_threshold: float | None = Field(None, description="different-person cosine (c0) override")
    emotion_members: list[Literal["fer-cnn", "facex-cnn", "blendshape-prototype", "faceapi-cnn"]] = [
        "fer-cnn", "facex-cnn", "faceapi-cnn", "blendshape-prototype",
    ]
    emotion_weights: list[float] | None = None
    emotion_head: Literal["fusion-v1", "fusion-v2", "mean"] = Field(
        "fusion-v2", description="fusion-v2 (default): the calibrated head over the members, blendshapes and "
        "face shape (faces/fusion.py), fitted on the dev faces and their mirror images with the rare classes "
        "weighted up (docs/perception.md); fusion-v1: the first fit, balanced weights, no mirrors; mean: the "
        "members' (weighted) mean")
    max_faces: int = Field(4, ge=1)
    # Measured on the faces-in-the-wild dev images and tight crops of them (benchmarks/tight_crops.py,
    # docs/perception.md): mid-grey recovers more than repeated edges, and the two sizes find different faces.
    pad_retry: list[Annotated[float, Field(gt=0.0, le=1.0)]] = Field(
        [0.15, 0.5], description="when no face is found, pad each side by each fraction of the long side in "
        "turn and search again until a face is found (a face that fills the frame is missed otherwise); "
        "[] turns it off")
    pad_mode: PadMode = Field(
        "grey", description="what fills the padding: mid-grey, or the edge pixels repeated")

    @model_validator(mode="after")
    def _head_has_its_members(self) -> "PerceptionConfig":
        if self.emotion_head != "mean":
            missing = [m for m in FUSION_V1_MEMBERS if m not in self.emotion_members]
            if missing:
                raise ValueError(f"emotion_head '{self.emotion_head}' reads the members {', '.join(missing)}; add them to "
                                 "emotion_members, or set emotion_head='mean'")
        return self

    def artifacts(self) -> list[str]:
        """Names of the model-store artifacts these backbones load (the store verifies each file
        against its pinned sha256 on every load, so the pinned digest is the file's digest)."""
        names = ["face-landmarker"]
        if self.identity == "sface":
            names.append("sface")
        for m in self.emotion_members:
            names += MEMBER_ARTIFACTS.get(m, ())
        return names

    @property
    def uses_sface_int8(self) -> bool:
        """The identity network is the int8 SFace derived from the published file."""
        return self.identity == "sface" and self.runtime == "openvino" and self.identity_precision == "int8"

    def signature(self) -> str:
        """Stable text that keys the feature cache: same signature, same numbers. Besides the config
        it holds the versions of the native libraries and the sha256 of every model file used, so a
        changed library or model is perceived afresh instead of mixing with old features."""
        parts = self.model_dump(mode="json")
        if self.identity_model is not None:
            from fedbench.models.store import sha256_of

            parts["identity_model"] = sha256_of(self.identity_model)
        if self.emotion_head != "mean":
            from fedbench.faces.fusion import load_head

            parts["emotion_head_sha256"] = load_head(self.emotion_head).sha256
        parts["artifacts"] = {n: ARTIFACTS[n].sha256 for n in self.artifacts()}
        if self.uses_sface_int8:
            from fedbench.models.store import SFACE_INT8_SHA256

            parts["artifacts"]["sface-int8"] = SFACE_INT8_SHA256  # the derived file the identity net runs
        parts["libraries"] = library_versions()
        parts["perception_version"] = PERCEPTION_VERSION
        return json.dumps(parts, sort_keys=True)


def dist_version(dist: str) -> str | None:
    """The installed version of a distribution, or None when it is not installed."""
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def library_versions() -> dict[str, str | None]:
    """Installed version of each library in PERCEPTION_LIBRARIES (None: not installed)."""
    return {d: dist_version(d) for d in PERCEPTION_LIBRARIES}


@dataclass
class FaceFeatures:
    landmarks: np.ndarray  # 478 x 3, normalised
    blendshapes: np.ndarray  # 52
    box: np.ndarray  # x0, y0, x1, y1 normalised
    emotion: np.ndarray  # 7, EXPRESSIONS order
    members: np.ndarray  # M x 7
    embedding: np.ndarray  # unit vector
    quality: float


@dataclass
class ImageFeatures:
    status: ImageStatus
    size: tuple[int, int]  # working copy (w, h)
    faces: list[FaceFeatures]
    member_names: list[str]
    # Pixels of border added on each side of the working copy before the faces were found (0: the
    # frame as it is). Landmarks and boxes are always in the unpadded frame's coordinates.
    padding: int = 0

    def primary(self, reference_box: np.ndarray | None = None) -> FaceFeatures | None:
        """The largest face, or with a reference box the face that overlaps it best."""
        if not self.faces:
            return None
        if reference_box is None:
            return self.faces[0]
        overlaps = [box_iou(f.box, reference_box) for f in self.faces]
        return self.faces[int(np.argmax(overlaps))]

    def to_bytes(self) -> bytes:
        buf = io.BytesIO()
        arrays: dict[str, np.ndarray] = {
            "meta": np.frombuffer(
                json.dumps({"status": self.status, "size": list(self.size), "members": self.member_names,
                            "padding": self.padding}).encode(),
                dtype=np.uint8,
            )
        }
        if self.faces:
            arrays.update(
                landmarks=np.stack([f.landmarks for f in self.faces]),
                blendshapes=np.stack([f.blendshapes for f in self.faces]),
                box=np.stack([f.box for f in self.faces]),
                emotion=np.stack([f.emotion for f in self.faces]),
                members=np.stack([f.members for f in self.faces]),
                embedding=np.stack([f.embedding for f in self.faces]),
                quality=np.array([f.quality for f in self.faces], dtype=np.float64),
            )
        np.savez(buf, **arrays)
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> "ImageFeatures":
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            meta = json.loads(bytes(z["meta"]).decode())
            faces = []
            if "landmarks" in z:
                for i in range(len(z["landmarks"])):
                    faces.append(
                        FaceFeatures(
                            landmarks=z["landmarks"][i], blendshapes=z["blendshapes"][i], box=z["box"][i],
                            emotion=z["emotion"][i], members=z["members"][i], embedding=z["embedding"][i],
                            quality=float(z["quality"][i]),
                        )
                    )
        return cls(status=meta["status"], size=tuple(meta["size"]), faces=faces, member_names=meta["members"],
                   padding=int(meta.get("padding", 0)))  # blobs written before padding existed had none


def pad_frame(rgb: np.ndarray, fraction: float, mode: PadMode) -> tuple[np.ndarray, int]:
    """`rgb` with a border of `fraction` of its long side on every side, and that border in pixels."""
    h, w = rgb.shape[:2]
    pad = max(1, int(round(fraction * max(h, w))))
    if mode == "grey":
        return cv2.copyMakeBorder(rgb, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=(128, 128, 128)), pad
    return cv2.copyMakeBorder(rgb, pad, pad, pad, pad, cv2.BORDER_REPLICATE), pad


def unpad_observations(found: list[FaceObservation], pad: int, w: int, h: int) -> list[FaceObservation]:
    """Landmarks found in a frame padded by `pad` pixels, back in the w x h original's normalised
    coordinates: x' = (x * (w + 2 pad) - pad) / w. MediaPipe's z is on x's scale: rescaled alike."""
    pw, ph = w + 2 * pad, h + 2 * pad
    scale = np.array([pw / w, ph / h, pw / w], dtype=np.float64)
    offset = np.array([pad / w, pad / h, 0.0], dtype=np.float64)
    return [FaceObservation(landmarks=(o.landmarks.astype(np.float64) * scale - offset).astype(np.float32),
                            blendshapes=o.blendshapes) for o in found]


def detect_with_padding(landmarker: FaceLandmarker, rgb: np.ndarray, fractions: Sequence[float], mode: PadMode
                        ) -> tuple[list[FaceObservation], int]:
    """Faces in `rgb`, and the padding (pixels per side) it took to find them. A face that fills the
    frame leaves the detector no outline to see; padding the frame by each fraction in turn and
    looking again finds most such faces. Landmarks come back in the coordinates of `rgb` (they may
    reach past its edges)."""
    found = landmarker.detect(rgb)
    if found:
        return found, 0
    h, w = rgb.shape[:2]
    for fraction in fractions:
        padded, pad = pad_frame(rgb, fraction, mode)
        found = landmarker.detect(padded)
        if found:
            return unpad_observations(found, pad, w, h), pad
    return [], 0


class Perceiver:
    """Loads the configured backbones once; `perceive` turns an RGB image into ImageFeatures."""

    def __init__(self, config: PerceptionConfig | None = None, threads: int = 1) -> None:
        self.config = config or PerceptionConfig()
        c = self.config
        self.landmarker = FaceLandmarker(max_faces=c.max_faces)
        if c.identity == "sface":
            self.identity = SFace(runtime=c.runtime, threads=threads, precision=c.identity_precision)
        else:
            if c.identity_model is None:
                raise ValueError("identity='arcface-onnx' needs identity_model (an ONNX file)")
            self.identity = OnnxArcFace(path=c.identity_model, threads=threads)
        if c.identity_threshold is not None:
            self.identity.threshold = c.identity_threshold
        builders = {
            "fer-cnn": lambda: FerCNN(threads=threads),
            "facex-cnn": lambda: FacexCNN(runtime=c.runtime, threads=threads),
            "blendshape-prototype": BlendshapePrototype,
            "faceapi-cnn": lambda: FaceApiCNN(threads=threads),
        }
        head = None
        if c.emotion_head != "mean":
            from fedbench.faces.fusion import load_head

            head = load_head(c.emotion_head)
        self.emotion = EmotionEnsemble([builders[m]() for m in c.emotion_members], c.emotion_weights, head)

    def close(self) -> None:
        self.landmarker.close()

    @property
    def identity_threshold(self) -> float:
        return self.identity.threshold

    def detect(self, rgb: np.ndarray) -> tuple[list[FaceObservation], int]:
        """Faces in `rgb` and the padding it took to find them (see `detect_with_padding`)."""
        return detect_with_padding(self.landmarker, rgb, self.config.pad_retry, self.config.pad_mode)

    def perceive(self, rgb: np.ndarray) -> ImageFeatures:
        h, w = rgb.shape[:2]
        observations, padding = self.detect(rgb)
        grey = grey_of(rgb)
        scale = np.array([w, h], dtype=np.float64)
        faces = []
        for obs in observations:
            px = obs.landmarks[:, :2].astype(np.float64) * scale
            box = bounding_box(obs.landmarks)
            box_px = box.astype(np.float64) * np.concatenate([scale, scale])
            probs, members = self.emotion.predict(rgb, grey, box_px, obs.blendshapes, px)
            faces.append(
                FaceFeatures(
                    landmarks=obs.landmarks, blendshapes=obs.blendshapes, box=box,
                    emotion=probs.astype(np.float64), members=members.astype(np.float64),
                    embedding=self.identity.embed(rgb, px), quality=laplacian_quality(rgb, px),
                )
            )
        faces.sort(key=lambda f: -box_area(f.box))
        status: ImageStatus = "no_face" if not faces else ("multi_face" if len(faces) > 1 else "ok")
        return ImageFeatures(status=status, size=(w, h), faces=faces, member_names=self.emotion.names,
                             padding=padding)
