"""Structural similarity map (Wang et al. 2004), the same definition as skimage's defaults
(7x7 uniform window, K1 = 0.01, K2 = 0.03, sample covariance, reflected borders), computed with
OpenCV box filters in float32 on mean-centred values (centring keeps the E[x^2] - E[x]^2 terms well
conditioned in single precision): several times faster, which matters at one call per sample. The
tests hold it to skimage.metrics.structural_similarity(full=True) within 1e-4.

One image's own statistics (its centred values, local mean and variance) do not depend on the other
image: `prepare` computes them once, so a source compared with both its edit and its ground truth
pays for them once. `ssim_map` and `ssim_map_prepared` perform the same float32 operations in the
same order, so their maps are bit-identical."""

from __future__ import annotations

import threading
from dataclasses import dataclass

import cv2
import numpy as np

WINDOW = 7
K1, K2 = 0.01, 0.03
_N = WINDOW * WINDOW
_COV_NORM = _N / (_N - 1)


def _mean(img: np.ndarray) -> np.ndarray:
    return cv2.boxFilter(img, -1, (WINDOW, WINDOW), normalize=True, borderType=cv2.BORDER_REFLECT)


@dataclass(frozen=True)
class SsimStats:
    """One image's side of SSIM: centred values x, local mean ux, variance vx, mx^2 + c1 term parts."""

    x: np.ndarray
    ux: np.ndarray
    vx: np.ndarray
    mx: np.ndarray
    mx2: np.ndarray  # mx * mx
    data_range: float

    @property
    def shape(self) -> tuple[int, ...]:
        return self.x.shape


def prepare(a: np.ndarray, data_range: float = 255.0) -> SsimStats:
    """The statistics of `a` that every SSIM against it reuses (read-only arrays)."""
    offset = data_range / 2  # SSIM is invariant to a common shift of both images
    x = a.astype(np.float32) - np.float32(offset)
    ux = _mean(x)  # mean of the shifted image: ux + offset is the true mean
    vx = _COV_NORM * (_mean(x * x) - ux * ux)
    mx = ux + offset
    mx2 = mx * mx
    for arr in (x, ux, vx, mx, mx2):
        arr.flags.writeable = False  # shared between pairs: nobody may change them in place
    return SsimStats(x, ux, vx, mx, mx2, data_range)


class _Scratch(threading.local):
    """Per-thread float32 buffers for one map's intermediates: a fresh 1 MB array per step costs
    page faults that take as long as the arithmetic itself (12 steps per pair at 512 px)."""

    shape: tuple[int, ...] | None = None
    bufs: tuple[np.ndarray, ...] = ()

    def get(self, shape: tuple[int, ...]) -> tuple[np.ndarray, ...]:
        if self.shape != shape:
            self.shape, self.bufs = shape, tuple(np.empty(shape, np.float32) for _ in range(5))
        return self.bufs


_SCRATCH = _Scratch()


def ssim_map_prepared(sa: SsimStats, b: np.ndarray) -> np.ndarray:
    """SSIM map (float32, a new array) of the prepared image against `b`; the same values as
    `ssim_map`: every step below is one float32 operation of the written-out formula, in its order."""
    if sa.shape != b.shape:
        raise ValueError(f"ssim_map needs equal shapes, got {sa.shape} and {b.shape}")
    data_range = sa.data_range
    offset = data_range / 2
    y, uy, vy, vxy, tmp = _SCRATCH.get(sa.shape)
    np.subtract(b, np.float32(offset), out=y, dtype=np.float32)  # b.astype(float32) - offset
    cv2.boxFilter(y, -1, (WINDOW, WINDOW), dst=uy, normalize=True, borderType=cv2.BORDER_REFLECT)
    np.multiply(y, y, out=tmp)
    cv2.boxFilter(tmp, -1, (WINDOW, WINDOW), dst=vy, normalize=True, borderType=cv2.BORDER_REFLECT)
    np.multiply(uy, uy, out=tmp)
    vy -= tmp
    vy *= _COV_NORM  # vy = cov_norm * (mean(y y) - uy uy)
    np.multiply(sa.x, y, out=tmp)
    cv2.boxFilter(tmp, -1, (WINDOW, WINDOW), dst=vxy, normalize=True, borderType=cv2.BORDER_REFLECT)
    np.multiply(sa.ux, uy, out=tmp)
    vxy -= tmp
    vxy *= _COV_NORM  # vxy = cov_norm * (mean(x y) - ux uy)
    c1 = (K1 * data_range) ** 2
    c2 = (K2 * data_range) ** 2
    my = uy
    my += offset  # uy is not used again
    num = 2 * sa.mx  # the one array handed back
    num *= my
    num += c1
    vxy *= 2
    vxy += c2
    num *= vxy  # (2 mx my + c1) (2 vxy + c2)
    den = tmp
    np.multiply(my, my, out=den)
    den += sa.mx2
    den += c1  # mx^2 + my^2 + c1: the same sum order as mx * mx + my * my + c1
    vy += sa.vx  # vx + vy: float addition commutes exactly
    vy += c2
    den *= vy
    num /= den
    return num


def ssim_map(a: np.ndarray, b: np.ndarray, data_range: float = 255.0) -> np.ndarray:
    if a.shape != b.shape:
        raise ValueError(f"ssim_map needs equal shapes, got {a.shape} and {b.shape}")
    return ssim_map_prepared(prepare(a, data_range), b).astype(np.float64)
