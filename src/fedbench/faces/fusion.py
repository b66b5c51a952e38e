"""The fusion head: one calibrated recogniser over the emotion members, the blendshapes and the face's shape.

No shipped emotion CNN reads real photographs well alone (on labelled faces in the wild each reaches a
balanced accuracy near 0.4; they confuse neutral with angry and barely see disgust). Their mistakes
differ, and the Face Landmarker's blendshapes and landmark geometry carry what the crop-based CNNs miss
(a raised upper lip, a dropped jaw). The head is a multinomial logistic regression:

    logits = a * log(mean of the CNN members' probabilities) + W x + b

where x holds the members' log-probabilities, the square roots of the 52 blendshapes and a few
pose-normalised distances of the face (brows, eyes, mouth, nose), each standardised. The offset term keeps
what the pretrained members know: with W = 0 and a = 1 the head returns their mean, and the ridge penalty
on W pulls every weight toward that prior, which is what keeps rare classes (fear, disgust) from being
fitted to a handful of examples. Classes are weighted to equal total weight, so the head targets
balanced accuracy and its probabilities are calibrated for a uniform class prior (what an editing
benchmark with balanced targets asks for).

The head is a small JSON artifact (`data/fusion_head_v1.json`) with its sha256, the identity-grouped
cross-validation figures and a description of the data it was fitted on; `benchmarks/fit_fusion_head.py`
refits it bit for bit from the feature table shipped beside it. `fusion-v2` (`data/fusion_head_v2.json`,
the default PerceptionConfig.emotion_head) is the same model fitted on every dev face and its mirror
image with class weights ~ n_class ** -1.5: more disgust and fear recall, probabilities closer to
calibrated under a uniform class prior (docs/perception.md has the comparison).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any, Mapping

import numpy as np
from scipy.optimize import minimize

from fedbench.labels import EXPRESSIONS

# Each head's artifact; its sha256 enters the feature-cache key and every summary's backbones. fusion-v1 stays
# loadable and refits bit for bit (FED-Score 2.0 was first re-measured under it); fusion-v2 is the default.
HEAD_FILES: dict[str, str] = {"fusion-v1": "fusion_head_v1.json", "fusion-v2": "fusion_head_v2.json"}
PROB_FLOOR = 1e-4  # members' probabilities are clipped here before the log: one 0 must not dominate

# MediaPipe face-mesh indices for the shape features ("left" = image left, the subject's right).
_EYE_L, _EYE_R = (33, 133), (362, 263)
_BROW_L, _BROW_R = (70, 63, 105, 66, 107), (300, 293, 334, 296, 336)
_LID_L, _LID_R = (159, 145), (386, 374)  # upper, lower eyelid
_BROW_INNER = (107, 336)
_MOUTH_CORNERS = (61, 291)
_LIPS_INNER = (13, 14)  # upper, lower inner lip
_LIPS_OUTER = (0, 17)
_SUBNASALE = 2
_NOSE_WINGS = (129, 358)
_CHIN = 152
GEOMETRY_NAMES: tuple[str, ...] = (
    "brow_raise_left", "brow_raise_right", "brow_inner_gap", "eye_open_left", "eye_open_right",
    "mouth_width", "mouth_open_inner", "mouth_open_outer", "mouth_corner_lift", "upper_lip_to_nose",
    "nose_wing_width", "chin_to_mouth", "lip_thickness",
)


def face_frame(landmarks_px: np.ndarray) -> np.ndarray:
    """Landmarks (N x 2, pixels) in a face frame: eye centres at (-0.5, 0) and (0.5, 0), roll and scale gone."""
    pts = landmarks_px[:, :2].astype(np.float64)
    left, right = pts[list(_EYE_L)].mean(axis=0), pts[list(_EYE_R)].mean(axis=0)
    axis = right - left
    iod = float(np.hypot(*axis))
    if iod < 1e-6:
        raise ValueError("degenerate landmarks: the eye centres coincide")
    c, s = axis / iod
    rot = np.array([[c, s], [-s, c]])  # rotates the eye line onto +x
    return ((pts - (left + right) / 2) @ rot.T) / iod


def geometry_features(landmarks_px: np.ndarray) -> np.ndarray:
    """Pose-normalised distances (inter-ocular units; y grows downwards), GEOMETRY_NAMES order."""
    f = face_frame(landmarks_px)
    y = f[:, 1]
    mouth_mid = (y[_LIPS_INNER[0]] + y[_LIPS_INNER[1]]) / 2
    return np.array([
        y[list(_LID_L)].min() - y[list(_BROW_L)].mean(),
        y[list(_LID_R)].min() - y[list(_BROW_R)].mean(),
        float(np.hypot(*(f[_BROW_INNER[1]] - f[_BROW_INNER[0]]))),
        y[_LID_L[1]] - y[_LID_L[0]],
        y[_LID_R[1]] - y[_LID_R[0]],
        float(np.hypot(*(f[_MOUTH_CORNERS[1]] - f[_MOUTH_CORNERS[0]]))),
        y[_LIPS_INNER[1]] - y[_LIPS_INNER[0]],
        y[_LIPS_OUTER[1]] - y[_LIPS_OUTER[0]],
        mouth_mid - (y[_MOUTH_CORNERS[0]] + y[_MOUTH_CORNERS[1]]) / 2,
        y[_LIPS_OUTER[0]] - y[_SUBNASALE],
        float(np.hypot(*(f[_NOSE_WINGS[1]] - f[_NOSE_WINGS[0]]))),
        y[_CHIN] - y[_LIPS_OUTER[1]],
        (y[_LIPS_INNER[0]] - y[_LIPS_OUTER[0]]) + (y[_LIPS_OUTER[1]] - y[_LIPS_INNER[1]]),
    ], dtype=np.float64)


def head_inputs(member_probs: Mapping[str, np.ndarray], cnn_members: tuple[str, ...], blendshapes: np.ndarray,
                landmarks_px: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(x, offset) of one face: the raw (unstandardised) feature vector and the prior's log-probabilities."""
    probs = [np.clip(np.asarray(member_probs[m], dtype=np.float64), PROB_FLOOR, 1.0) for m in cnn_members]
    prior = np.mean(probs, axis=0)
    x = np.concatenate([np.log(p) for p in probs] + [np.sqrt(np.clip(np.asarray(blendshapes, dtype=np.float64), 0.0, 1.0)),
                               geometry_features(landmarks_px)])
    return x, np.log(prior / prior.sum())


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def balanced_weights(y: np.ndarray, classes: int = len(EXPRESSIONS)) -> np.ndarray:
    """Per-sample weights that give every class present the same total weight."""
    counts = np.bincount(y, minlength=classes).astype(np.float64)
    per_class = np.divide(len(y), (counts > 0).sum() * counts, out=np.zeros(classes), where=counts > 0)
    return per_class[y]


