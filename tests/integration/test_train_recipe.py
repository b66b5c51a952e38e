"""The documented recipe, end to end, as a user runs it (docs/training.md, "From raw photos"):
`fedbench build` on raw photos -> train.jsonl -> `fedbench train warp` -> `fedbench eval` of the
reference and the fitted warp on the built test.jsonl -> `fedbench compare`.

The inputs are real, unlabelled-for-editing photos (the shared faces-in-the-wild folder: one photo
each of several people). The build's ground truth comes from the `warp` editor itself, so the
reference warp reproduces its own ground truth and scores the maximum: the figure measures how well
a fit recovers the generator's fields (self-consistency), not a gain on real expressions."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fedbench.cli import app
from fedbench.data.manifest import read_manifest
from fedbench.testing.build_settings import WARP_VERIFY

pytestmark = [pytest.mark.integration, pytest.mark.slow]

N_PEOPLE = 14  # small: the whole recipe stays well under 3 minutes on 2 shared cores; enough that
# the identity-disjoint split leaves at least 4 training pairs
BUILD = f"""\
per_class: 1
train_per_class: 3
target: {{targets_per_source: 2}}
ground_truth: {{editor: warp, seeds: 1}}
verify: {json.dumps(WARP_VERIFY)}
"""  # warp's geometric edits: the loose thresholds of fedbench.testing.build_settings


@pytest.fixture(scope="module")
def wild(faces_in_the_wild: Path) -> Path:
    """conftest's faces-in-the-wild ($FEDBENCH_WILD, else beside the PixelSmile fixtures): skipped
    without it, failed under CI=true."""
    return faces_in_the_wild


def _invoke(args: list[str]) -> str:
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, (args, res.output, res.exception)
    return res.output


def test_build_train_eval_recipe(wild: Path, tmp_path: Path) -> None:
    # raw photos: the first photo of N_PEOPLE people, spread over the labelled classes
    with open(wild / "labels.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    picked: dict[str, dict] = {}
    for r in sorted(rows, key=lambda r: (r["label"], r["image"])):
        if r["identity"] not in picked and sum(p["label"] == r["label"] for p in picked.values()) < 2:
            picked[r["identity"]] = r
        if len(picked) == N_PEOPLE:
            break
    photos = tmp_path / "photos"
    photos.mkdir()
    for r in picked.values():
        shutil.copy(wild / r["image"], photos / Path(r["image"]).name)
    (tmp_path / "build.yaml").write_text(BUILD)

    built, ckpt, runs = tmp_path / "built", tmp_path / "ckpt", tmp_path / "runs"
    _invoke(["build", "--sources", str(photos), "--out", str(built), "--config", str(tmp_path / "build.yaml"),
             "--workers", "2"])
    train = read_manifest(built / "train.jsonl")
    test = read_manifest(built / "test.jsonl")
    assert len(train) >= 4 and len(test) >= 2, (len(train), len(test))
    # identity-disjoint by construction: no identity cluster on both sides
    assert not {t.identity for t in train.triplets} & {t.identity for t in test.triplets}

    _invoke(["train", "warp", "--data", str(built / "train.jsonl"), "--out", str(ckpt), "--folds", "3"])
    meta = json.loads((ckpt / "checkpoint.json").read_text())
    assert meta["validation"]["mode"] == "identity"  # the built rows name their identity cluster
    assert meta["data"]["pairs"] >= 4

    for name, extra in (("reference", []), ("fitted", ["--editor-arg", f"checkpoint={ckpt}"])):
        _invoke(["eval", "--editor", "warp", *extra, "--benchmark", str(built / "test.jsonl"),
                 "--out", str(runs / name), "--fedscore-version", "1.2", "--workers", "2"])
    summaries = {n: json.loads((runs / n / "summary.json").read_text()) for n in ("reference", "fitted")}
    for s in summaries.values():
        assert s["status_counts"].get("generation_failed", 0) == 0
    out = _invoke(["compare", str(runs / "fitted"), str(runs / "reference"), "--n-bootstrap", "2000"])
    fed = {n: s["overall"]["fed"]["mean"] for n, s in summaries.items()}
    print(f"built: {len(train)} train / {len(test)} test triplets; FED-Score 1.2 reference {fed['reference']:.2f}, "
          f"fitted {fed['fitted']:.2f} (n={summaries['fitted']['overall']['fed']['n']}; rule {meta['rule']}, "
          f"strengths {meta['strengths']}; held-out FED by rule "
          + ", ".join(f"{r['rule']} {r['held_out_fed']:.2f}" for r in meta["validation"]["rules"]) + f")\n{out}")
    # the ground truth is the reference warp's own output: the reference warp scores (about) the maximum
    assert fed["reference"] is not None and fed["reference"] > 99.0, summaries["reference"]["overall"]
    assert fed["fitted"] is not None and 0.0 <= fed["fitted"] <= 100.0
    # ... so a fit on warp-made pairs can only recover the generator: strength 1 wherever data speaks
    assert meta["rule"] == "reference" or all(
        meta["strengths"][t] == 1.0 for t in {r.target for r in train.triplets})
