"""Hub-shaped manifests (fedbench.data.hub): Parquet/Arrow with HF Image structs, shard folders,
save_to_disk folders and hf:// (only the download faked); embedded images materialised by content;
the same row validation as JSONL, one error listing every bad row."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

datasets = pytest.importorskip("datasets")

from fedbench.data import hub  # noqa: E402
from fedbench.data.manifest import ManifestError, parse_columns, read_manifest  # noqa: E402

INSTR = "Change the expression to happy: smile."


def _png(seed: int) -> bytes:
    rgb = np.random.default_rng(seed).integers(0, 255, (48, 40, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return buf.getvalue()


FEATURES = {"key": "string", "img": "Image", "prompt": "string", "emotion": "string", "edited": "Image"}


def _dataset(n: int, **overrides: list) -> "datasets.Dataset":
    """n rows in a dataset's own column names; images embedded as bytes, as the hub stores them."""
    cols = {
        "key": [f"s{i}" for i in range(n)],
        "img": [{"bytes": _png(i), "path": f"src{i}.png"} for i in range(n)],
        "prompt": [INSTR] * n,
        "emotion": ["happy"] * n,
        "edited": [{"bytes": _png(100 + i), "path": f"gt{i}.png"} for i in range(n)],
    }
    cols.update(overrides)
    feats = datasets.Features({k: datasets.Image() if v == "Image" else datasets.Value(v) for k, v in FEATURES.items()})
    return datasets.Dataset.from_dict(cols, features=feats)


COLUMNS = parse_columns("id=key,source=img,instruction=prompt,target=emotion,ground_truth=edited")


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("FEDBENCH_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _check(manifest, n: int, cache: Path) -> None:
    assert [t.id for t in manifest] == [f"s{i}" for i in range(n)]
    for i, t in enumerate(manifest):
        assert t.source.parent == (cache / "embedded").resolve()
        assert t.source.read_bytes() == _png(i) and t.ground_truth.read_bytes() == _png(100 + i)
        assert t.source.name.endswith(".png") and t.target == "happy"


def test_parquet_with_image_structs(tmp_path: Path, cache: Path) -> None:
    _dataset(3).to_parquet(tmp_path / "bench.parquet")
    schema = pq.read_schema(tmp_path / "bench.parquet")
    assert b"huggingface" in schema.metadata and pa.types.is_struct(schema.field("img").type)
    _check(read_manifest(tmp_path / "bench.parquet", COLUMNS), 3, cache)


def test_embedded_images_are_content_addressed_and_written_once(tmp_path: Path, cache: Path) -> None:
    _dataset(2).to_parquet(tmp_path / "bench.parquet")
    first = read_manifest(tmp_path / "bench.parquet", COLUMNS)
    stamps = {p: p.stat().st_mtime_ns for p in (cache / "embedded").iterdir()}
    assert len(stamps) == 4
    read_manifest(tmp_path / "bench.parquet", COLUMNS)
    assert stamps == {p: p.stat().st_mtime_ns for p in (cache / "embedded").iterdir()}
    import hashlib

    assert first.triplets[0].source.stem == hashlib.sha256(_png(0)).hexdigest()


def test_folder_of_parquet_shards(tmp_path: Path, cache: Path) -> None:
    ds = _dataset(5)
    folder = tmp_path / "data"
    folder.mkdir()
    for i in range(3):
        ds.shard(num_shards=3, index=i, contiguous=True).to_parquet(folder / f"test-{i:05d}-of-00003.parquet")
    ds.select([0]).to_parquet(folder / "train-00000-of-00001.parquet")  # another split: not read
    _check(read_manifest(folder, COLUMNS), 5, cache)
    (folder / "test-00001-of-00003.parquet").unlink()
    with pytest.raises(ManifestError, match="shard 00001 is missing"):
        read_manifest(folder, COLUMNS)


def test_save_to_disk_folder_and_arrow_file(tmp_path: Path, cache: Path) -> None:
    ds = _dataset(4).shuffle(seed=1).select(range(4)).sort("key")  # indices mapping: must be applied
    ds.save_to_disk(tmp_path / "saved")
    _check(read_manifest(tmp_path / "saved", COLUMNS), 4, cache)
    datasets.DatasetDict({"train": _dataset(1), "test": _dataset(4)}).save_to_disk(tmp_path / "dd")
    _check(read_manifest(tmp_path / "dd", COLUMNS), 4, cache)
    arrow = next((tmp_path / "saved").glob("*.arrow"))  # an Arrow IPC stream file on its own
    assert len(read_manifest(arrow, COLUMNS)) == 4


def test_hf_url_through_a_faked_download(tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = tmp_path / "snapshot"
    (repo / "data").mkdir(parents=True)
    _dataset(3).to_parquet(repo / "data" / "test-00000-of-00001.parquet")
    calls = []

    def fake_snapshot_download(repo_id: str, **kw) -> str:  # the network is the only faked edge
        calls.append((repo_id, kw["repo_type"], kw["revision"]))
        return str(repo)

    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    _check(read_manifest("hf://datasets/org/fed-bench@v1.0", COLUMNS), 3, cache)
    assert calls == [("org/fed-bench", "dataset", "v1.0")]
    assert len(read_manifest("hf://datasets/org/fed-bench/data", COLUMNS)) == 3
    assert calls[-1] == ("org/fed-bench", "dataset", None)
    assert len(read_manifest(Path("hf://datasets/org/fed-bench"), COLUMNS)) == 3  # as a CLI Path option spells it


def test_parse_hf_url() -> None:
    assert hub.parse_hf_url("hf://datasets/a/b@main/x/y") == hub.HubRef("a/b", "main", "x/y")
    with pytest.raises(ValueError):
        hub.parse_hf_url("hf://models/a/b")


def test_every_bad_row_listed_with_its_shard(tmp_path: Path) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    _dataset(3, emotion=["happy", "smug", "happy"]).to_parquet(folder / "test-00000-of-00002.parquet")
    second = _dataset(3, prompt=[INSTR, None, INSTR])
    rows = {**second.to_dict(), "key": ["s3", "s4", "s0"]}  # s4 has no instruction; s0 repeats row 1's id
    datasets.Dataset.from_dict(rows, features=second.features).to_parquet(folder / "test-00001-of-00002.parquet")
    with pytest.raises(ManifestError) as exc:
        read_manifest(folder, COLUMNS)
    text = str(exc.value)
    # rows count across the shards in name order; each problem also names its file and row there
    assert "3 problem(s)" in text
    assert "row 2 (id 's1'): test-00000-of-00002.parquet row 2: unknown target 'smug'" in text
    assert "row 5 (id 's4'): test-00001-of-00002.parquet row 2: missing instruction (column 'prompt')" in text
    assert "row 6 (id 's0'): test-00001-of-00002.parquet row 3: duplicate id (first seen on row 1)" in text


def test_missing_column_names_the_dataset_columns(tmp_path: Path) -> None:
    _dataset(2).to_parquet(tmp_path / "bench.parquet")
    with pytest.raises(ManifestError, match=r"img \(Image\).*--columns"):
        read_manifest(tmp_path / "bench.parquet")


def test_path_only_structs_stay_relative_and_inside(tmp_path: Path) -> None:
    (tmp_path / "imgs").mkdir()
    for name, seed in (("a.png", 1), ("b.png", 2)):
        (tmp_path / "imgs" / name).write_bytes(_png(seed))
    image = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    schema = pa.schema([("id", pa.string()), ("source", image), ("instruction", pa.string()),
                        ("target", pa.string()), ("ground_truth", image)])
    rows = [{"id": i, "source": {"bytes": None, "path": src}, "instruction": INSTR, "target": "sad",
             "ground_truth": {"bytes": None, "path": "imgs/b.png"}}
            for i, src in (("x", "imgs/a.png"), ("y", "../a.png"))]
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), tmp_path / "p.parquet")
    with pytest.raises(ManifestError) as exc:
        read_manifest(tmp_path / "p.parquet")
    assert "1 problem(s)" in str(exc.value) and "row 2 (id 'y'): source: path '../a.png' leaves" in str(exc.value)
    rows.pop()
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), tmp_path / "p.parquet")
    (t,) = read_manifest(tmp_path / "p.parquet").triplets
    assert t.source == (tmp_path / "imgs" / "a.png").resolve()