def class_weights(y: np.ndarray, power: float = 1.0, classes: int = len(EXPRESSIONS)) -> np.ndarray:
    """Per-sample weights proportional to n_class ** -power, summing to len(y). Power 1 is
    `balanced_weights` (exactly); above 1 a rare class weighs more than a common one in total."""
    if power == 1.0:
        return balanced_weights(y, classes)
    counts = np.bincount(y, minlength=classes).astype(np.float64)
    per_class = np.divide(1.0, counts ** power, out=np.zeros(classes), where=counts > 0)
    w = per_class[y]
    return w * len(y) / w.sum()


@dataclass(frozen=True)
class HeadWeights:
    mean: np.ndarray  # p, standardisation
    scale: np.ndarray  # p
    W: np.ndarray  # p x K
    b: np.ndarray  # K
    a: float  # weight of the members' prior

    def predict(self, x: np.ndarray, offset: np.ndarray) -> np.ndarray:
        """Probabilities (... x K) for raw features x (... x p) and prior log-probabilities (... x K)."""
        z = self.a * offset + ((x - self.mean) / self.scale) @ self.W + self.b
        return softmax(z)


def fit_head(x: np.ndarray, offset: np.ndarray, y: np.ndarray, ridge: float, bias_ridge: float = 1e-3,
             sample_weight: np.ndarray | None = None, class_ridge: np.ndarray | None = None) -> HeadWeights:
    """Class-balanced multinomial logistic regression with the members' prior as an offset (deterministic:
    L-BFGS from a fixed start, so the same inputs give the same weights bit for bit).

    `sample_weight` replaces the balanced weights (the caller balances); `class_ridge` (K) scales the
    ridge per class column of W. Left as None, the arithmetic is fusion-v1's exactly."""
    mean, scale = x.mean(axis=0), x.std(axis=0) + 1e-6
    xs = (x - mean) / scale
    n, p = xs.shape
    k = len(EXPRESSIONS)
    onehot = np.eye(k)[y]
    w = balanced_weights(y) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    total = w.sum()
    r = None if class_ridge is None else ridge * np.asarray(class_ridge, dtype=np.float64)[None, :]

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        W, b, a = theta[: p * k].reshape(p, k), theta[p * k: p * k + k], theta[-1]
        prob = softmax(a * offset + xs @ W + b)
        nll = -float((w * np.log(np.clip((prob * onehot).sum(axis=1), 1e-300, None))).sum()) / total
        if r is None:  # fusion-v1's arithmetic, kept as it was so v1 refits bit for bit
            penalty, dW = ridge * float((W ** 2).sum()), 2 * ridge * W
        else:
            penalty, dW = float((r * W ** 2).sum()), 2 * r * W
        value = nll + penalty + bias_ridge * float((b ** 2).sum())
        g = (w[:, None] * (prob - onehot)) / total
        grad = np.concatenate([(xs.T @ g + dW).ravel(), g.sum(axis=0) + 2 * bias_ridge * b,
                               [float((g * offset).sum())]])
        return value, grad

    theta0 = np.zeros(p * k + k + 1)
    theta0[-1] = 1.0
    res = minimize(loss, theta0, jac=True, method="L-BFGS-B", options={"maxiter": 5000, "gtol": 1e-9})
    t = res.x
    return HeadWeights(mean, scale, t[: p * k].reshape(p, k), t[p * k: p * k + k], float(t[-1]))


