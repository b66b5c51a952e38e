"""Stage 2, face filter: exactly one dominant face, large enough, sharp enough, facing the camera.

Head pose comes from the Face Landmarker's 3D mesh: the face normal (cross product of the
cheek-to-cheek and chin-to-forehead axes) gives yaw and pitch, the eye line gives roll. The
landmarker's own detection and presence thresholds (0.5) have already dropped unsure faces.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from fedbench.engine.perception import ImageReadError, PerceivingStage
from fedbench.engine.stage import Outcome, Record, Rejected
from fedbench.faces.geometry import box_area

_CHEEK_R, _CHEEK_L, _FOREHEAD, _CHIN = 234, 454, 10, 152
_EYE_R, _EYE_L = (33, 133), (362, 263)


def head_pose(landmarks: np.ndarray, size: tuple[int, int]) -> tuple[float, float, float]:
    """(yaw, pitch, roll) in degrees from 478 normalised landmarks (x, y, z); 0, 0, 0 = frontal."""
    w, _ = size
    p = landmarks.astype(np.float64) * np.array([w, size[1], w])  # z is on the x scale in MediaPipe
    across = p[_CHEEK_L] - p[_CHEEK_R]
    up = p[_FOREHEAD] - p[_CHIN]
    normal = np.cross(across, up)
    normal /= np.linalg.norm(normal) + 1e-9
    if normal[2] > 0:
        normal = -normal  # towards the camera (MediaPipe's z grows away from it)
    yaw = math.degrees(math.atan2(normal[0], -normal[2]))
    pitch = math.degrees(math.atan2(normal[1], -normal[2]))
    eye_axis = p[list(_EYE_L)].mean(axis=0) - p[list(_EYE_R)].mean(axis=0)
    roll = math.degrees(math.atan2(eye_axis[1], eye_axis[0]))
    return yaw, pitch, roll


class FaceFilter(PerceivingStage):
    name = "face"

    def process(self, record: Record) -> Outcome:
        cfg = self.config.face
        try:
            feats, _ = self.perception.features(Path(record["image"]))
        except (OSError, ImageReadError) as exc:
            return Rejected(f"unreadable: {exc}")
        if not feats.faces:
            return Rejected("no face found")
        main = feats.faces[0]
        if len(feats.faces) > 1:
            ratio = box_area(feats.faces[1].box) / max(box_area(main.box), 1e-12)
            if ratio >= cfg.dominant_ratio:
                return Rejected(f"{len(feats.faces)} faces, the second {ratio:.0%} of the main one's area",
                                {"faces": len(feats.faces)})
        height_px = float(main.box[3] - main.box[1]) * record["size"][1]
        if height_px < cfg.min_face_px:
            return Rejected(f"face {height_px:.0f} px high, below {cfg.min_face_px}", {"face_px": height_px})
        if main.quality < cfg.min_sharpness:
            return Rejected(f"face sharpness {main.quality:.1f} below {cfg.min_sharpness}",
                            {"sharpness": main.quality})
        yaw, pitch, roll = head_pose(main.landmarks, feats.size)
        for name, value, limit in (("yaw", yaw, cfg.max_yaw_deg), ("pitch", pitch, cfg.max_pitch_deg),
                                   ("roll", roll, cfg.max_roll_deg)):
            if abs(value) > limit:
                return Rejected(f"head {name} {value:+.0f} deg beyond {limit:g}", {name: value})
        face = {"faces": len(feats.faces), "face_px": round(height_px, 1), "sharpness": round(main.quality, 2),
                "yaw": round(yaw, 1), "pitch": round(pitch, 1), "roll": round(roll, 1)}
        return [{**record, "face": face}]
