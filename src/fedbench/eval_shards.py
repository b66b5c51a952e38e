"""`fedbench eval --shard K/N` and `fedbench eval --merge DIR ... --out OUT`: array jobs.

Shard K of N (K counts from 1) holds the benchmark's triplets at positions K-1, K-1+N, K-1+2N, ...:
deterministic for a given manifest and balanced to within one triplet. Each shard is an ordinary run
folder whose `eval.json` records `"shard": "K/N"`.

A merge checks, before writing anything, that the folders are the N shards of one run - the same
editor config hash, adapter version, parameters, seed, benchmark and limit; every K from 1 to N once
(no gap, no overlap); each shard's generation log covering exactly its own triplets; every image
matching its logged sha256 - then copies the images and log rows into OUT and scores it as
`fedbench eval` does. OUT's `samples.jsonl` is byte-identical to that of one unsharded run.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from fedbench.data.manifest import Manifest, read_manifest
from fedbench.editors.base import EditStatus
from fedbench.editors.config import EditorConfig
from fedbench.metrics.fedscore import FEDSCORE_VERSION
from fedbench.store.journal import read_rows

# eval.json fields that must agree across shards (what decides the images and the benchmark)
SAME = ("editor", "adapter", "editor_version", "config_hash", "seed", "params", "benchmark", "limit")


class MergeError(ValueError):
    """The folders are not the complete, consistent shards of one run; the message lists every reason."""


def parse_shard(spec: str) -> tuple[int, int]:
    """'2/4' -> (2, 4); K counts from 1 (an array job with ids 0..N-1 passes $((ID+1))/N)."""
    k, sep, n = spec.partition("/")
    try:
        kk, nn = int(k), int(n)
    except ValueError:
        raise ValueError(f"--shard {spec!r}: expected K/N, e.g. 1/4") from None
    if not sep or nn < 1 or not 1 <= kk <= nn:
        raise ValueError(f"--shard {spec!r}: expected K/N with 1 <= K <= N (K counts from 1)")
    return kk, nn


def select_shard(manifest: Manifest, k: int, n: int) -> Manifest:
    return Manifest(manifest.path, manifest.root, manifest.triplets[k - 1 :: n])


def _read_info(folder: Path) -> dict[str, Any]:
    meta = folder / "eval.json"
    if not meta.is_file():
        raise MergeError(f"{folder}: not an eval run folder (no eval.json)")
    return json.loads(meta.read_text())


def merge(folders: list[str | Path], out: str | Path, *, benchmark: str | Path | None = None,
          columns: dict[str, str] | None = None, allow_outside: bool = False, overwrite: bool = False,
          workers: int | None = None, cache_path: str | Path | None = None, progress: bool = True,
          console: Console | None = None, version: str = FEDSCORE_VERSION, n_bootstrap: int = 1000,
          judge: Any = None):
    """Merge the shard run folders into `out` and score it; returns the EvalResult."""
    from fedbench.evaluate import GENERATED, EvalResult, RunFolderError, _prepare_folder, score_run
    from fedbench.store.atomic import copy_atomic, write_bytes_atomic

    console = console or Console(stderr=True)
    dirs = [Path(f) for f in folders]
    infos = [(d, _read_info(d)) for d in dirs]  # a list: the same folder given twice is an overlap
    problems: list[str] = []
    first = infos[0][1]
    for d, info in infos:
        diff = [f"{f}: {info.get(f)!r} vs {first.get(f)!r}" for f in SAME if info.get(f) != first.get(f)]
        if diff:
            problems.append(f"{d} is not the same run as {dirs[0]} ({'; '.join(diff)})")
    shards: dict[int, Path] = {}
    counts_n = set()
    for d, info in infos:
        if not info.get("shard"):
            problems.append(f"{d} is not a shard (its eval.json has no 'shard'; run it with --shard K/N)")
            continue
        k, n = parse_shard(info["shard"])
        counts_n.add(n)
        if k in shards:
            problems.append(f"overlap: shard {k}/{n} given twice ({shards[k]} and {d})")
        shards[k] = d
    if len(counts_n) > 1:
        problems.append(f"the shards split the benchmark differently (N = {sorted(counts_n)})")
    if problems:
        raise MergeError("cannot merge:\n  " + "\n  ".join(problems))
    n = counts_n.pop()
    gaps = [k for k in range(1, n + 1) if k not in shards]
    if gaps:
        raise MergeError(f"cannot merge: gap: shard(s) {', '.join(f'{k}/{n}' for k in gaps)} missing")

    manifest = read_manifest(benchmark or first["benchmark"], columns, allow_outside)
    if first.get("limit") is not None:
        manifest = Manifest(manifest.path, manifest.root, manifest.triplets[: first["limit"]])
    if str(manifest.path) != first["benchmark"]:
        raise MergeError(f"cannot merge: the shards ran on {first['benchmark']}, not {manifest.path}")
    rows: dict[str, dict[str, Any]] = {}
    for k in range(1, n + 1):
        d = shards[k]
        want = [t.id for t in select_shard(manifest, k, n)]
        got = {r["id"]: r for r in read_rows(d / "generations.jsonl")}
        missing = [i for i in want if i not in got]
        extra = sorted(set(got) - set(want))
        if missing:
            problems.append(f"{d} (shard {k}/{n}) is unfinished: no generation for {len(missing)} triplet(s): "
                            f"{', '.join(missing[:10])}{' ...' if len(missing) > 10 else ''}")
        if extra:
            problems.append(f"overlap: {d} (shard {k}/{n}) holds triplets of other shards: {', '.join(extra[:10])}")
        for i in want:
            row = got.get(i)
            if row is None:
                continue
            if row.get("config_hash") != first["config_hash"]:
                problems.append(f"{d}: {i} was generated by config {row.get('config_hash')}, "
                                f"not {first['config_hash']}")
            if row.get("image"):
                image = d / row["image"]
                if not image.is_file() or hashlib.sha256(image.read_bytes()).hexdigest() != row.get("sha256"):
                    problems.append(f"{d}: {row['image']} is missing or does not match its logged sha256")
            rows[i] = {**row, "_from": d}
    if problems:
        raise MergeError("cannot merge:\n  " + "\n  ".join(problems))

    out = Path(out)
    info = {k: v for k, v in first.items() if k != "shard"}  # the eval.json an unsharded run writes
    try:
        _prepare_folder(out, info, resume=False, overwrite=overwrite)
    except RunFolderError as exc:
        raise MergeError(str(exc)) from None
    ordered = []
    for t in manifest:
        row = dict(rows[t.id])
        src = row.pop("_from")
        if row.get("image"):
            copy_atomic(src / row["image"], out / GENERATED / Path(row["image"]).name)
        ordered.append(row)
    write_bytes_atomic(out / "generations.jsonl", "".join(json.dumps(r) + "\n" for r in ordered).encode())
    status = [r["status"] for r in ordered]
    generation = {"merged_from": [str(shards[k]) for k in range(1, n + 1)], "generated": status.count(EditStatus.OK),
                  "failed": status.count(EditStatus.FAILED), "refused": status.count(EditStatus.REFUSED),
                  "merged": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    result = score_run(manifest, out, info, ordered, generation, workers=workers, cache_path=cache_path,
                       progress=progress, console=console, version=version, n_bootstrap=n_bootstrap, judge=judge)
    config = EditorConfig(name=info["editor"], adapter=info["adapter"], seed=info.get("seed") or 0,
                          params=info.get("params") or {}, source=info.get("config_file"))
    return EvalResult(out=out, config=config, config_hash=info["config_hash"], generations=ordered, score=result,
                      counts={k: v for k, v in generation.items() if isinstance(v, int)})
