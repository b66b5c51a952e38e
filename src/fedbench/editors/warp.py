"""`warp`: a training-free expression editor. Face Landmarker points move along a per-expression
displacement field, given in a normalised face frame (units of the inter-ocular distance, x towards
the subject's left, y down), and the image follows a smooth thin-plate-spline warp. No teeth or
wrinkles appear, but the geometry of the expression changes: a real, fast baseline.

The displacement fields are data (`DISPLACEMENTS`), meant to be refitted from training pairs.
"""

from __future__ import annotations

import cv2
import numpy as np
from scipy.interpolate import RBFInterpolator

# MediaPipe face-mesh indices ("left" = image left = the subject's right).
_MOUTH_L, _MOUTH_R = 61, 291
_UPPER_LIP = (0, 37, 267, 13)
_LOWER_LIP = (17, 84, 314, 14)
_CHIN = (152, 148, 176, 377, 400)
_JAW_SIDE = (149, 150, 378, 379)
_BROW_L_INNER, _BROW_R_INNER = (107, 55, 66, 65), (336, 285, 296, 295)
_BROW_L_OUTER, _BROW_R_OUTER = (70, 46, 63, 53, 105, 52), (300, 276, 293, 283, 334, 282)
_UPPER_LID = (159, 158, 160, 386, 385, 387)
_NOSE_WINGS = (98, 327, 64, 294)

Move = tuple[tuple[int, ...], tuple[float, float]]

# Per target: (landmarks, (dx, dy)) in inter-ocular units, x towards the image right: each side of
# the face has its own entry where the two sides move apart or together.
DISPLACEMENTS: dict[str, list[Move]] = {
    "happy": [((_MOUTH_L,), (-0.15, -0.20)), ((_MOUTH_R,), (0.15, -0.20)), (_UPPER_LIP, (0.00, -0.04))],
    "sad": [((_MOUTH_L, _MOUTH_R), (0.00, 0.18)), (_BROW_L_INNER + _BROW_R_INNER, (0.00, -0.15)),
            (_BROW_L_OUTER + _BROW_R_OUTER, (0.00, 0.04)), (_LOWER_LIP, (0.00, 0.04))],
    "surprise": [(_BROW_L_INNER + _BROW_R_INNER + _BROW_L_OUTER + _BROW_R_OUTER, (0.00, -0.24)),
                 (_UPPER_LID, (0.00, -0.07)), (_LOWER_LIP, (0.00, 0.35)), (_CHIN, (0.00, 0.40)),
                 (_JAW_SIDE, (0.00, 0.20)), ((_MOUTH_L, _MOUTH_R), (0.00, 0.13))],
    "fear": [(_BROW_L_INNER + _BROW_R_INNER, (0.00, -0.20)), (_BROW_L_OUTER + _BROW_R_OUTER, (0.00, -0.11)),
             (_UPPER_LID, (0.00, -0.07)), ((_MOUTH_L,), (-0.15, 0.07)), ((_MOUTH_R,), (0.15, 0.07)),
             (_LOWER_LIP, (0.00, 0.13)), (_CHIN, (0.00, 0.13))],
    "angry": [(_BROW_L_INNER, (0.07, 0.15)), (_BROW_R_INNER, (-0.07, 0.15)),
              (_BROW_L_OUTER + _BROW_R_OUTER, (0.00, 0.07)), (_UPPER_LID, (0.00, 0.04)),
              (_UPPER_LIP, (0.00, 0.04)), (_LOWER_LIP, (0.00, -0.07))],
    "disgust": [(_UPPER_LIP, (0.00, -0.13)), (_NOSE_WINGS, (0.00, -0.07)), ((_MOUTH_L, _MOUTH_R), (0.00, 0.09)),
                (_BROW_L_INNER + _BROW_R_INNER, (0.00, 0.07))],
    "neutral": [],
}


def _face_frame(landmarks_px: np.ndarray) -> tuple[float, np.ndarray]:
    """Inter-ocular distance and the rotation from face frame to image."""
    left = landmarks_px[[33, 133]].mean(axis=0)
    right = landmarks_px[[362, 263]].mean(axis=0)
    axis = right - left
    iod = float(np.linalg.norm(axis))
    c, s = axis / max(iod, 1e-6)
    return iod, np.array([[c, -s], [s, c]])


def displacement(landmarks_px: np.ndarray, target: str, strength: float = 1.0) -> np.ndarray:
    """Per-landmark displacement (N x 2, pixels) for `target` at `strength`."""
    iod, rot = _face_frame(landmarks_px)
    moves = np.zeros((len(landmarks_px), 2))
    for idx, (dx, dy) in DISPLACEMENTS[target]:
        moves[list(idx)] = (dx, dy)
    return strength * iod * moves @ rot.T


def warp_expression(rgb: np.ndarray, landmarks_px: np.ndarray, target: str, strength: float = 1.0,
                    grid_step: int = 8) -> np.ndarray:
    """The image with its face moved towards `target` (strength 1 = reference, 0 = unchanged)."""
    h, w = rgb.shape[:2]
    pts = landmarks_px[:, :2].astype(np.float64)
    moves = displacement(pts, target, strength)
    if not np.any(moves):
        return rgb.copy()
    # Pin a ring around the face and the image border so the background stays where it is.
    centre = pts.mean(axis=0)
    hull = pts[cv2.convexHull(pts.astype(np.float32), returnPoints=False).ravel()]
    ring = centre + 1.6 * (hull - centre)
    border = np.array([[x, y] for x in np.linspace(0, w - 1, 5) for y in (0, h - 1)]
                      + [[x, y] for x in (0, w - 1) for y in np.linspace(0, h - 1, 5)])
    anchors = np.vstack([ring, border])
    # Destination positions carry the displacement; sample the source at p - D(p) (small moves).
    control = np.vstack([pts + moves, anchors])
    values = np.vstack([moves, np.zeros_like(anchors)])
    field = RBFInterpolator(control, values, kernel="thin_plate_spline", smoothing=1.0, degree=1)
    gy, gx = np.mgrid[0:h:grid_step, 0:w:grid_step]
    coarse = field(np.column_stack([gx.ravel(), gy.ravel()])).reshape(gx.shape + (2,)).astype(np.float32)
    dense = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_LINEAR)
    xs, ys = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return cv2.remap(rgb, xs - dense[..., 0], ys - dense[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
