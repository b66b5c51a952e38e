"""The source's side of the background measure, computed once per source image.

A triplet measures its background twice against the same source (S,E and, in cold runs, S,G), and a
source usually serves several triplets. Everything that depends on S alone (its grey copy at the
compared size, its face mask, its ECC fitting view, its SSIM statistics, its CIELAB at the chroma size)
is kept here and reused; each piece is computed by the same function the one-off path calls, so a
measure with or without a `SourceBackground` gives bit-identical numbers."""

from __future__ import annotations

import numpy as np

from fedbench.data.images import grey_view
from fedbench.faces.masks import face_mask
from fedbench.metrics import registration, ssim


def _frozen(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False  # shared by several pairs: a caller changing it in place would corrupt the next
    return a


class SourceBackground:
    """Lazily computed, per compared size, views of one source image (rgb) and its face landmarks."""

    def __init__(self, rgb: np.ndarray, landmarks: np.ndarray) -> None:
        self.rgb = rgb
        self.landmarks = landmarks
        self._grey: dict[int, np.ndarray] = {}
        self._mask: dict[tuple[int, int], np.ndarray] = {}
        self._ecc: dict[int, np.ndarray] = {}
        self._ssim: dict[int, ssim.SsimStats] = {}
        self._lab: np.ndarray | None = None

    def grey(self, long_side: int) -> np.ndarray:
        if long_side not in self._grey:
            self._grey[long_side] = _frozen(grey_view(self.rgb, long_side))
        return self._grey[long_side]

    def face_mask(self, size: tuple[int, int]) -> np.ndarray:
        if size not in self._mask:
            self._mask[size] = _frozen(face_mask(self.landmarks, size))
        return self._mask[size]

    def ecc_view(self, long_side: int) -> np.ndarray:
        if long_side not in self._ecc:
            self._ecc[long_side] = _frozen(registration.ecc_view(self.grey(long_side)))
        return self._ecc[long_side]

    def ssim_stats(self, long_side: int) -> ssim.SsimStats:
        if long_side not in self._ssim:
            self._ssim[long_side] = ssim.prepare(self.grey(long_side))
        return self._ssim[long_side]

    def chroma_lab(self) -> np.ndarray:
        if self._lab is None:
            self._lab = _frozen(registration.chroma_view(self.rgb))
        return self._lab
