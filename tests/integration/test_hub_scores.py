"""The same triplets score the same, sample by sample, whether they come from files (JSONL) or from
hub-shaped data with embedded images: a Parquet file, a shard folder, a save_to_disk folder and
hf:// (download faked). Real backbones, real PixelSmile images."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

datasets = pytest.importorskip("datasets")

from fedbench.scoring.runner import score  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# triplet -> a PixelSmile blend image used as the "edit": partial moves, so every component varies
EDITS = {"blend-happy-to-sad": "happy_sad.jpg", "blend-happy-to-fear": "happy_fear.jpg",
         "blend-sad-to-angry": "sad_angry.jpg", "blend-sad-to-surprised": "sad_surprised.jpg"}
COLUMNS = {"id": "uid", "source": "image", "ground_truth": "edited_image", "target": "emotion"}


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_same_fed_per_sample_as_files(tmp_path: Path, pixelsmile: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FEDBENCH_CACHE_DIR", str(tmp_path / "cache"))
    triplets = [r for r in _rows(pixelsmile / "triplets.jsonl") if r["id"] in EDITS]
    edits = tmp_path / "edits"
    edits.mkdir()
    for rid, name in EDITS.items():
        shutil.copy(pixelsmile / "blend" / name, edits / f"{rid}.jpg")

    # files: the reference
    files = tmp_path / "files" / "triplets.jsonl"
    files.parent.mkdir()
    for r in triplets:
        for f in ("source", "ground_truth"):
            dst = files.parent / r[f]
            dst.parent.mkdir(exist_ok=True)
            shutil.copy(pixelsmile / r[f], dst)
    files.write_text("".join(json.dumps(r) + "\n" for r in triplets))
    shared_cache = tmp_path / "features.sqlite"
    ref = score(files, edits, tmp_path / "out-files", workers=1, cache_path=shared_cache)
    assert ref.summary["status_counts"] == {"ok": 4}

    # the hub's shape: own column names, images embedded as {bytes, path}
    def image(rel: str) -> dict:
        return {"bytes": (pixelsmile / rel).read_bytes(), "path": Path(rel).name}

    ds = datasets.Dataset.from_dict(
        {"uid": [r["id"] for r in triplets], "image": [image(r["source"]) for r in triplets],
         "instruction": [r["instruction"] for r in triplets], "emotion": [r["target"] for r in triplets],
         "edited_image": [image(r["ground_truth"]) for r in triplets]},
        features=datasets.Features({"uid": datasets.Value("string"), "image": datasets.Image(),
                                    "instruction": datasets.Value("string"), "emotion": datasets.Value("string"),
                                    "edited_image": datasets.Image()}))
    ds.to_parquet(tmp_path / "bench.parquet")
    shards = tmp_path / "shards"
    shards.mkdir()
    for i in range(2):
        ds.shard(2, i, contiguous=True).to_parquet(shards / f"test-{i:05d}-of-00002.parquet")
    ds.save_to_disk(tmp_path / "saved")

    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda repo_id, **kw: str(shards))
    sources = {"parquet": tmp_path / "bench.parquet", "shards": shards, "save_to_disk": tmp_path / "saved",
               "hf": "hf://datasets/someone/fed-bench-mini@main"}
    expected = _rows(tmp_path / "out-files" / "samples.jsonl")
    for name, src in sources.items():
        # the Parquet file gets a fresh feature cache: equality does not lean on cached features
        cache = tmp_path / "fresh.sqlite" if name == "parquet" else shared_cache
        res = score(src, edits, tmp_path / f"out-{name}", columns=COLUMNS, workers=1, cache_path=cache)
        assert _rows(tmp_path / f"out-{name}" / "samples.jsonl") == expected, name
        assert res.summary["overall"]["fed"]["mean"] == ref.summary["overall"]["fed"]["mean"]
    # five distinct images (happy, sad, fear, angry, surprised) embedded, each written once under the cache
    distinct = {r[f] for r in triplets for f in ("source", "ground_truth")}
    assert len(distinct) == 5 and len(list((tmp_path / "cache" / "embedded").iterdir())) == 5
