"""Fidelity: identity kept (ID), background kept (BG), face quality kept (PQ); their geometric mean."""

from __future__ import annotations

import numpy as np

GT_DRIFT_MARGIN = 0.05  # when cos(G, S) <= c0 + this, the ground truth itself drifts: normalise by 1 - c0
MIN_BACKGROUND_SHARE = 0.01  # below this share of the image, there is no background to compare


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    return float(np.dot(a, b) / (na * nb)) if na > 0 and nb > 0 else 0.0


def identity_score(cos_edit_source: float, cos_gt_source: float, threshold: float,
                   margin: float = GT_DRIFT_MARGIN) -> float:
    """ID = clip((cos(E,S) - c0) / (cos(G,S) - c0), 0, 1), denominator 1 - c0 when G drifts."""
    denom = cos_gt_source - threshold
    if cos_gt_source <= threshold + margin:
        denom = 1.0 - threshold
    return float(np.clip((cos_edit_source - threshold) / denom, 0.0, 1.0))


def background_score(ssim: np.ndarray, background: np.ndarray) -> float | None:
    """Mean SSIM over background pixels, clipped to [0, 1]; None when there is no background.
    The pixels are selected with np.compress (the same values in the same row-major order as
    ssim[background], about 3x faster at 512 px), and a float32 map is widened after selecting: the
    same float64 values, summed in the same order, as widening the whole map first."""
    if np.count_nonzero(background) / background.size < MIN_BACKGROUND_SHARE:  # == background.mean()
        return None
    values = np.compress(background.ravel(), ssim.ravel()).astype(np.float64)
    return float(np.clip(values.mean(), 0.0, 1.0))


BG_REFERENCE_FLOOR = 0.5  # a ground truth that re-renders more of the background than this sets no bar


def relative_background(bg_edit: float | None, bg_gt: float | None,
                        floor: float = BG_REFERENCE_FLOOR) -> float | None:
    """BG (v1.2) = min(1, BG(S,E) / max(BG(S,G), 0.5)): an edit that keeps the background as well as the
    ground truth did scores 1; the floor keeps a ground truth that redraws everything from excusing
    an edit that does the same."""
    if bg_edit is None or bg_gt is None:
        return bg_edit
    return float(min(1.0, bg_edit / max(bg_gt, floor)))


def quality_score(q_edit: float, q_source: float, q_gt: float | None = None) -> float:
    """PQ = min(1, q(E) / q(S)) (v1.0), or min(1, q(E) / min(q(S), q(G))) (v1.1): an expression change
    can itself lower the high-frequency energy (a closed mouth hides teeth), and G sets what is fine."""
    ref = q_source if q_gt is None else min(q_source, q_gt)
    if ref <= 1e-12:
        return 1.0
    return float(min(1.0, max(0.0, q_edit) / ref))


def fidelity(id_score: float, bg: float | None, pq: float) -> float:
    """(ID * BG * PQ)^(1/3); with no background, (ID * PQ)^(1/2)."""
    parts = [id_score, pq] if bg is None else [id_score, bg, pq]
    return float(np.prod(parts) ** (1.0 / len(parts)))
