"""The 52 ARKit-style blendshapes of Face Landmarker, and the FACS action units they stand for."""

from __future__ import annotations

import numpy as np

BLENDSHAPE_NAMES: tuple[str, ...] = (
    "_neutral", "browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft", "browOuterUpRight",
    "cheekPuff", "cheekSquintLeft", "cheekSquintRight", "eyeBlinkLeft", "eyeBlinkRight", "eyeLookDownLeft",
    "eyeLookDownRight", "eyeLookInLeft", "eyeLookInRight", "eyeLookOutLeft", "eyeLookOutRight",
    "eyeLookUpLeft", "eyeLookUpRight", "eyeSquintLeft", "eyeSquintRight", "eyeWideLeft", "eyeWideRight",
    "jawForward", "jawLeft", "jawOpen", "jawRight", "mouthClose", "mouthDimpleLeft", "mouthDimpleRight",
    "mouthFrownLeft", "mouthFrownRight", "mouthFunnel", "mouthLeft", "mouthLowerDownLeft",
    "mouthLowerDownRight", "mouthPressLeft", "mouthPressRight", "mouthPucker", "mouthRight",
    "mouthRollLower", "mouthRollUpper", "mouthShrugLower", "mouthShrugUpper", "mouthSmileLeft",
    "mouthSmileRight", "mouthStretchLeft", "mouthStretchRight", "mouthUpperUpLeft", "mouthUpperUpRight",
    "noseSneerLeft", "noseSneerRight",
)
_INDEX = {name: i for i, name in enumerate(BLENDSHAPE_NAMES)}


def indices(*names: str) -> tuple[int, ...]:
    return tuple(_INDEX[n] for n in names)


def bilateral(stem: str) -> tuple[int, ...]:
    """Both sides of a paired blendshape (e.g. 'browDown' -> browDownLeft, browDownRight)."""
    return indices(stem + "Left", stem + "Right")


# Action units (FACS) -> the blendshapes that measure them (both sides averaged), as fedscore.md lists.
ACTION_UNITS: dict[str, tuple[int, ...]] = {
    "AU1": indices("browInnerUp"),
    "AU2": bilateral("browOuterUp"),
    "AU4": bilateral("browDown"),
    "AU5": bilateral("eyeWide"),
    "AU6": bilateral("cheekSquint"),
    "AU7": bilateral("eyeSquint"),
    "AU9": bilateral("noseSneer"),
    "AU10": bilateral("mouthUpperUp"),
    "AU12": bilateral("mouthSmile"),
    "AU15": bilateral("mouthFrown"),
    "AU16": bilateral("mouthLowerDown"),
    "AU20": bilateral("mouthStretch"),
    "AU23": bilateral("mouthPress"),
    "AU26": indices("jawOpen"),
}


def action_unit_vector(blendshapes: np.ndarray) -> np.ndarray:
    """Mean blendshape activation per action unit, in ACTION_UNITS order."""
    return np.array([float(np.mean(blendshapes[list(idx)])) for idx in ACTION_UNITS.values()], dtype=np.float64)