def group_folds(groups: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """Fold index per sample; every group (a person) lands in exactly one fold."""
    unique = np.array(sorted(set(groups.tolist())))
    np.random.default_rng(seed).shuffle(unique)
    fold_of = {g: i % folds for i, g in enumerate(unique.tolist())}
    return np.array([fold_of[g] for g in groups.tolist()])


def _calibration_gap(forecast: np.ndarray, hit: np.ndarray, bins: int, weight: np.ndarray | None = None) -> float:
    """|observed rate - mean forecast| per forecast bin (the first bin closed at 0), weighted by its share.
    `weight`: per-sample weights (e.g. `balanced_weights`, for calibration under a uniform class prior)."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    total = 0.0
    for i, (lo, hi) in enumerate(zip(edges[:-1], edges[1:])):
        m = ((forecast > lo) | (i == 0) & (forecast >= lo)) & (forecast <= hi)
        if not m.any():
            continue
        if weight is None:
            total += m.mean() * abs(hit[m].mean() - forecast[m].mean())
        else:
            wm = weight[m]
            total += wm.sum() / weight.sum() * abs(float((wm * hit[m]).sum() - (wm * forecast[m]).sum()) / wm.sum())
    return float(total)


def expected_calibration_error(prob: np.ndarray, y: np.ndarray, bins: int = 10,
                               weight: np.ndarray | None = None) -> float:
    """Top-label ECE: |accuracy - confidence| per confidence bin, weighted by the bin's share."""
    return _calibration_gap(prob.max(axis=1), prob.argmax(axis=1) == y, bins, weight)


def classwise_calibration_error(prob: np.ndarray, y: np.ndarray, cls: int, bins: int = 10,
                                weight: np.ndarray | None = None) -> float:
    """ECE of one class's probability as a one-vs-rest forecast (is this face `cls`?)."""
    return _calibration_gap(prob[:, cls], y == cls, bins, weight)


def to_json(weights: HeadWeights, meta: dict[str, Any]) -> str:
    """The artifact's text. Floats are written with repr (shortest round-trip), so reading gives the same bits."""
    body = dict(meta)
    body["weights"] = {
        "mean": [float(v) for v in weights.mean], "scale": [float(v) for v in weights.scale],
        "W": [[float(v) for v in row] for row in weights.W], "b": [float(v) for v in weights.b],
        "a": float(weights.a),
    }
    return json.dumps(body, indent=1) + "\n"


@dataclass(frozen=True)
class FusionHead:
    """The shipped head: which members feed it, its weights, and where it came from."""

    version: str
    cnn_members: tuple[str, ...]
    weights: HeadWeights
    sha256: str

    def predict(self, member_probs: Mapping[str, np.ndarray], blendshapes: np.ndarray, landmarks_px: np.ndarray
                ) -> np.ndarray:
        x, offset = head_inputs(member_probs, self.cnn_members, blendshapes, landmarks_px)
        return self.weights.predict(x, offset)


def head_text(version: str) -> bytes:
    if version not in HEAD_FILES:
        raise ValueError(f"unknown fusion head {version!r}; known: {', '.join(HEAD_FILES)}")
    return resources.files("fedbench.faces").joinpath("data", HEAD_FILES[version]).read_bytes()


@lru_cache(maxsize=None)
def load_head(version: str) -> FusionHead:
    text = head_text(version)
    body = json.loads(text)
    if body["version"] != version:
        raise ValueError(f"{HEAD_FILES[version]} holds {body['version']!r}, not {version!r}")
    w = body["weights"]
    weights = HeadWeights(np.array(w["mean"]), np.array(w["scale"]), np.array(w["W"]), np.array(w["b"]), float(w["a"]))
    return FusionHead(version=body["version"], cnn_members=tuple(body["cnn_members"]), weights=weights,
                      sha256=hashlib.sha256(text).hexdigest())
