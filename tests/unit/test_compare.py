"""`fedbench compare`: the paired bootstrap on shared samples.

Synthetic runs check the arithmetic (a constant shift, no difference, pairing, the null's false
positive rate, agreement with scipy's bootstrap); one real pair of runs, scored from the shared
fixtures, checks that the oracle beats the lazy edit with an interval clear of zero.
"""

from __future__ import annotations

import copy
import json
import shutil

import numpy as np
import pytest
from scipy import stats
from typer.testing import CliRunner

from fedbench.cli import app
from fedbench.metrics.fedscore import FEDSCORE_VERSION
from fedbench.data.manifest import Manifest, read_manifest
from fedbench.labels import EXPRESSIONS
from fedbench.report.compare import CompareError, compare_runs, paired_bootstrap
from fedbench.report.runs import load_run
from fedbench.testing.synthetic_runs import Behaviour, synthetic_rows, write_run


def _samples(n: int, prefix: str = "s") -> list[tuple[str, str]]:
    return [(f"{prefix}{i:03d}", EXPRESSIONS[1 + i % 6]) for i in range(n)]


def _shifted(rows: list[dict], delta: float) -> list[dict]:
    """The same samples with FED moved by `delta` (the other components kept)."""
    out = copy.deepcopy(rows)
    for r in out:
        if r["fed"] is not None:
            r["fed"] = r["fed"] + delta
    return out


def test_a_constant_shift_is_found_exactly_with_the_smallest_p(tmp_path):
    rows = synthetic_rows(_samples(60), Behaviour(gain_spread=0.6), seed=3)
    a = load_run(write_run(tmp_path / "a", _shifted(rows, 5.0), None, None))
    b = load_run(write_run(tmp_path / "b", rows, None, None))
    c = compare_runs(a, b, n_bootstrap=2000, seed=1)
    fed = c.dimensions[0]
    assert fed.dimension == "fed" and fed.n == 60
    assert fed.diff == pytest.approx(5.0)
    assert fed.ci95 == pytest.approx((5.0, 5.0))
    assert fed.p_value == pytest.approx(1 / 2001)
    # The other dimensions did not move: no difference, p = 1.
    for d in c.dimensions[1:]:
        assert d.diff == 0.0 and d.p_value == 1.0


def test_pairing_removes_the_between_sample_spread(tmp_path):
    """Per-sample FED varies a lot; the paired difference is small and steady, so its interval is
    far narrower than the spread of either run, and it excludes 0."""
    rows = synthetic_rows(_samples(84), Behaviour(gain_spread=0.8), seed=4)
    rng = np.random.default_rng(0)
    b_rows = copy.deepcopy(rows)
    for r in b_rows:
        r["fed"] = r["fed"] - 2.0 + float(rng.normal(0, 0.5))
    c = compare_runs(load_run(write_run(tmp_path / "a", rows, None, None)),
                     load_run(write_run(tmp_path / "b", b_rows, None, None)), n_bootstrap=2000)
    fed = c.dimensions[0]
    lo, hi = fed.ci95
    assert 1.5 < lo < fed.diff < hi < 2.5
    assert np.std([r["fed"] for r in rows]) > 10 * (hi - lo)
    assert fed.p_value < 0.01


def test_matches_scipy_percentile_bootstrap_for_one_class():
    rng = np.random.default_rng(7)
    x = rng.normal(60, 15, 150)
    y = x - rng.normal(1.0, 4.0, 150)
    diff, (lo, hi), _, _ = paired_bootstrap({"happy": (x, y)}, 20000, seed=0)
    ref = stats.bootstrap((x - y,), np.mean, n_resamples=20000, method="percentile", random_state=1)
    assert diff == pytest.approx(float(np.mean(x - y)))
    width = ref.confidence_interval.high - ref.confidence_interval.low
    assert lo == pytest.approx(ref.confidence_interval.low, abs=0.05 * width)
    assert hi == pytest.approx(ref.confidence_interval.high, abs=0.05 * width)


def test_false_positive_rate_under_the_null_is_near_five_percent():
    rng = np.random.default_rng(11)
    hits = 0
    trials = 300
    for t in range(trials):
        vals = {c: (rng.normal(50, 10, 30), rng.normal(50, 10, 30)) for c in ("happy", "sad", "fear")}
        _, _, p, _ = paired_bootstrap(vals, 400, seed=t)
        hits += p < 0.05
    assert 0.02 <= hits / trials <= 0.10, hits / trials


