"""`fedbench.score`: manifest + folder of edited images -> per-sample rows and a summary.

Data flows one way: images -> perception features (cached by content) -> components -> FED-Score
-> samples.jsonl / summary.json. Work runs in a pool of processes (one per core by default), each
loading the backbones once; results come back in manifest order, so output is byte-identical
whatever the number of workers.
"""

from __future__ import annotations

import json
import multiprocessing as mp
from concurrent.futures import ProcessPoolExecutor
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator

from rich.console import Console

from fedbench.cpus import default_workers
from fedbench.data.manifest import Manifest, read_manifest
from fedbench.faces.perception import PerceptionConfig
from fedbench.metrics.spec import get_spec
from fedbench.metrics.fedscore import FEDSCORE_VERSION, SUPPORTED_VERSIONS, FEDScore
from fedbench.paths import features_db
from fedbench.progress import progress_bar
from fedbench.scoring import worker
from fedbench.scoring.edits import find_edits
from fedbench.scoring.provenance import backbones_used
from fedbench.store.atomic import atomic_open, write_json_atomic
from fedbench.store.features import CacheBusyError, FeatureCache
from fedbench.store.lock import folder_lock

if TYPE_CHECKING:
    from fedbench.judge.config import JudgeConfig


@dataclass
class ScoreResult:
    samples: list[dict[str, Any]]
    summary: dict[str, Any]
    out: Path | None
    timings: dict[str, float]


@contextmanager
def _executor(workers: int, config: PerceptionConfig, cache_path: Path) -> Iterator[Callable]:
    """Yield an ordered map(fn, items, chunksize) over worker processes (in-process for workers <= 1)."""
    args = (config.model_dump_json(), str(cache_path), 1)
    if workers <= 1:
        worker.init_worker(*args)
        try:
            yield lambda fn, items, chunksize=1: map(fn, items)
        finally:
            worker.shutdown_worker()
        return
    # spawn: fresh interpreters. A forked child of a process that already runs MediaPipe or
    # OpenVINO threads aborts. A worker that fails to start raises BrokenProcessPool here instead
    # of being restarted forever.
    ctx = mp.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=ctx, initializer=worker.init_worker, initargs=args) as pool:
        # Workers start lazily; wait until each has loaded its backbones so start-up is timed apart.
        list(pool.map(worker.ready, range(workers)))
        yield lambda fn, items, chunksize=1: pool.map(fn, items, chunksize=chunksize)


def _advance(progress: Any, task: Any, items: Iterable) -> Iterator:
    for item in items:
        if progress is not None:
            progress.advance(task)
        yield item


class _BatchedWrites:
    """New features go to the cache in transactions of `size` rows (one commit per row is slow).

    A cache that stays locked by another process past its timeout is not worth the run: the rows
    are already computed, so caching stops (said once, on the console) and scoring goes on."""

    def __init__(self, cache: FeatureCache, size: int = 64, console: Console | None = None) -> None:
        self.cache, self.size, self.pending = cache, size, []
        self.console, self.disabled = console, False

    def _flush(self) -> None:
        if self.pending and not self.disabled:
            try:
                self.cache.put_many(self.pending)
            except CacheBusyError as exc:
                self.disabled = True
                (self.console or Console(stderr=True)).print(
                    f"[yellow]warning[/] {exc}; the scores are unaffected, new features of this run are not cached")
        self.pending = []

    def add(self, item: tuple[str, bytes]) -> None:
        self.pending.append(item)
        if len(self.pending) >= self.size:
            self._flush()

    def __enter__(self) -> "_BatchedWrites":
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is None:
            self._flush()


def _check_actions(man: Manifest) -> None:
    """The manifest's `actions` (the required actions, when given) must each name a known action:
    one error listing every bad row, before any work."""
    from fedbench.data.manifest import ManifestError, Problem
    from fedbench.metrics.lexicon import named_actions

    problems = []
    for t in man.triplets:
        if t.actions:
            try:
                named_actions(t.actions)
            except ValueError as exc:
                problems.append(Problem(t.row, str(exc), t.id))
    if problems:
        raise ManifestError(man.path, problems)


def score(
    manifest: str | Path | Manifest,
    edits: str | Path,
    out: str | Path | None = None,
    *,
    columns: dict[str, str] | None = None,
    allow_outside: bool = False,
    config: PerceptionConfig | None = None,
    workers: int | None = None,
    cache_path: str | Path | None = None,
    progress: bool = False,
    n_bootstrap: int = 1000,
    console: Console | None = None,
    version: str = FEDSCORE_VERSION,
    generation: dict[str, tuple[str, str | None]] | None = None,
    wait: bool = False,
    provenance: dict[str, Any] | None = None,
    run_extra: dict[str, Any] | None = None,
    judge: "JudgeConfig | None" = None,
) -> ScoreResult:
    """Score every triplet of `manifest` against the edited images in `edits`.

    `generation` maps sample ids whose editor produced no image to (status, reason): "refused"
    (excluded from the means, counted) or "generation_failed" (an edit failure, scored 0).
    `provenance` (what made the edits: the editor, its version and parameters) is written into
    summary.json under "editor"; `run_extra` (how this run got its edits: timings, reuse) into run.json.
    Each file is written once, here.

    Raises ManifestError (naming each bad row) before any work when the manifest or the edits
    folder is malformed. Every triplet ends with a row: a score, or a named status. `out` is locked
    for the run: another process using it is refused (FolderBusyError), or waited for with `wait`.
    """
    if version not in SUPPORTED_VERSIONS:
        raise ValueError(f"unknown FED-Score version {version!r}; supported: {', '.join(SUPPORTED_VERSIONS)}")
    console = console or Console(stderr=True)
    config = get_spec(version).perception(config)  # the recogniser the version was defined with
    man = manifest if isinstance(manifest, Manifest) else read_manifest(manifest, columns, allow_outside)
    _check_actions(man)
    edit_paths = find_edits(Path(edits), man.triplets)
    cache_path = Path(cache_path) if cache_path else features_db()
    out_dir = Path(out) if out else None
    check_out_folder(out_dir)
    FeatureCache(cache_path).close()  # create the database before readers open it (and check the path)
    with folder_lock(out_dir, wait=wait, on_wait=lambda m: console.print(f"[yellow]{m}")) if out_dir else nullcontext():
        return _score_locked(man, edits, edit_paths, out_dir, cache_path, config, workers, progress, n_bootstrap,
                             console, version, generation, provenance, run_extra, judge)


