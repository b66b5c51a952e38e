"""Landmark geometry of the expression: a few distances on the Face Landmarker mesh, in units of the
inter-ocular distance after removing the head's roll. Blendshapes come from a learned regressor that
saturates (and reads an exaggerated face as *less* expressive); these distances grow with the
geometric change itself, which is what "how far did the expression move" asks. FED-Score 2.0's
expression vector holds them beside the blendshapes, whitened by the noise model like every dim.
"""

from __future__ import annotations

import numpy as np

# MediaPipe face-mesh indices ("R" = the subject's right, on the image's left).
EYE_R = (33, 133)  # outer, inner corner
EYE_L = (263, 362)
LID_R = (159, 145)  # upper, lower lid
LID_L = (386, 374)
BROW_INNER_R, BROW_INNER_L = 107, 336
BROW_OUTER_R, BROW_OUTER_L = 70, 300
MOUTH_R, MOUTH_L = 61, 291
LIP_TOP, LIP_BOTTOM = 0, 17  # outer lip centre
LIP_IN_TOP, LIP_IN_BOTTOM = 13, 14  # inner lip centre
NOSE_TIP, NOSE_BASE, CHIN = 1, 2, 152

NAMES: tuple[str, ...] = (
    "eyeOpenR", "eyeOpenL", "browInnerRaiseR", "browInnerRaiseL", "browOuterRaiseR", "browOuterRaiseL",
    "browGap", "mouthWidth", "mouthOpen", "cornerLiftR", "cornerLiftL", "upperLipRaise", "jawDrop",
)


def geometry(landmarks: np.ndarray) -> np.ndarray:
    """The NAMES distances of one face (landmarks: 478 x 2+, normalised image coordinates)."""
    p = np.asarray(landmarks, np.float64)[:, :2]
    eye_r, eye_l = p[list(EYE_R)].mean(axis=0), p[list(EYE_L)].mean(axis=0)
    axis = eye_l - eye_r
    iod = float(np.hypot(*axis))
    if iod <= 1e-9:
        return np.zeros(len(NAMES))
    c, s = axis / iod
    rot = np.array([[c, s], [-s, c]])  # roll removed: the eye line is horizontal
    q = (p - (eye_r + eye_l) / 2) @ rot.T / iod  # y grows downwards, as in the image

    def dist(a: int, b: int) -> float:
        return float(np.hypot(*(q[a] - q[b])))

    lip_mid_y = (q[LIP_TOP, 1] + q[LIP_BOTTOM, 1]) / 2
    return np.array([
        dist(*LID_R), dist(*LID_L),
        q[EYE_R[1], 1] - q[BROW_INNER_R, 1], q[EYE_L[1], 1] - q[BROW_INNER_L, 1],
        q[EYE_R[0], 1] - q[BROW_OUTER_R, 1], q[EYE_L[0], 1] - q[BROW_OUTER_L, 1],
        dist(BROW_INNER_R, BROW_INNER_L), dist(MOUTH_R, MOUTH_L), dist(LIP_IN_TOP, LIP_IN_BOTTOM),
        lip_mid_y - q[MOUTH_R, 1], lip_mid_y - q[MOUTH_L, 1],
        dist(NOSE_BASE, LIP_TOP), dist(NOSE_TIP, CHIN),
    ])
