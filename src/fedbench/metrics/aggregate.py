"""Aggregation: per sample -> per target class (mean) -> macro mean over classes, with a stratified
bootstrap 95 % interval. Undefined values (null) never enter a mean; they are counted instead."""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from fedbench.labels import EXPRESSIONS
from fedbench.metrics.components import HEADLINE, REGISTRY

DIMENSIONS = tuple(c.name for c in REGISTRY if c.aggregation == "macro_mean")


def _class_values(rows: list[dict[str, Any]], key: str) -> dict[str, np.ndarray]:
    by_class: dict[str, list[float]] = {}
    for row in rows:
        if row.get(key) is not None:
            by_class.setdefault(row["target"], []).append(float(row[key]))
    return {c: np.asarray(by_class[c]) for c in EXPRESSIONS if c in by_class}


def macro_mean(values: dict[str, np.ndarray]) -> float | None:
    if not values:
        return None
    return float(np.mean([v.mean() for v in values.values()]))


def bootstrap_interval(values: dict[str, np.ndarray], n: int, seed: int) -> tuple[float, float] | None:
    """Percentile interval of the macro mean, resampling samples within each class."""
    if not values or n <= 0:
        return None
    rng = np.random.default_rng(seed)
    means = np.zeros(n)
    for arr in values.values():
        idx = rng.integers(0, len(arr), size=(n, len(arr)))
        means += arr[idx].mean(axis=1)
    means /= len(values)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return float(lo), float(hi)


def _round(x: float | None, digits: int = 4) -> float | None:
    return None if x is None else round(x, digits)


def summarise(rows: list[dict[str, Any]], n_bootstrap: int = 1000, seed: int = 0) -> dict[str, Any]:
    from fedbench.metrics.fedscore import EXCLUDED, REFUSALS

    scored = [r for r in rows if r["status"] not in EXCLUDED]
    overall: dict[str, Any] = {}
    per_class: dict[str, dict[str, Any]] = {c: {"n": 0} for c in EXPRESSIONS}
    for row in scored:
        per_class[row["target"]]["n"] += 1
    for i, dim in enumerate(DIMENSIONS):
        values = _class_values(scored, dim)
        ci = bootstrap_interval(values, n_bootstrap, seed + i) if dim in HEADLINE else None
        overall[dim] = {
            "mean": _round(macro_mean(values)),
            "ci95": None if ci is None else [_round(ci[0]), _round(ci[1])],
            "n": int(sum(len(v) for v in values.values())),
        }
        for c, v in values.items():
            per_class[c][dim] = _round(float(v.mean()))
    gains = np.array([r["gain"] for r in scored if r.get("gain") is not None], dtype=np.float64)
    return {
        "n_samples": len(rows),
        "n_scored": len(scored),
        "overall": overall,
        "per_class": {c: v for c, v in per_class.items() if v["n"]},
        "gain": {
            "mean": _round(float(gains.mean())) if gains.size else None,
            "median": _round(float(np.median(gains))) if gains.size else None,
            "n": int(gains.size),
        },
        "status_counts": dict(sorted(Counter(r["status"] for r in rows).items())),
        "edit_status_counts": dict(sorted(Counter(r["edit_status"] for r in rows if r["edit_status"]).items())),
        "excluded": [{"id": r["id"], "status": r["status"], "reason": r["reason"]}
                     for r in rows if r["status"] in EXCLUDED],
        # Reported beside FED-Score: refusals are excluded from it, so a model's coverage shows here.
        "refusal_rate": _round(sum(r["status"] in REFUSALS for r in rows) / len(rows)) if rows else None,
    }