def check_out_folder(out: Path | None) -> None:
    """An --out that exists but is no folder is one clear error, before any work."""
    if out is not None and out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file, not a folder; give a folder path")


def _score_locked(man: Manifest, edits: str | Path, edit_paths: dict[str, Path | None], out_dir: Path | None,
                  cache_path: Path, config: PerceptionConfig, workers: int | None, progress: bool,
                  n_bootstrap: int, console: Console, version: str,
                  generation: dict[str, tuple[str, str | None]] | None, provenance: dict[str, Any] | None,
                  run_extra: dict[str, Any] | None, judge: "JudgeConfig | None" = None) -> ScoreResult:
    workers = default_workers() if workers is None else workers
    workers = max(1, min(workers, len(man.triplets)))
    timings: dict[str, float] = {}
    if out_dir:
        out_dir.mkdir(parents=True, exist_ok=True)

    references = sorted({str(t.source) for t in man} | {str(t.ground_truth) for t in man})
    rows: list[dict[str, Any]] = []
    cache = FeatureCache(cache_path)
    t0 = time.perf_counter()
    with _executor(workers, config, cache_path) as pmap, progress_bar(progress, console) as bar:
        timings["startup_s"] = time.perf_counter() - t0
        t1 = time.perf_counter()
        ref_task = bar.add_task("sources + ground truths", total=len(references)) if bar else None
        ref_info: dict[str, tuple[str | None, str | None]] = {}
        with _BatchedWrites(cache, console=console) as writes:
            for path, key, blob, problem in _advance(bar, ref_task, pmap(worker.perceive_reference, references, 4)):
                ref_info[path] = (key, problem)
                if blob is not None and key is not None:
                    writes.add((key, blob))
        timings["references_s"] = time.perf_counter() - t1

        verdicts: dict[str, Any] = {}
        judge_stats = None
        if judge is not None:
            from fedbench.judge.run import judge_triplets

            tj = time.perf_counter()
            judged_edits = {t.id: None if (generation or {}).get(t.id) else edit_paths[t.id] for t in man}
            verdicts, judge_stats = judge_triplets(judge, list(man), judged_edits, version, cache_path, bar)
            timings["judge_s"] = time.perf_counter() - tj

        t2 = time.perf_counter()
        tasks = [
            {
                "id": t.id, "target": t.target, "instruction": t.instruction, "source": str(t.source),
                "ground_truth": str(t.ground_truth),
                "source_key": ref_info[str(t.source)][0], "source_problem": ref_info[str(t.source)][1],
                "gt_key": ref_info[str(t.ground_truth)][0], "gt_problem": ref_info[str(t.ground_truth)][1],
                "edit": None if edit_paths[t.id] is None else str(edit_paths[t.id]),
                "version": version,
                "generation": (generation or {}).get(t.id),
                "actions": t.actions,
                **({"judge": verdicts[t.id]} if judge is not None else {}),
            }
            for t in man
        ]
        edit_task = bar.add_task("edits", total=len(tasks)) if bar else None
        # samples.jsonl is streamed into a hidden temporary file and renamed over the old one once
        # complete (a killed or failed run leaves the previous file, never a cut one).
        with (atomic_open(out_dir / "samples.jsonl") if out_dir else nullcontext()) as fh, \
                _BatchedWrites(cache, console=console) as writes:
            for row, blobs in _advance(bar, edit_task, pmap(worker.score_sample, tasks, 2)):
                rows.append(row)
                if fh:
                    fh.write(json.dumps(row, ensure_ascii=False) + "\n")
                for blob in blobs:
                    writes.add(blob)
        timings["edits_s"] = time.perf_counter() - t2
    cache.close()

    metric = FEDScore(n_bootstrap=n_bootstrap, rows=rows)
    summary = {
        "fedscore_version": version,
        "manifest": str(man.path),
        "edits": str(Path(edits).resolve()),
        **metric.compute(),
        "perception": config.model_dump(mode="json"),
        "backbones": backbones_used(config),
    }
    if provenance is not None:
        summary["editor"] = provenance
    if judge is not None and judge_stats is not None:
        from fedbench.judge.run import judge_summary

        summary["judge"] = judge_summary(judge, rows, judge_stats)
    if out_dir:
        write_json_atomic(out_dir / "summary.json", summary, indent=2, ensure_ascii=False)
        timings["total_s"] = time.perf_counter() - t0
        run_info = {"workers": workers, "feature_cache": str(cache_path), "timings": timings,
                    "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **(run_extra or {})}
        if judge_stats is not None:
            run_info["judge"] = judge_stats.as_dict()
        write_json_atomic(out_dir / "run.json", run_info, indent=2)
    timings["total_s"] = time.perf_counter() - t0
    return ScoreResult(samples=rows, summary=summary, out=out_dir, timings=timings)
