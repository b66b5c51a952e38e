"""The bias table (fedscore.md, meta-evaluation item 6): which probe each single metric crowns.

For every triplet the probes are ranked by one metric at a time — identity cosine alone, target
probability alone, pixel L1 and SSIM to the ground truth, optional CLIP-T / DINO — and by FED-Score.
A metric is biased when it puts the lazy probe or an over-edit above the oracle; FED-Score must not.
The `copy` probe (S + 1 (G - S)) is the ground truth in pixels: it ties with the oracle by
construction and takes no part in the ranking.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from fedbench.data.images import decode_image
from fedbench.data.manifest import Triplet
from fedbench.faces.perception import ImageFeatures
from fedbench.meta.probes import Probe
from fedbench.metrics.single import (
    PIXEL_LONG_SIDE, identity_cosine, optional_metrics, pixel_l1_similarity, ssim_similarity, target_probability,
)

TIE = 1e-9
BIASED_KINDS = ("lazy", "over")


@dataclass
class MetricSpec:
    name: str
    what: str
    fn: Callable[..., float] | None  # None: absent (the reason is in `what`)


def single_metric_values(triplet: Triplet, edit_path: Path, pixel: dict[str, float],
                         feats: dict[Path, ImageFeatures | str],
                         images: Callable[[Path], np.ndarray] | None = None) -> dict[str, float | None]:
    """Every single metric for one edit (None where a face is missing). `pixel` holds the pixel
    metrics made with the probe; optional metrics (user-registered) read the images via `images`."""
    out: dict[str, float | None] = {"identity_cosine": None, "target_probability": None,
                                    "pixel_l1_to_gt": pixel.get("pixel_l1_to_gt"), "ssim_to_gt": pixel.get("ssim_to_gt")}
    s, e = feats.get(triplet.source), feats.get(edit_path)
    if isinstance(s, ImageFeatures) and isinstance(e, ImageFeatures) and s.faces and e.faces:
        s_face = s.faces[0]
        e_face = e.primary(s_face.box)  # the face the scorer would compare, too
        out["identity_cosine"] = identity_cosine(e_face.embedding, s_face.embedding)
        out["target_probability"] = target_probability(e_face.emotion, triplet.target)
    for m in optional_metrics():
        if m.fn is not None and images is not None:
            out[m.name] = float(m.fn(images(edit_path), images(triplet.source), images(triplet.ground_truth),
                                     triplet.instruction))
    return out


def image_loader(long_side: int = 1024) -> Callable[[Path], np.ndarray]:
    """Decoded images (memoised) for optional metrics."""
    memo: dict[Path, np.ndarray] = {}

    def load(path: Path) -> np.ndarray:
        if path not in memo:
            memo[path] = decode_image(path.read_bytes(), long_side).rgb
        return memo[path]

    return load


def _winners(values: dict[str, float]) -> list[str]:
    best = max(values.values())
    return [p for p, v in values.items() if v >= best - TIE]


def bias_table(per_triplet: dict[str, dict[str, dict[str, float | None]]], probes: list[Probe]) -> dict[str, Any]:
    """per_triplet: triplet id -> probe -> metric -> value (FED included as 'fed').

    For each metric: the share of triplets each probe ranks first (a tie splits the win), and the
    share where the lazy or an over-edit probe scores above the oracle."""
    kinds = {p.name: p.kind for p in probes}
    ranked = [p.name for p in probes if p.kind != "copy"]
    metrics = sorted({m for by_probe in per_triplet.values() for vals in by_probe.values() for m in vals})
    table: dict[str, Any] = {}
    for metric in metrics:
        first = {p: 0.0 for p in ranked}
        beats_oracle = 0
        n = 0
        for by_probe in per_triplet.values():
            vals = {p: by_probe[p].get(metric) for p in ranked if p in by_probe}
            vals = {p: float(v) for p, v in vals.items() if v is not None}
            if "oracle" not in vals or len(vals) < 2:
                continue
            n += 1
            winners = _winners(vals)
            for w in winners:
                first[w] += 1.0 / len(winners)
            biased = [v for p, v in vals.items() if kinds[p] in BIASED_KINDS]
            if biased and max(biased) > vals["oracle"] + TIE:
                beats_oracle += 1
        if n == 0:
            continue
        top = max(first, key=lambda p: first[p])
        table[metric] = {
            "triplets": n,
            "first_share": {p: round(v / n, 4) for p, v in first.items() if v > 0},
            "most_often_first": top,
            "most_often_first_kind": kinds[top],
            "lazy_or_over_edit_above_oracle": round(beats_oracle / n, 4),
        }
    fed = table.get("fed", {}).get("lazy_or_over_edit_above_oracle")
    table_biased = [m for m, v in table.items() if m != "fed" and v["lazy_or_over_edit_above_oracle"] > 0]
    return {"metrics": table, "biased_single_metrics": table_biased,
            "fed_lazy_or_over_edit_above_oracle": fed}


def metric_specs() -> list[MetricSpec]:
    """What the table shows, with the optional metrics that are absent and why."""
    specs = [
        MetricSpec("identity_cosine", "cos(f(E), f(S)), SFace embeddings", identity_cosine),
        MetricSpec("target_probability", "p_t(E), the emotion ensemble", target_probability),
        MetricSpec("pixel_l1_to_gt", f"1 - mean |E - G| / 255, RGB at {PIXEL_LONG_SIDE} px", pixel_l1_similarity),
        MetricSpec("ssim_to_gt", f"mean SSIM(E, G), grey at {PIXEL_LONG_SIDE} px", ssim_similarity),
    ]
    for m in optional_metrics():
        what = m.what if m.fn else (f"absent: {m.what}; none registered "
                                    "(fedbench.metrics.single.register_optional_metric)")
        specs.append(MetricSpec(m.name, what, m.fn))
    return specs
