"""FED-Score on real edited portraits with the real backbones: the meta-evaluation checks of fedscore.md.

Probes on the 30 blend triplets (oracle E = G, lazy E = S, pixel blends S + k(G - S)), the graded
slider sequences, an impostor edit, and determinism of the result files.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import spearmanr

from fedbench.data.manifest import read_manifest
from fedbench.testing.probe_files import pixel_blend_files
from fedbench.scoring.runner import score

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache") / "features.sqlite"


@pytest.fixture(scope="module")
def probe_runs(pixelsmile, cache, tmp_path_factory) -> dict[str, dict[str, dict]]:
    """Score the four probes; rows by probe then id."""
    base = tmp_path_factory.mktemp("probes")
    manifest = read_manifest(pixelsmile / "triplets.jsonl")
    runs = {}
    for probe in ("oracle", "lazy", "k0.5", "k2"):
        edits = base / probe
        edits.mkdir()
        for t in manifest:
            if probe == "oracle":
                shutil.copy(t.ground_truth, edits / f"{t.id}.jpg")
            elif probe == "lazy":
                shutil.copy(t.source, edits / f"{t.id}.jpg")
            else:
                pixel_blend_files(t.source, t.ground_truth, float(probe[1:]), edits / f"{t.id}.png")
        result = score(manifest, edits, base / f"out-{probe}", cache_path=cache, workers=2)
        runs[probe] = {r["id"]: r for r in result.samples}
    return runs


def test_oracle_has_reg_one_identity_one_and_the_best_fed(probe_runs):
    oracle = probe_runs["oracle"]
    scored = [i for i, r in oracle.items() if r["status"] == "ok"]
    assert len(scored) >= 25
    for i in scored:
        assert oracle[i]["reg"] == pytest.approx(1.0) and oracle[i]["gain"] == pytest.approx(1.0)
        assert oracle[i]["id_score"] == pytest.approx(1.0)
        others = [probe_runs[p][i]["fed"] for p in ("lazy", "k0.5", "k2")]
        assert oracle[i]["fed"] > max(others), (i, oracle[i]["fed"], others)
    # A triplet without measurable change is reported, never averaged in.
    for r in oracle.values():
        if r["status"] == "degenerate_gt":
            assert r["reg"] is None and r["fed"] is None and r["reason"]


def test_lazy_edit_scores_zero(probe_runs):
    for r in probe_runs["lazy"].values():
        if r["status"] == "ok":
            assert r["fed"] == 0.0 and abs(r["gain"]) < 0.05 and r["reg"] == 0.0


def test_reg_prefers_the_ground_truth_change_over_half_and_double(probe_runs):
    ids = [i for i, r in probe_runs["oracle"].items() if r["status"] == "ok"]
    wins = sum(
        probe_runs["oracle"][i]["reg"] > probe_runs["k2"][i]["reg"]
        and probe_runs["oracle"][i]["reg"] > probe_runs["k0.5"][i]["reg"]
        for i in ids
    )
    assert wins >= 0.9 * len(ids)


def test_summary_orders_the_probes(probe_runs):
    def mean_fed(p):
        return np.mean([r["fed"] for r in probe_runs[p].values() if r["fed"] is not None])

    assert mean_fed("oracle") > mean_fed("k2") > mean_fed("lazy")
    assert mean_fed("oracle") > mean_fed("k0.5") > mean_fed("lazy") == 0.0


SEVEN_CLASS_SLIDERS = ("slider-happy", "slider-sad", "slider-angry")


@pytest.mark.parametrize("seq_id", SEVEN_CLASS_SLIDERS)
def test_gain_climbs_along_graded_sequences(pixelsmile, cache, tmp_path, seq_id):
    seq = next(s for s in json.loads((pixelsmile / "sequences.json").read_text()) if s["id"] == seq_id)
    frames = [pixelsmile / f for f in seq["frames"]]
    edits = tmp_path / "edits"
    edits.mkdir()
    rows = []
    for k, frame in enumerate(frames[1:], 1):
        rid = f"{seq_id}-{k:02d}"
        rows.append({"id": rid, "source": str(frames[0]), "ground_truth": str(frames[-1]),
                     "target": seq["target"], "instruction": f"Make the expression {seq['target']}."})
        os.symlink(frame, edits / f"{rid}{frame.suffix}")
    (tmp_path / "m.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = score(tmp_path / "m.jsonl", edits, cache_path=cache, workers=2, allow_outside=True)
    g = np.array([r["gain"] for r in result.samples], dtype=float)
    early, late = g[0:5], g[19:26]  # frames 01-05 and 20-26
    rho = spearmanr(np.arange(len(g)), g)[0]
    print(f"{seq_id}: rise {late.mean() - early.mean():.3f}, late median {np.median(late):.3f}, "
          f"Spearman {rho:.3f}")
    assert late.mean() - early.mean() >= 0.4
    assert 0.6 <= np.median(late) <= 1.25


def test_impostor_loses_identity_and_scores_below_the_true_edit(pixelsmile, cache, tmp_path, probe_runs):
    manifest = read_manifest(pixelsmile / "triplets.jsonl")
    edits = tmp_path / "impostor"
    edits.mkdir()
    picked = [t for t in manifest if t.target in ("happy", "sad", "angry")]
    for t in picked:  # another person (a slider subject) showing the target expression
        shutil.copy(pixelsmile / "slider" / t.target / "27.avif", edits / f"{t.id}.avif")
    result = score(manifest, edits, cache_path=cache, workers=2)
    rows = {r["id"]: r for r in result.samples}
    for t in picked:
        r = rows[t.id]
        assert r["edit_status"] == "ok"
        assert r["id_score"] == 0.0, (t.id, r["cos_edit_source"])
        true_fed = probe_runs["oracle"][t.id]["fed"]
        if r["fed"] is not None:
            assert r["fed"] < true_fed


def test_scoring_twice_is_byte_identical(pixelsmile, tmp_path):
    edits = tmp_path / "edits"
    edits.mkdir()
    manifest = read_manifest(pixelsmile / "triplets.jsonl")
    for t in manifest.triplets[:8]:
        pixel_blend_files(t.source, t.ground_truth, 0.75, edits / f"{t.id}.png")
    a = score(manifest, edits, tmp_path / "a", cache_path=tmp_path / "c1.sqlite", workers=1)
    b = score(manifest, edits, tmp_path / "b", cache_path=tmp_path / "c2.sqlite", workers=2)
    c = score(manifest, edits, tmp_path / "c", cache_path=tmp_path / "c2.sqlite", workers=2)  # warm cache
    first = (tmp_path / "a" / "samples.jsonl").read_bytes()
    assert first == (tmp_path / "b" / "samples.jsonl").read_bytes() == (tmp_path / "c" / "samples.jsonl").read_bytes()
    assert (tmp_path / "a" / "summary.json").read_text() == (tmp_path / "c" / "summary.json").read_text()
    assert a.summary["edit_status_counts"]["missing_edit"] == len(manifest) - 8
    assert b.samples == c.samples


def test_a_rewritten_source_is_read_afresh_in_the_same_process(pixelsmile, tmp_path):
    """In-process runs keep decoded sources between calls; a file rewritten in place must not reuse them."""
    manifest = read_manifest(pixelsmile / "triplets.jsonl")
    t = manifest.triplets[0]
    src, gt = tmp_path / "src.jpg", tmp_path / "gt.jpg"
    shutil.copy(t.source, src)
    shutil.copy(t.ground_truth, gt)
    rows = [{"id": i, "source": "src.jpg", "ground_truth": "gt.jpg", "target": t.target,
             "instruction": t.instruction} for i in ("x", "y")]
    (tmp_path / "m.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "edits").mkdir()
    for i in ("x", "y"):
        shutil.copy(t.ground_truth, tmp_path / "edits" / f"{i}.jpg")

    def run(cache: str, workers: int) -> list[dict]:
        return score(tmp_path / "m.jsonl", tmp_path / "edits", cache_path=tmp_path / cache, workers=workers).samples

    first = run("c.sqlite", 1)
    from PIL import Image, ImageFilter

    Image.open(t.source).filter(ImageFilter.GaussianBlur(6)).save(src, quality=95)
    second = run("c.sqlite", 1)  # same process as the first run
    fresh = run("c2.sqlite", 2)  # new worker processes, nothing carried over
    assert second[0]["bg_edit_source"] != first[0]["bg_edit_source"]
    assert second == fresh
