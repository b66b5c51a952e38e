"""Face geometry from Face Landmarker points: boxes, the five alignment points, square crops."""

from __future__ import annotations

import cv2
import numpy as np
from skimage.transform import SimilarityTransform

# MediaPipe face-mesh indices: eye corners (averaged to a centre that gaze does not move),
# nose tip and mouth corners. "Image-left" is the subject's right.
_LEFT_EYE = (33, 133)
_RIGHT_EYE = (362, 263)
_NOSE_TIP = 1
_MOUTH_LEFT = 61
_MOUTH_RIGHT = 291

# The standard 112x112 five-point template that ArcFace-family recognisers (SFace too) are trained on.
ARCFACE_TEMPLATE = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float64,
)


def five_points(landmarks_px: np.ndarray) -> np.ndarray:
    """Eye centres, nose tip and mouth corners (5 x 2, pixels) in template order."""
    lm = landmarks_px[:, :2].astype(np.float64)
    return np.stack(
        [
            lm[list(_LEFT_EYE)].mean(axis=0),
            lm[list(_RIGHT_EYE)].mean(axis=0),
            lm[_NOSE_TIP],
            lm[_MOUTH_LEFT],
            lm[_MOUTH_RIGHT],
        ]
    )


def alignment_matrix(landmarks_px: np.ndarray, size: int = 112) -> np.ndarray:
    """2x3 similarity transform that maps the face onto the template scaled to `size`."""
    src, dst = five_points(landmarks_px), ARCFACE_TEMPLATE * (size / 112.0)
    if hasattr(SimilarityTransform, "from_estimate"):  # scikit-image >= 0.26
        tform = SimilarityTransform.from_estimate(src, dst)
    else:
        tform = SimilarityTransform()
        tform.estimate(src, dst)
    return tform.params[:2].astype(np.float64)


def aligned_crop(rgb: np.ndarray, landmarks_px: np.ndarray, size: int = 112) -> np.ndarray:
    matrix = alignment_matrix(landmarks_px, size)
    return cv2.warpAffine(rgb, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def bounding_box(landmarks_norm: np.ndarray) -> np.ndarray:
    """Normalised (x0, y0, x1, y1) box of the landmarks."""
    xy = landmarks_norm[:, :2]
    return np.concatenate([xy.min(axis=0), xy.max(axis=0)]).astype(np.float32)


def box_area(box: np.ndarray) -> float:
    return float(max(0.0, box[2] - box[0]) * max(0.0, box[3] - box[1]))


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    inter = np.array([max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])])
    i = box_area(inter)
    union = box_area(a) + box_area(b) - i
    return i / union if union > 0 else 0.0


def square_crop(image: np.ndarray, box_px: np.ndarray, expand: float, size: int) -> np.ndarray:
    """Square crop around a pixel box, `expand` times its longer side, edge-replicated, resized once."""
    x0, y0, x1, y1 = box_px
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    side = max(x1 - x0, y1 - y0) * expand
    left, top = int(round(cx - side / 2)), int(round(cy - side / 2))
    side_i = max(2, int(round(side)))
    h, w = image.shape[:2]
    pad = max(0, -left, -top, left + side_i - w, top + side_i - h)
    if pad:
        image = cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
        left, top = left + pad, top + pad
    crop = image[top : top + side_i, left : left + side_i]
    interp = cv2.INTER_AREA if side_i > size else cv2.INTER_LINEAR
    return cv2.resize(crop, (size, size), interpolation=interp)