def test_same_seed_same_numbers(tmp_path):
    a = load_run(write_run(tmp_path / "a", synthetic_rows(_samples(40), Behaviour(gain=1.3), seed=1), None, None))
    b = load_run(write_run(tmp_path / "b", synthetic_rows(_samples(40), Behaviour(gain=0.8), seed=2), None, None))
    first, again = compare_runs(a, b, 1000, seed=5), compare_runs(a, b, 1000, seed=5)
    assert first.as_dict() == again.as_dict()
    assert compare_runs(a, b, 1000, seed=6).dimensions[0].ci95 != first.dimensions[0].ci95
    assert first.seed == 5 and first.n_bootstrap == 1000


def test_only_shared_ids_are_compared(tmp_path):
    all_rows = synthetic_rows(_samples(50), Behaviour(), seed=1)
    a = load_run(write_run(tmp_path / "a", all_rows, None, None))
    b = load_run(write_run(tmp_path / "b", all_rows[10:45], None, None))
    c = compare_runs(a, b, 500)
    assert (c.n_shared, c.only_a, c.only_b) == (35, 15, 0)
    # Identical rows on the shared part: no difference.
    assert all(d.diff == 0.0 and d.p_value == 1.0 for d in c.dimensions)


def test_no_shared_samples_is_a_clear_error(tmp_path):
    a = write_run(tmp_path / "a", synthetic_rows(_samples(10, "x"), Behaviour(), 1), None, None)
    b = write_run(tmp_path / "b", synthetic_rows(_samples(10, "y"), Behaviour(), 2), None, None)
    with pytest.raises(CompareError, match="share no sample ids"):
        compare_runs(load_run(a), load_run(b))
    res = CliRunner().invoke(app, ["compare", str(a), str(b)])
    assert res.exit_code == 2
    assert "share no sample ids" in res.output and str(a) in res.output.replace("\n", "")


def test_same_ids_different_targets_or_versions_are_refused(tmp_path):
    rows = synthetic_rows(_samples(12), Behaviour(), 1)
    other = copy.deepcopy(rows)
    other[3]["target"] = "neutral" if other[3]["target"] != "neutral" else "happy"
    a = load_run(write_run(tmp_path / "a", rows, None, None))
    with pytest.raises(CompareError, match="different targets"):
        compare_runs(a, load_run(write_run(tmp_path / "b", other, None, None)))
    old = load_run(write_run(tmp_path / "c", rows, None, None, version="1.0"))
    with pytest.raises(CompareError, match=f"FED-Score {FEDSCORE_VERSION} .* 1.0"):
        compare_runs(a, old)
    assert compare_runs(a, old, 200, allow_version_mismatch=True).notes


# ---------------------------------------------------------------- real scores

@pytest.mark.integration
def test_oracle_beats_lazy_on_real_scores(pixelsmile, tmp_path):
    from fedbench.scoring.runner import score

    full = read_manifest(pixelsmile / "triplets.jsonl")
    man = Manifest(full.path, full.root, full.triplets[:5])
    cache = tmp_path / "features.sqlite"
    for probe in ("oracle", "lazy"):
        edits = tmp_path / f"edits-{probe}"
        edits.mkdir()
        for t in man:
            shutil.copy(t.ground_truth if probe == "oracle" else t.source, edits / f"{t.id}.jpg")
        score(man, edits, tmp_path / probe, workers=1, cache_path=cache, n_bootstrap=200)
    res = CliRunner().invoke(app, ["compare", str(tmp_path / "oracle"), str(tmp_path / "lazy"), "--json",
                                   "--n-bootstrap", "2000"])
    assert res.exit_code == 0, res.output
    c = json.loads(res.output)
    fed = c["dimensions"][0]
    scored = [json.loads(ln) for ln in (tmp_path / "oracle" / "samples.jsonl").read_text().splitlines()]
    assert c["n_shared"] == 5 and fed["n"] == sum(r["fed"] is not None for r in scored) >= 3
    # The lazy edit scores 0 (REG 0); the oracle scores near 100 on every sample.
    assert fed["diff"] > 90 and fed["ci95"][0] > 90 and fed["p_value"] < 0.001
    fidelity = c["dimensions"][2]
    # Both keep at least what the ground truth keeps (FED-Score 1.2 measures Fidelity against G):
    # the difference is Alignment and REG, never Fidelity.
    assert abs(fidelity["diff"]) < 1e-6 and fidelity["p_value"] > 0.5
