"""Agreement of FED-Score with human ratings (fedscore.md, meta-evaluation), when ratings exist.

Ratings CSV: one row per (sample, rater): `sample` (or `id`) — the id of a scored row —, `rater`,
and a score for one or more dimensions: `fed` (or `overall`), `alignment`, `fidelity`, `reg` (or
`expression`). Any numeric scale; an empty cell is a missing rating.

Per dimension: Spearman and Kendall (scipy.stats) of FED-Score's value with the mean human score of
each sample, with percentile-bootstrap 95 % intervals (samples resampled, fixed seed); between the
raters: Krippendorff's alpha (interval metric) and the mean pairwise Spearman.
"""

from __future__ import annotations

import csv
import itertools
import math
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import kendalltau, spearmanr

DIMENSIONS = ("fed", "alignment", "fidelity", "reg")
ALIASES = {"fed": "fed", "overall": "fed", "alignment": "alignment", "fidelity": "fidelity", "reg": "reg",
           "expression": "reg"}
MIN_SAMPLES = 3  # fewer and a rank correlation means nothing


class RatingsError(ValueError):
    """A malformed ratings CSV; the message names the file and each bad row."""


Ratings = dict[str, dict[str, dict[str, float]]]  # dimension -> sample -> rater -> score


def read_ratings(path: str | Path, known_samples: set[str] | None = None) -> Ratings:
    """Parse and validate a ratings CSV; every problem names its row (all at once)."""
    path = Path(path).expanduser().resolve()
    if not path.is_file():
        raise RatingsError(f"{path}: ratings file not found")
    with open(path, encoding="utf-8-sig", newline="") as fh:
        reader = csv.DictReader(fh)
        header = [(c or "").strip().lower() for c in (reader.fieldnames or [])]
        id_col = "sample" if "sample" in header else ("id" if "id" in header else None)
        dims = {c: ALIASES[c] for c in header if c in ALIASES}
        if id_col is None or "rater" not in header or not dims:
            raise RatingsError(f"{path}: expected columns sample (or id), rater and at least one of "
                               f"{', '.join(sorted(ALIASES))}; found {', '.join(header) or 'none'}")
        if len(set(dims.values())) < len(dims):
            raise RatingsError(f"{path}: two columns name the same dimension ({', '.join(dims)})")
        ratings: Ratings = {d: {} for d in dims.values()}
        problems: list[str] = []
        for n, raw in enumerate(reader, 2):  # row 1 is the header
            row = {(k or "").strip().lower(): (v or "").strip() for k, v in raw.items() if k is not None}
            sample, rater = row.get(id_col, ""), row.get("rater", "")
            if not sample or not rater:
                problems.append(f"row {n}: empty {id_col if not sample else 'rater'}")
                continue
            if known_samples is not None and sample not in known_samples:
                problems.append(f"row {n}: sample {sample!r} is not a scored sample")
                continue
            for col, dim in dims.items():
                cell = row.get(col, "")
                if cell == "":
                    continue
                try:
                    value = float(cell)
                except ValueError:
                    problems.append(f"row {n}: {col} {cell!r} is not a number")
                    continue
                if not math.isfinite(value):
                    problems.append(f"row {n}: {col} {cell!r} is not finite")
                    continue
                if rater in ratings[dim].get(sample, {}):
                    problems.append(f"row {n}: rater {rater!r} rated {sample!r} twice ({col})")
                    continue
                ratings[dim].setdefault(sample, {})[rater] = value
    if problems:
        raise RatingsError(f"{path}: {len(problems)} problem(s)\n" + "\n".join(f"  {p}" for p in problems[:50]))
    if not any(ratings.values()):
        raise RatingsError(f"{path}: no ratings")
    return ratings


def krippendorff_alpha_interval(units: list[list[float]]) -> float | None:
    """Krippendorff's alpha, interval metric: 1 - observed / expected disagreement over pairable
    values (units with at least two ratings). None when it is undefined (no pairs, no variance)."""
    pairable = [np.asarray(u, dtype=np.float64) for u in units if len(u) >= 2]
    if not pairable:
        return None
    values = np.concatenate(pairable)
    n = len(values)

    def pair_sum(v: np.ndarray) -> float:  # sum over ordered pairs i != j of (v_i - v_j)^2
        return float(2 * (len(v) * np.sum(v * v) - np.sum(v) ** 2))

    observed = sum(pair_sum(u) / (len(u) - 1) for u in pairable) / n
    expected = pair_sum(values) / (n * (n - 1))
    if expected <= 0:
        return None
    return float(1.0 - observed / expected)


def _bootstrap(x: np.ndarray, y: np.ndarray, fn, n_boot: int, seed: int) -> list[float] | None:
    rng = np.random.default_rng(seed)
    stats = []
    for _ in range(n_boot):
        idx = rng.integers(0, len(x), len(x))
        if np.ptp(x[idx]) == 0 or np.ptp(y[idx]) == 0:
            continue  # a constant resample has no rank correlation
        stats.append(fn(x[idx], y[idx]))
    stats = [s for s in stats if math.isfinite(s)]
    if len(stats) < n_boot // 2:
        return None
    lo, hi = np.percentile(stats, [2.5, 97.5])
    return [round(float(lo), 4), round(float(hi), 4)]


def _r(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else round(float(x), 4)


def agreement(ratings: Ratings, scores: dict[str, dict[str, float | None]], n_boot: int = 1000,
              seed: int = 0) -> dict[str, Any]:
    """scores: sample -> dimension -> FED-Score value (None when undefined)."""
    out: dict[str, Any] = {}
    for dim, by_sample in ratings.items():
        pairs = [(scores[s][dim], float(np.mean(list(r.values())))) for s, r in by_sample.items()
                 if s in scores and scores[s].get(dim) is not None]
        res: dict[str, Any] = {"samples": len(pairs), "raters": len({r for v in by_sample.values() for r in v})}
        if len(pairs) >= MIN_SAMPLES:
            x = np.array([p[0] for p in pairs], dtype=np.float64)
            y = np.array([p[1] for p in pairs], dtype=np.float64)
            sp = lambda a, b: float(spearmanr(a, b)[0])  # noqa: E731
            kt = lambda a, b: float(kendalltau(a, b)[0])  # noqa: E731
            res.update(spearman=_r(sp(x, y)), spearman_ci95=_bootstrap(x, y, sp, n_boot, seed),
                       kendall=_r(kt(x, y)), kendall_ci95=_bootstrap(x, y, kt, n_boot, seed + 1))
        else:
            res["note"] = f"fewer than {MIN_SAMPLES} scored samples with ratings: no correlation"
        raters = sorted({r for v in by_sample.values() for r in v})
        res["krippendorff_alpha_interval"] = _r(krippendorff_alpha_interval([list(v.values()) for v in by_sample.values()]))
        pairwise = []
        for a, b in itertools.combinations(raters, 2):
            common = [s for s, v in by_sample.items() if a in v and b in v]
            if len(common) >= MIN_SAMPLES:
                va = [by_sample[s][a] for s in common]
                vb = [by_sample[s][b] for s in common]
                rho = spearmanr(va, vb)[0] if np.ptp(va) > 0 and np.ptp(vb) > 0 else float("nan")
                if math.isfinite(rho):
                    pairwise.append(float(rho))
        res["mean_pairwise_spearman"] = _r(float(np.mean(pairwise))) if pairwise else None
        res["rater_pairs"] = len(pairwise)
        out[dim] = res
    return out
