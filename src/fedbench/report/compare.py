"""`fedbench compare A B`: the paired bootstrap difference of two runs on the samples they share.

FED-Score is a macro mean over target classes, so the difference is one too: per class the mean of
(A - B) over the shared samples, then the mean over classes. The bootstrap resamples shared sample
ids within each class, the same ids for both runs (paired), as the scorer's own interval does.
The interval is the 2.5 / 97.5 percentile of the resampled differences; the two-sided p-value is the
share of resampled differences, centred on the observed one, at least as far from it as the
observed difference is from zero (the null "no difference" imposed by shifting, Efron & Tibshirani
1993, §16.4), with the usual +1 so that it is never 0.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from fedbench.labels import EXPRESSIONS
from fedbench.metrics.components import HEADLINE
from fedbench.metrics.fedscore import DATASET_ERRORS
from fedbench.report.runs import Run

DIMENSIONS: tuple[str, ...] = HEADLINE
DEFAULT_BOOTSTRAP = 10_000
DEFAULT_SEED = 0


class CompareError(ValueError):
    """Two runs that cannot be compared (no shared samples, different benchmarks, versions)."""


@dataclass
class DimensionDiff:
    dimension: str
    mean_a: float | None  # macro mean of A on the paired samples (may differ from A's summary)
    mean_b: float | None
    diff: float | None  # mean_a - mean_b
    ci95: tuple[float, float] | None
    p_value: float | None
    n: int  # samples where both runs have a value for this dimension
    classes: int


@dataclass
class Comparison:
    a: str
    b: str
    n_shared: int
    only_a: int
    only_b: int
    excluded: int  # shared ids a dataset error left out of either run
    n_bootstrap: int
    seed: int
    fedscore_version: str
    dimensions: list[DimensionDiff]
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _paired(a: list[dict], b: list[dict], dim: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    by_class: dict[str, tuple[list[float], list[float]]] = {}
    for ra, rb in zip(a, b):
        va, vb = ra.get(dim), rb.get(dim)
        if va is None or vb is None:
            continue
        xs, ys = by_class.setdefault(ra["target"], ([], []))
        xs.append(float(va))
        ys.append(float(vb))
    return {c: (np.asarray(by_class[c][0]), np.asarray(by_class[c][1])) for c in EXPRESSIONS if c in by_class}


def paired_bootstrap(values: dict[str, tuple[np.ndarray, np.ndarray]], n_bootstrap: int,
                     seed: int) -> tuple[float, tuple[float, float], float, np.ndarray]:
    """Observed macro difference, its percentile 95 % interval, two-sided p, and the resampled differences."""
    diffs = {c: x - y for c, (x, y) in values.items()}
    observed = float(np.mean([d.mean() for d in diffs.values()]))
    rng = np.random.default_rng(seed)
    boot = np.zeros(n_bootstrap)
    for d in diffs.values():
        # Resample in chunks so that 10k resamples of a large class stay small in memory.
        for start in range(0, n_bootstrap, 2000):
            stop = min(n_bootstrap, start + 2000)
            idx = rng.integers(0, len(d), size=(stop - start, len(d)))
            boot[start:stop] += d[idx].mean(axis=1)
    boot /= len(diffs)
    lo, hi = np.percentile(boot, [2.5, 97.5])
    # Compare with a tolerance: resampling a constant difference must not look "as extreme" by rounding.
    extreme = np.abs(boot - observed) >= abs(observed) - 1e-12 * max(1.0, abs(observed))
    p = 1.0 if observed == 0 else float((1 + np.count_nonzero(extreme)) / (n_bootstrap + 1))
    return observed, (float(lo), float(hi)), min(1.0, p), boot


def compare_runs(a: Run, b: Run, n_bootstrap: int = DEFAULT_BOOTSTRAP, seed: int = DEFAULT_SEED,
                 allow_version_mismatch: bool = False) -> Comparison:
    """Paired bootstrap of A - B on the samples (manifest ids) both runs scored."""
    if n_bootstrap < 100:
        raise CompareError(f"--n-bootstrap must be at least 100 (got {n_bootstrap})")
    notes: list[str] = []
    if a.fedscore_version != b.fedscore_version:
        msg = (f"{a.name} was scored with FED-Score {a.fedscore_version} and {b.name} with {b.fedscore_version}: "
               "their scores are not comparable; score both with the same --fedscore-version")
        if not allow_version_mismatch:
            raise CompareError(msg)
        notes.append(msg)
    ma, mb = a.manifest_path(), b.manifest_path()
    if ma and mb and ma != mb:
        notes.append(f"the runs name different manifests ({ma} and {mb}); samples are paired by id")
    ra, rb = a.by_id, b.by_id
    shared = [i for i in ra if i in rb]  # A's manifest order
    if not shared:
        raise CompareError(
            f"{a.path} and {b.path} share no sample ids ({len(ra)} and {len(rb)} samples): "
            "they were scored on different benchmarks")
    mismatched = [i for i in shared if ra[i].get("target") != rb[i].get("target")]
    if mismatched:
        i = mismatched[0]
        raise CompareError(
            f"{len(mismatched)} shared id(s) have different targets, e.g. {i!r}: {ra[i].get('target')} in {a.name}, "
            f"{rb[i].get('target')} in {b.name}; the runs are on different benchmarks")
    usable = [i for i in shared if ra[i]["status"] not in DATASET_ERRORS and rb[i]["status"] not in DATASET_ERRORS]
    rows_a, rows_b = [ra[i] for i in usable], [rb[i] for i in usable]
    dims = []
    for k, dim in enumerate(DIMENSIONS):
        values = _paired(rows_a, rows_b, dim)
        n = int(sum(len(x) for x, _ in values.values()))
        if not values:
            dims.append(DimensionDiff(dim, None, None, None, None, None, 0, 0))
            continue
        # A seed per dimension (seed + k), recorded as `seed`: the same call gives the same numbers.
        diff, ci, p, _ = paired_bootstrap(values, n_bootstrap, seed + k)
        mean_a = float(np.mean([x.mean() for x, _ in values.values()]))
        mean_b = float(np.mean([y.mean() for _, y in values.values()]))
        dims.append(DimensionDiff(dim, mean_a, mean_b, diff, ci, p, n, len(values)))
    if len(usable) < len(shared):
        notes.append(f"{len(shared) - len(usable)} shared sample(s) left out: a dataset error in either run")
    return Comparison(a=a.name, b=b.name, n_shared=len(shared), only_a=len(ra) - len(shared),
                      only_b=len(rb) - len(shared), excluded=len(shared) - len(usable), n_bootstrap=n_bootstrap,
                      seed=seed, fedscore_version=a.fedscore_version, dimensions=dims, notes=notes)
