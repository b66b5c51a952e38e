"""Single-metric baselines for the bias study (fedscore.md, meta-evaluation item 6).

Each function scores one edit on one axis only, higher = "better" by that metric's own account, so
the meta report can show which probe each one would crown: identity cosine alone rewards the lazy
edit (nothing changed, identity perfectly kept); target probability alone rewards exaggeration;
pixel distances to the ground truth reward copying it. FED-Score is meant to resist all three.

CLIP-T and DINO need weights this project does not ship. They are optional hooks: register a
function with `register_optional_metric` (from a plugin or a script) and `meta` reports it; without
one the report says it is absent, and why.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import cv2
import numpy as np

from fedbench.labels import EXPRESSIONS, normalise_expression
from fedbench.metrics.ssim import ssim_map

PIXEL_LONG_SIDE = 256  # pixel metrics compare at this size: enough to rank probes, cheap per image


def identity_cosine(edit_embedding: np.ndarray, source_embedding: np.ndarray) -> float:
    """cos(f(E), f(S)): how well identity is kept, and nothing else (1 for a lazy edit)."""
    a = np.asarray(edit_embedding, dtype=np.float64)
    b = np.asarray(source_embedding, dtype=np.float64)
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    if na == 0 or nb == 0:
        raise ValueError("identity_cosine: an embedding is all zeros")
    return float(np.dot(a, b) / (na * nb))


def target_probability(probs: np.ndarray, target: str) -> float:
    """p_t(E): the recogniser's belief in the target class, with no reference to the source."""
    label = normalise_expression(target)
    if label is None:
        raise ValueError(f"target_probability: unknown target {target!r}; expected one of {', '.join(EXPRESSIONS)}")
    p = np.asarray(probs, dtype=np.float64)
    if p.shape != (len(EXPRESSIONS),):
        raise ValueError(f"target_probability: expected {len(EXPRESSIONS)} probabilities, got shape {p.shape}")
    return float(p[EXPRESSIONS.index(label)])


def _common_size(edit: np.ndarray, reference: np.ndarray, long_side: int) -> tuple[np.ndarray, np.ndarray]:
    """Both images at the reference's aspect, its long side capped at `long_side` (E resized to it)."""
    h, w = reference.shape[:2]
    scale = min(1.0, long_side / max(h, w))
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    ref = cv2.resize(reference, size, interpolation=cv2.INTER_AREA) if size != (w, h) else reference
    ed = cv2.resize(edit, size, interpolation=cv2.INTER_AREA) if edit.shape[:2] != (size[1], size[0]) else edit
    return ed, ref


def pixel_l1_similarity(edit_rgb: np.ndarray, reference_rgb: np.ndarray, long_side: int = PIXEL_LONG_SIDE) -> float:
    """1 - mean |E - G| / 255 over RGB: 1 when E copies G pixel for pixel."""
    e, g = _common_size(edit_rgb, reference_rgb, long_side)
    return float(1.0 - np.abs(e.astype(np.float64) - g.astype(np.float64)).mean() / 255.0)


def ssim_similarity(edit_rgb: np.ndarray, reference_rgb: np.ndarray, long_side: int = PIXEL_LONG_SIDE) -> float:
    """Mean SSIM of the grey images (the FED-Score SSIM definition), whole image."""
    e, g = _common_size(edit_rgb, reference_rgb, long_side)
    to_grey = lambda x: cv2.cvtColor(x, cv2.COLOR_RGB2GRAY) if x.ndim == 3 else x  # noqa: E731
    return float(ssim_map(to_grey(e), to_grey(g)).mean())


# --- optional metrics (weights the user brings) ----------------------------------------------------

OptionalFn = Callable[[np.ndarray, np.ndarray, np.ndarray, str], float]
"""fn(edit_rgb, source_rgb, ground_truth_rgb, instruction) -> score, higher = better."""


@dataclass(frozen=True)
class OptionalMetric:
    name: str
    what: str
    fn: OptionalFn | None = None


KNOWN_OPTIONAL = {
    "clip-t": "CLIP text-image similarity of E to the instruction (needs CLIP weights)",
    "dino": "DINO feature similarity of E to S (needs DINO weights)",
}
_REGISTERED: dict[str, OptionalFn] = {}


def register_optional_metric(name: str, fn: OptionalFn) -> None:
    """Make an optional single metric (e.g. 'clip-t' with your CLIP weights) available to `meta`."""
    if not callable(fn):
        raise TypeError(f"register_optional_metric({name!r}): fn must be callable")
    _REGISTERED[name] = fn


def optional_metrics() -> list[OptionalMetric]:
    """The known optional metrics (present or absent) and any others registered."""
    names = list(KNOWN_OPTIONAL) + [n for n in _REGISTERED if n not in KNOWN_OPTIONAL]
    return [OptionalMetric(n, KNOWN_OPTIONAL.get(n, "user-registered metric"), _REGISTERED.get(n)) for n in names]
