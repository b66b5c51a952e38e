"""Generation at scale: `eval --shard K/N` + `eval --merge`, and `eval --executor ray` on a local Ray
instance, each give a samples.jsonl byte-identical to one local run (warp editor and a tiny diffusers
pipeline, on the CPU); a merge refuses gaps, overlaps and mismatched editor configs."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the tiny pipeline is built here: nothing may download

import pytest

from fedbench.editors.config import EditorConfig
from fedbench.eval_shards import MergeError, merge, parse_shard
from fedbench.evaluate import RunFolderError, evaluate

pytestmark = [pytest.mark.integration, pytest.mark.slow,
              pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")]

N_TRIPLETS = 5
WARP = EditorConfig(name="warp", adapter="warp", params={"strength": 1.0})


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory, pixelsmile: Path) -> Path:
    root = tmp_path_factory.mktemp("bench")
    rows = [json.loads(x) for x in (pixelsmile / "triplets.jsonl").read_text().splitlines()][::6][:N_TRIPLETS]
    for r in rows:
        for f in ("source", "ground_truth"):
            (root / r[f]).parent.mkdir(exist_ok=True)
            shutil.copy(pixelsmile / r[f], root / r[f])
    (root / "triplets.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root / "triplets.jsonl"


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache") / "features.sqlite"


def _run(config: EditorConfig, bench: Path, out: Path, cache: Path, **kw):
    return evaluate(config, bench, out, workers=1, cache_path=cache, progress=False, **kw)


def test_parse_shard() -> None:
    assert parse_shard("2/4") == (2, 4)
    for bad in ("0/4", "5/4", "a/b", "3"):
        with pytest.raises(ValueError):
            parse_shard(bad)


def test_shards_merge_to_the_local_run(bench: Path, cache: Path, tmp_path: Path) -> None:
    local = _run(WARP, bench, tmp_path / "local", cache)
    assert local.summary["status_counts"].get("ok", 0) >= 3
    parts = [tmp_path / f"shard{k}" for k in (1, 2, 3)]
    sizes = [len(_run(WARP, bench, p, cache, shard=(k, 3)).generations) for k, p in enumerate(parts, 1)]
    assert sorted(sizes) == [1, 2, 2] and sum(sizes) == N_TRIPLETS
    with pytest.raises(RunFolderError, match="shard"):  # a shard folder resumed as another shard
        _run(WARP, bench, parts[0], cache, shard=(2, 3), resume=True)
    merged = merge(parts, tmp_path / "merged", workers=1, cache_path=cache, progress=False)
    assert (tmp_path / "merged" / "samples.jsonl").read_bytes() == (tmp_path / "local" / "samples.jsonl").read_bytes()
    assert (tmp_path / "merged" / "eval.json").read_bytes() == (tmp_path / "local" / "eval.json").read_bytes()
    assert merged.summary["overall"] == local.summary["overall"]

    with pytest.raises(MergeError, match=r"gap: shard\(s\) 2/3 missing"):
        merge([parts[0], parts[2]], tmp_path / "m2", progress=False)
    with pytest.raises(MergeError, match="overlap: shard 1/3 given twice"):
        merge([parts[0], parts[0], parts[1], parts[2]], tmp_path / "m3", progress=False)
    other = tmp_path / "other2"
    _run(EditorConfig(name="warp", adapter="warp", params={"strength": 0.5}), bench, other, cache, shard=(2, 3))
    with pytest.raises(MergeError, match="config_hash"):
        merge([parts[0], other, parts[2]], tmp_path / "m4", progress=False)
    assert not (tmp_path / "m2").exists() and not (tmp_path / "m4").exists()  # refused before writing
    # an unfinished shard: a generation row lost
    log = parts[1] / "generations.jsonl"
    log.write_text("".join(log.read_text().splitlines(keepends=True)[1:]))
    with pytest.raises(MergeError, match="unfinished"):
        merge(parts, tmp_path / "m5", progress=False)


@pytest.fixture(scope="module")
def ray_local():
    ray = pytest.importorskip("ray", reason="the ray extra is not installed")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def test_ray_run_equals_the_local_run_warp(ray_local, bench: Path, cache: Path, tmp_path: Path) -> None:
    _run(WARP, bench, tmp_path / "local", cache)
    res = _run(WARP, bench, tmp_path / "ray", cache, executor="ray")
    assert res.counts["generated"] + res.counts["failed"] == N_TRIPLETS
    assert (tmp_path / "ray" / "samples.jsonl").read_bytes() == (tmp_path / "local" / "samples.jsonl").read_bytes()
    log = (tmp_path / "ray" / "generations.jsonl").read_text().splitlines()
    actors = {json.loads(x)["details"]["ray_actor"] for x in log}
    assert len(actors) == 2  # both CPU slots got an editor actor, and each row says which one made it
    again = _run(WARP, bench, tmp_path / "ray", cache, executor="ray", resume=True)  # the same log resumes
    assert again.counts["reused"] == res.counts["generated"] and again.counts["generated"] == 0


def test_ray_warp_actors_keep_landmarks_in_the_runs_cache(ray_local, bench: Path, tmp_path: Path) -> None:
    """The actors use the run's feature cache (`--cache`) as a local run's editor does: every source
    they perceived is in it once they close, and no other cache file is made beside it."""
    from fedbench.editors.base import EditRequest
    from fedbench.eval_ray import RayDispatch
    from fedbench.faces.service import PerceptionService

    cache = tmp_path / "run-cache" / "features.sqlite"
    cache.parent.mkdir()
    rows = [json.loads(x) for x in bench.read_text().splitlines()]
    sources = sorted({bench.parent / r["source"] for r in rows})
    dispatch = RayDispatch(WARP, cache_path=cache)
    try:
        assert ray_local.get([a.feature_cache.remote() for a in dispatch.actors]) == [str(cache.resolve())] * 2
        requests = [(i, EditRequest(f"s{i}", src, "x", "sad", 0)) for i, src in enumerate(sources)]
        results = list(dispatch(requests))
        assert len(results) == len(sources) and all(r.status == "ok" for _, r, _ in results)
    finally:
        dispatch.close()
    service = PerceptionService(None, cache, readonly=True)
    try:
        assert all(service.cache.has(service.key(src.read_bytes())) for src in sources)
    finally:
        service.close()
    assert sorted(p.name for p in cache.parent.iterdir() if p.suffix == ".sqlite") == ["features.sqlite"]


def test_ray_run_equals_the_local_run_tiny_diffusers(ray_local, bench: Path, cache: Path, tmp_path: Path) -> None:
    pytest.importorskip("diffusers", reason="the diffusers extra is not installed")
    from fedbench.testing.tiny_pipeline import build_tiny_instruct_pix2pix

    pipe = build_tiny_instruct_pix2pix(tmp_path / "pipe")
    config = EditorConfig(name="tiny-ip2p", adapter="diffusers",
                          params={"model": str(pipe), "device": "cpu", "dtype": "float32", "steps": 2,
                                  "guidance": 7.5, "image_guidance": 1.5, "resolution": 64})
    local = _run(config, bench, tmp_path / "local", cache)
    assert local.counts["generated"] == N_TRIPLETS
    _run(config, bench, tmp_path / "ray", cache, executor="ray")
    assert (tmp_path / "ray" / "samples.jsonl").read_bytes() == (tmp_path / "local" / "samples.jsonl").read_bytes()
    for row in (tmp_path / "local" / "generations.jsonl").read_text().splitlines():
        image = json.loads(row)["image"]
        same = (tmp_path / "ray" / image).read_bytes() == (tmp_path / "local" / image).read_bytes()
        assert same, f"{image}: the Ray actor's bytes differ from the local run's"  # (no byte diff: it is huge)
