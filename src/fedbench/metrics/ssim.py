"""Structural similarity map (Wang et al. 2004), the same definition as skimage's defaults
(7x7 uniform window, K1 = 0.01, K2 = 0.03, sample covariance, reflected borders), computed with
OpenCV box filters: about ten times faster, which matters at one call per sample. The tests hold it
to skimage.metrics.structural_similarity(full=True)."""

from __future__ import annotations

import cv2
import numpy as np

WINDOW = 7
K1, K2 = 0.01, 0.03


def ssim_map(a: np.ndarray, b: np.ndarray, data_range: float = 255.0) -> np.ndarray:
    if a.shape != b.shape:
        raise ValueError(f"ssim_map needs equal shapes, got {a.shape} and {b.shape}")
    x = a.astype(np.float64)
    y = b.astype(np.float64)

    def mean(img: np.ndarray) -> np.ndarray:
        return cv2.boxFilter(img, -1, (WINDOW, WINDOW), normalize=True, borderType=cv2.BORDER_REFLECT)

    n = WINDOW * WINDOW
    cov_norm = n / (n - 1)
    ux, uy = mean(x), mean(y)
    vx = cov_norm * (mean(x * x) - ux * ux)
    vy = cov_norm * (mean(y * y) - uy * uy)
    vxy = cov_norm * (mean(x * y) - ux * uy)
    c1 = (K1 * data_range) ** 2
    c2 = (K2 * data_range) ** 2
    num = (2 * ux * uy + c1) * (2 * vxy + c2)
    den = (ux * ux + uy * uy + c1) * (vx + vy + c2)
    return num / den
