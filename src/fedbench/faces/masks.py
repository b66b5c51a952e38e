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
        # Dilating a convex polygon by a disc = the polygon plus its outline drawn with a pen of
        # that radius (round joins): the same mask as cv2.dilate with an elliptic kernel, faster.
        cv2.polylines(mask, [hull], True, 1, thickness=2 * radius + 1, lineType=cv2.LINE_8)
    return mask.astype(bool)
