"""Relative Expression Gain: the size of the expression change relative to the ground truth's."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

SIGMA_BLENDSHAPES = 1.0  # v1 scale constants of the expression vector
SIGMA_PROBS = 1.0
REG_WIDTH = 0.5  # log-gain standard deviation: halving and doubling cost the same
DEGENERATE_FACTOR = 0.05  # |dG| below this * sqrt(dim e): no measurable change in the triplet


def expression_vector(blendshapes: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """e(x) = [b(x) / sigma_b, p(x) / sigma_p]."""
    return np.concatenate([np.asarray(blendshapes, np.float64) / SIGMA_BLENDSHAPES,
                           np.asarray(probs, np.float64) / SIGMA_PROBS])


@dataclass(frozen=True)
class Gain:
    gain: float | None  # <dE, dG> / |dG|^2; None for a degenerate triplet
    off_axis: float | None  # |dE - g dG| / |dG|
    gt_change: float  # |dG|
    degenerate: bool


def expression_gain(e_source: np.ndarray, e_edit: np.ndarray, e_gt: np.ndarray,
                    degenerate_factor: float = DEGENERATE_FACTOR) -> Gain:
    d_edit = e_edit - e_source
    d_gt = e_gt - e_source
    norm_gt = float(np.linalg.norm(d_gt))
    if norm_gt < degenerate_factor * math.sqrt(d_gt.size):
        return Gain(None, None, norm_gt, True)
    g = float(np.dot(d_edit, d_gt) / norm_gt**2)
    off = float(np.linalg.norm(d_edit - g * d_gt) / norm_gt)
    return Gain(g, off, norm_gt, False)


def reg_score(gain: float, width: float = REG_WIDTH) -> float:
    """REG = exp(-(ln g)^2 / (2 * width^2)) for g > 0, else 0 (width 0.5 in every 1.x version)."""
    if not gain > 0:
        return 0.0
    return float(math.exp(-(math.log(gain) ** 2) / (2 * width**2)))
