"""`fedbench data join`: a ground-truth-only release (Parquet, embedded images, its own column names)
joined with locally held sources by a key column; every missing source named by id before writing."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

datasets = pytest.importorskip("datasets")

from fedbench.cli import app  # noqa: E402
from fedbench.data.join import join  # noqa: E402
from fedbench.data.manifest import ManifestError, read_manifest  # noqa: E402


def _jpg(seed: int) -> bytes:
    rgb = np.random.default_rng(seed).integers(0, 255, (40, 48, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG")
    return buf.getvalue()


def _release(path: Path, keys: list[str], targets: list[str] | None = None) -> None:
    """A release in its own layout: frame key, movie folder, emotion, prompt, embedded ground truth."""
    n = len(keys)
    targets = targets or ["happy", "sad", "fear", "angry", "surprise", "disgust"][:n]
    ds = datasets.Dataset.from_dict(
        {"frame": keys, "movie": ["m1"] * n, "emotion": targets, "prompt": [f"Make it {t}." for t in targets],
         "gt_image": [{"bytes": _jpg(i), "path": f"{k}.jpg"} for i, k in enumerate(keys)]},
        features=datasets.Features({"frame": datasets.Value("string"), "movie": datasets.Value("string"),
                                    "emotion": datasets.Value("string"), "prompt": datasets.Value("string"),
                                    "gt_image": datasets.Image()}))
    ds.to_parquet(path)


COLUMNS = {"target": "emotion", "instruction": "prompt", "ground_truth": "gt_image"}


def _sources(root: Path, keys: list[str]) -> None:
    (root / "m1").mkdir(parents=True)
    for i, k in enumerate(keys):
        (root / "m1" / f"{k}.png").write_bytes(_jpg(50 + i))


def test_join_writes_a_self_contained_manifest(tmp_path: Path) -> None:
    _release(tmp_path / "gt.parquet", ["f001", "f002", "f003"])
    _sources(tmp_path / "bench" / "SFEW", ["f001", "f002", "f003"])
    res = join(tmp_path / "gt.parquet", tmp_path / "bench" / "SFEW", "frame", tmp_path / "bench" / "fedbench.jsonl",
               source_pattern="{movie}/{key}.png", columns=COLUMNS)
    assert res.rows == 3 and not res.outside
    rows = [json.loads(x) for x in res.manifest.read_text().splitlines()]
    assert rows[0]["source"] == "SFEW/m1/f001.png" and rows[0]["ground_truth"].startswith("ground_truth/")
    assert rows[0]["id"] == "f001-happy" and rows[0]["meta"] == {"join_key": "f001"}
    m = read_manifest(res.manifest)  # no --allow-outside needed
    assert [t.ground_truth.read_bytes() for t in m] == [_jpg(i) for i in range(3)]
    assert [t.target for t in m] == ["happy", "sad", "fear"]


def test_every_missing_source_named_by_id_before_writing(tmp_path: Path) -> None:
    _release(tmp_path / "gt.parquet", ["f001", "f002", "f003", "f004"], ["happy", "sad", "smug", "fear"])
    _sources(tmp_path / "SFEW", ["f001", "f003"])
    out = tmp_path / "m.jsonl"
    with pytest.raises(ManifestError) as exc:
        join(tmp_path / "gt.parquet", tmp_path / "SFEW", "frame", out, source_pattern="{movie}/{key}.png",
             columns=COLUMNS)
    text = str(exc.value)
    assert "3 problem(s)" in text
    assert "row 2 (id 'f002-sad'): source: file not found" in text and "f002.png" in text
    assert "row 4 (id 'f004-fear'): source: file not found" in text
    assert "row 3 (id 'f003-smug'): unknown target 'smug'" in text
    assert not out.exists()


def test_cli_join_and_its_errors(tmp_path: Path) -> None:
    _release(tmp_path / "gt.parquet", ["a", "b"])
    _sources(tmp_path / "src", ["a", "b"])
    runner = CliRunner()
    args = ["data", "join", "--gt", str(tmp_path / "gt.parquet"), "--sources-root", str(tmp_path / "src"),
            "--out", str(tmp_path / "out" / "m.jsonl"), "--source-pattern", "m1/{key}.png",
            "--columns", "target=emotion,instruction=prompt,ground_truth=gt_image"]
    res = runner.invoke(app, [*args, "--key", "frame"])
    assert res.exit_code == 0, res.output
    assert "--allow-outside" in res.output  # the sources are not under the manifest's folder
    assert len(read_manifest(tmp_path / "out" / "m.jsonl", allow_outside=True)) == 2
    res = runner.invoke(app, [*args, "--key", "image_id"])
    assert res.exit_code == 2 and "image_id" in res.output and "gt_image (Image)" in res.output
