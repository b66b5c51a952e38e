"""Face mask: the hull of the face landmarks (the face oval), dilated by a share of the face width."""

from __future__ import annotations

import cv2
import numpy as np

DILATION = 0.10


def face_mask(landmarks_norm: np.ndarray, size: tuple[int, int], dilation: float = DILATION) -> np.ndarray:
    """Boolean H x W mask (size = (w, h)) of the dilated face-oval hull."""
    w, h = size
    pts = np.round(landmarks_norm[:, :2] * np.array([w, h])).astype(np.int32)
    hull = cv2.convexHull(pts)
    mask = np.zeros((h, w), np.uint8)
    cv2.fillConvexPoly(mask, hull, 1)
    face_width = float(pts[:, 0].max() - pts[:, 0].min())
    radius = int(round(dilation * face_width))
    if radius > 0:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
        mask = cv2.dilate(mask, kernel)
    return mask.astype(bool)
