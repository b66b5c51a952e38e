"""Probe editors for the bias study and the tests: lazy (E = S), oracle (E = G), pixel blends.

Probes read the ground truth, which no real editor may: provenance marks them (`reads_ground_truth`).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from fedbench.editors.base import EditRequest, EditResult, Editor


def pixel_blend(source: np.ndarray, ground_truth: np.ndarray, k: float) -> np.ndarray:
    """E = S + k (G - S) in pixels: k < 1 under-edits, k > 1 over-edits (clipped to 0..255)."""
    s = source.astype(np.float64)
    g = ground_truth.astype(np.float64)
    return np.clip(s + k * (g - s), 0, 255).round().astype(np.uint8)


class IdentityEditor(Editor):
    """The lazy edit: returns the source unchanged (FED-Score must give it 0)."""

    description = "lazy probe: returns the source"

    def edit(self, request: EditRequest) -> EditResult:
        return EditResult.ok(request.source_rgb())


class OracleEditor(Editor):
    """Returns the ground truth: the ceiling of the benchmark."""

    description = "probe: returns the ground truth"
    reads_ground_truth: ClassVar[bool] = True

    def edit(self, request: EditRequest) -> EditResult:
        return EditResult.ok(request.ground_truth_rgb())


class PixelBlendEditor(Editor):
    """S + k (G - S): k < 1 under-edits, k > 1 over-edits. Param `k` (default 1)."""

    description = "probe: S + k (G - S), under- (k < 1) and over-editing (k > 1)"
    reads_ground_truth: ClassVar[bool] = True

    def __init__(self, k: float = 1.0) -> None:
        super().__init__(k=float(k))
        self.k = float(k)

    def edit(self, request: EditRequest) -> EditResult:
        s, g = request.source_rgb(), request.ground_truth_rgb()
        if s.shape != g.shape:
            return EditResult.failed(f"source {s.shape[1]}x{s.shape[0]} and ground truth {g.shape[1]}x{g.shape[0]} "
                                     "differ in size; pixel-blend needs aligned images")
        return EditResult.ok(pixel_blend(s, g, self.k))
