"""Probe edits written as files: a test's edits folder made from the references, no model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from fedbench.editors.probes import pixel_blend


def pixel_blend_files(source: Path, ground_truth: Path, k: float, dest: Path) -> None:
    """pixel_blend on two image files (same size), written losslessly to `dest`."""
    s = np.asarray(Image.open(source).convert("RGB"))
    g = np.asarray(Image.open(ground_truth).convert("RGB"))
    Image.fromarray(pixel_blend(s, g, k)).save(dest)