def test_plain_path_parquet_still_reads(tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(_png(1))
    rows = [{"id": "x", "source": "a.png", "instruction": INSTR, "target": "surprised", "ground_truth": "a.png",
             "meta": json.dumps({"k": 1})}]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "m.parquet")
    (t,) = read_manifest(tmp_path / "m.parquet").triplets
    assert t.target == "surprise" and t.source == (tmp_path / "a.png").resolve() and t.meta == {"k": 1}


def test_hub_refusals_say_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    import httpx2
    import huggingface_hub
    from huggingface_hub.errors import GatedRepoError, LocalEntryNotFoundError, RepositoryNotFoundError

    response = httpx2.Response(403, request=httpx2.Request("GET", "https://huggingface.co/api/datasets/o/n"))
    for error, expected in ((GatedRepoError("gated", response=response), "accept its terms"),
                            (RepositoryNotFoundError("nf", response=response), "not found, or private"),
                            (LocalEntryNotFoundError("offline"), "could not download o/n")):
        def fail(repo_id: str, _error: Exception = error, **kw) -> str:
            raise _error

        monkeypatch.setattr(huggingface_hub, "snapshot_download", fail)
        with pytest.raises(ManifestError, match=expected):
            read_manifest("hf://datasets/o/n")


def test_training_data_sha256_is_the_rows_content_not_a_path(tmp_path: Path) -> None:
    """What a training checkpoint records of a hub dataset: the same rows hash the same in every
    form and place (a folder has no bytes to hash), and a changed image changes the digest."""
    from fedbench.train.data import data_provenance, rows_sha256

    _dataset(3).to_parquet(tmp_path / "bench.parquet")
    _dataset(3).save_to_disk(tmp_path / "saved")
    parquet = read_manifest(tmp_path / "bench.parquet", COLUMNS)
    saved = read_manifest(tmp_path / "saved", COLUMNS)
    assert rows_sha256(parquet) == rows_sha256(saved)
    prov = data_provenance(tmp_path / "saved", saved)
    assert prov == {"path": str((tmp_path / "saved").resolve()), "sha256": rows_sha256(saved), "sha256_of": "rows"}
    changed = _dataset(3, edited=[{"bytes": _png(100), "path": "gt0.png"}] * 3)
    changed.save_to_disk(tmp_path / "changed")
    assert rows_sha256(read_manifest(tmp_path / "changed", COLUMNS)) != prov["sha256"]
    # a JSONL manifest keeps its file's sha256, as checkpoints have always recorded
    jsonl = tmp_path / "m.jsonl"
    jsonl.write_text("".join(json.dumps({"id": t.id, "source": str(t.source), "instruction": t.instruction,
                                         "target": t.target, "ground_truth": str(t.ground_truth)}) + "\n"
                             for t in saved))
    m = read_manifest(jsonl, allow_outside=True)
    import hashlib

    file_sha = hashlib.sha256(jsonl.read_bytes()).hexdigest()
    assert data_provenance(jsonl, m) == {"path": str(jsonl.resolve()), "sha256": file_sha}
