"""No-reference face quality: variance of the Laplacian of the aligned grey face crop.

A smeared, blocky-smoothed or broken face loses high-frequency energy; PQ compares E to S on the
same aligned crop, so the absolute scale of this number does not matter.
"""

from __future__ import annotations

import cv2
import numpy as np

from fedbench.faces.geometry import aligned_crop

QUALITY_CROP = 224


def laplacian_quality(rgb: np.ndarray, landmarks_px: np.ndarray) -> float:
    crop = aligned_crop(rgb, landmarks_px, QUALITY_CROP)
    grey = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY)
    return float(cv2.Laplacian(grey, cv2.CV_64F, ksize=3).var())
