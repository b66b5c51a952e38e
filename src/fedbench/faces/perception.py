"""Perception, once per image: faces, landmarks, blendshapes, emotion, identity and quality.

`ImageFeatures` is what the feature cache stores and what every FED-Score component reads. It keeps
every face found (largest first) so that E and G can later pick the face that overlaps S's face.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, Field

from fedbench.data.images import decode_image
from fedbench.faces.emotion import BlendshapePrototype, EmotionEnsemble, FacexCNN, FerCNN, grey_of
from fedbench.faces.faceapi import FaceApiCNN
from fedbench.faces.geometry import box_area, box_iou, bounding_box
from fedbench.faces.identity import OnnxArcFace, SFace
from fedbench.faces.landmarks import FaceLandmarker
from fedbench.faces.quality import laplacian_quality

PERCEPTION_VERSION = "1"  # bump when anything below changes the numbers for the same config

ImageStatus = Literal["ok", "no_face", "multi_face"]


class PerceptionConfig(BaseModel):
    """Which backbones perceive the images. The defaults run offline from PyPI wheels."""

    max_side: int = Field(1024, ge=128, description="long side of the working copy of each image")
    runtime: Literal["openvino", "reference"] = Field(
        "openvino", description="openvino: SFace and facex at fp32 on OpenVINO (fast); reference: "
        "OpenCV dnn and LiteRT on the shipped files")
    identity: Literal["sface", "arcface-onnx"] = "sface"
    identity_model: Path | None = Field(None, description="ONNX file for identity='arcface-onnx'")
    identity_threshold: float | None = Field(None, description="different-person cosine (c0) override")
    emotion_members: list[Literal["fer-cnn", "facex-cnn", "blendshape-prototype", "faceapi-cnn"]] = [
        "fer-cnn", "facex-cnn", "faceapi-cnn", "blendshape-prototype",
    ]
    emotion_weights: list[float] | None = None
    emotion_head: Literal["fusion-v1", "mean"] = Field(
        "fusion-v1", description="fusion-v1: the calibrated head over the members, blendshapes and face shape "
        "(faces/fusion.py); mean: the members' (weighted) mean")
    max_faces: int = Field(4, ge=1)

    def signature(self) -> str:
        """Stable text that keys the feature cache: same signature, same numbers."""
        parts = self.model_dump(mode="json")
        if self.identity_model is not None:
            from fedbench.models.store import sha256_of

            parts["identity_model"] = sha256_of(self.identity_model)
        if self.emotion_head == "fusion-v1":
            from fedbench.faces.fusion import load_head

            parts["emotion_head_sha256"] = load_head().sha256
        parts["perception_version"] = PERCEPTION_VERSION
        return json.dumps(parts, sort_keys=True)


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
                json.dumps({"status": self.status, "size": list(self.size), "members": self.member_names}).encode(),
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
        return cls(status=meta["status"], size=tuple(meta["size"]), faces=faces, member_names=meta["members"])


class Perceiver:
    """Loads the configured backbones once; `perceive` turns an RGB image into ImageFeatures."""

    def __init__(self, config: PerceptionConfig | None = None, threads: int = 1) -> None:
        self.config = config or PerceptionConfig()
        c = self.config
        self.landmarker = FaceLandmarker(max_faces=c.max_faces)
        if c.identity == "sface":
            self.identity = SFace(runtime=c.runtime, threads=threads)
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
        if c.emotion_head == "fusion-v1":
            from fedbench.faces.fusion import load_head

            head = load_head()
        self.emotion = EmotionEnsemble([builders[m]() for m in c.emotion_members], c.emotion_weights, head)

    def close(self) -> None:
        self.landmarker.close()

    @property
    def identity_threshold(self) -> float:
        return self.identity.threshold

    def perceive(self, rgb: np.ndarray) -> ImageFeatures:
        h, w = rgb.shape[:2]
        observations = self.landmarker.detect(rgb)
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
        return ImageFeatures(status=status, size=(w, h), faces=faces, member_names=self.emotion.names)

    def perceive_bytes(self, data: bytes) -> tuple[ImageFeatures, np.ndarray]:
        rgb = decode_image(data, self.config.max_side).rgb
        return self.perceive(rgb), rgb
