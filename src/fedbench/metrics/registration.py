"""Register an image to the source on the background before comparing them (FED-Score 2.0's BG).

Editors shift and rescale a picture by a few percent without touching its background; pixel-aligned
SSIM calls that a changed background. We fit a similarity transform (shift, uniform scale, a small
rotation) that maps X onto S by ECC (Evangelidis & Psarakis 2008) over the background only, accept it
when it stays within MAX_SHIFT / MAX_SCALE (a larger move is the edit's own doing, not registration),
and measure SSIM on the registered image, over the background pixels that both images cover. The
registration is reported beside BG (`bg_shift`), so a model that moves the picture still shows it.
A replaced, blurred or recoloured background does not register to a better SSIM: it still drops.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

MAX_SHIFT = 0.05  # share of the long side; the processing contract goes to 4 % crops and shifts
MAX_SCALE = 0.05  # |scale - 1|
ECC_ITERATIONS = 60
ECC_EPS = 1e-5
ECC_LONG_SIDE = 160  # fit at this size (fast, and robust to JPEG noise); apply at full size


@dataclass(frozen=True)
class Registration:
    matrix: np.ndarray  # 2 x 3, maps S's pixel grid to X's (for cv2.warpAffine with WARP_INVERSE_MAP)
    shift: float  # |translation| as a share of the long side
    scale: float  # uniform scale factor
    accepted: bool  # False: the fit failed or moved too far; identity used

    @property
    def magnitude(self) -> float:
        """One number for the report: max of the shift and |scale - 1| (0 = already aligned)."""
        return float(max(self.shift, abs(self.scale - 1.0))) if self.accepted else 0.0


IDENTITY = np.eye(2, 3, dtype=np.float32)


def _ecc_size(shape: tuple[int, ...]) -> tuple[float, tuple[int, int]]:
    h, w = shape[:2]
    k = ECC_LONG_SIDE / max(h, w)
    return k, (max(8, round(w * k)), max(8, round(h * k)))


def ecc_view(source: np.ndarray) -> np.ndarray:
    """The grey source at the fitting size, as `register` fits against it (float32)."""
    _, size = _ecc_size(source.shape)
    return cv2.resize(source, size, interpolation=cv2.INTER_AREA).astype(np.float32)


def register(source: np.ndarray, other: np.ndarray, background: np.ndarray,
             source_small: np.ndarray | None = None) -> Registration:
    """Fit `other` onto `source` (equal-size grey uint8 images) over `background` (bool mask).
    `source_small`: `ecc_view(source)` when the caller already has it (one source, several pairs)."""
    k, size = _ecc_size(source.shape)
    s = ecc_view(source) if source_small is None else source_small
    o = cv2.resize(other, size, interpolation=cv2.INTER_AREA).astype(np.float32)
    mask = cv2.resize(background.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST)
    warp = IDENTITY.copy()
    try:
        _, warp = cv2.findTransformECC(s, o, warp, cv2.MOTION_AFFINE,
                                       (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, ECC_ITERATIONS, ECC_EPS),
                                       mask, 3)
    except cv2.error:
        return Registration(IDENTITY, 0.0, 1.0, False)
    a = warp[:, :2].astype(np.float64)
    scale = float(np.sqrt(abs(np.linalg.det(a))))
    # A similarity transform only: shear or anisotropy means the fit followed something else.
    anisotropy = float(np.linalg.norm(a / max(scale, 1e-9) @ (a / max(scale, 1e-9)).T - np.eye(2)))
    shift = float(np.hypot(warp[0, 2], warp[1, 2]) / max(size))
    if anisotropy > 0.02 or shift > MAX_SHIFT or abs(scale - 1.0) > MAX_SCALE:
        return Registration(IDENTITY, shift, scale, False)
    full = warp.astype(np.float32).copy()
    full[:, 2] /= k  # translation back to full-size pixels
    return Registration(full, shift, scale, True)


def apply(other: np.ndarray, reg: Registration) -> tuple[np.ndarray, np.ndarray]:
    """`other` resampled onto the source's grid, and the mask of pixels it covers."""
    h, w = other.shape[:2]
    if not reg.accepted:
        return other, np.ones((h, w), bool)
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    out = cv2.warpAffine(other, reg.matrix, (w, h), flags=flags, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    covered = cv2.warpAffine(np.ones((h, w), np.uint8), reg.matrix, (w, h), flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP,
                             borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    # SSIM's 7 x 7 window must not straddle the uncovered border.
    covered = cv2.erode(covered, np.ones((7, 7), np.uint8)).astype(bool)
    return out, covered


CHROMA_LONG_SIDE = 128  # colour is low-frequency: compared at a small size


def _chroma_size(shape: tuple[int, ...]) -> tuple[int, int]:
    h, w = shape[:2]
    k = CHROMA_LONG_SIDE / max(h, w)
    return max(8, round(w * k)), max(8, round(h * k))


def chroma_view(source_rgb: np.ndarray) -> np.ndarray:
    """CIELAB of the source at the chroma size, as `chroma_distance` compares against it."""
    s = cv2.resize(source_rgb, _chroma_size(source_rgb.shape), interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(s.astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB)


def chroma_distance(source_rgb: np.ndarray, other_rgb: np.ndarray, reg: Registration,
                    background: np.ndarray, source_lab: np.ndarray | None = None) -> float | None:
    """Median CIELAB chroma distance sqrt(da^2 + db^2) between S and the registered X over the
    background: grey SSIM does not see a recoloured background, this does. Lightness is left out
    (a gamma change is processing; SSIM already sees a real change of light).
    `source_lab`: `chroma_view(source_rgb)` when the caller already has it."""
    h, w = source_rgb.shape[:2]
    size = _chroma_size(source_rgb.shape)
    o = cv2.resize(other_rgb, (other_rgb.shape[1] * size[0] // w or 1, other_rgb.shape[0] * size[1] // h or 1),
                   interpolation=cv2.INTER_AREA) if other_rgb.shape[:2] != (h, w) else \
        cv2.resize(other_rgb, size, interpolation=cv2.INTER_AREA)
    if o.shape[:2] != (size[1], size[0]):  # resizing to the size it has would only copy it
        o = cv2.resize(o, size, interpolation=cv2.INTER_AREA)
    mask = cv2.resize(background.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST).astype(bool)
    if reg.accepted:
        m = reg.matrix.copy()
        m[:, 2] *= size[0] / background.shape[1]
        o = cv2.warpAffine(o, m, size, flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE)
    if mask.sum() < 10:
        return None
    lab_s = chroma_view(source_rgb) if source_lab is None else source_lab
    lab_o = cv2.cvtColor(o.astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB)
    d = np.hypot(lab_s[..., 1] - lab_o[..., 1], lab_s[..., 2] - lab_o[..., 2])
    return float(np.median(d[mask]))
