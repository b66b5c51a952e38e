"""Probe editors for the bias study and the tests: lazy (E = S), oracle (E = G), pixel blends."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def pixel_blend(source: np.ndarray, ground_truth: np.ndarray, k: float) -> np.ndarray:
    """E = S + k (G - S) in pixels: k < 1 under-edits, k > 1 over-edits (clipped to 0..255)."""
    s = source.astype(np.float64)
    g = ground_truth.astype(np.float64)
    return np.clip(s + k * (g - s), 0, 255).round().astype(np.uint8)


def pixel_blend_files(source: Path, ground_truth: Path, k: float, dest: Path) -> None:
    """pixel_blend on two image files (same size), written losslessly to `dest`."""
    s = np.asarray(Image.open(source).convert("RGB"))
    g = np.asarray(Image.open(ground_truth).convert("RGB"))
    Image.fromarray(pixel_blend(s, g, k)).save(dest)
