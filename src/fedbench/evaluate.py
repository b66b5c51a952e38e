"""`fedbench eval`: run an editor over a benchmark, keep its images, score them.

    run folder (--out)
      eval.json          the editor config and its hash (a resumed run must match it)
      generated/<id>.png the editor's images (written atomically: complete or absent)
      generations.jsonl  one row per sample: key, status, seed, parameters, seconds, libraries
      samples.jsonl, summary.json, run.json   the core scorer's output

Only what is missing is generated: a sample is reused when its row's key (generation_key: the
editor's config hash, the seed, the sample id and `request_digest`, the request's content: the
source's sha256, instruction, target, source expression, and the ground truth's sha256 for editors
that read it) matches and its image is intact (sha256). Killed at any point and restarted with
`resume=True`, a run loses nothing and duplicates nothing. Editors never score; the core scorer does.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import time
import traceback
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image
from rich.console import Console

from fedbench.data.manifest import Manifest, read_manifest
from fedbench.editors.base import EditRequest, EditResult, EditStatus, Editor
from fedbench.editors.config import EditorConfig, EditorConfigError, load_editor_config, resolved_hash, sample_seed
from fedbench.editors.registry import build_editor
from fedbench.faces.perception import PerceptionConfig
from fedbench.metrics.fedscore import FEDSCORE_VERSION
from fedbench.models.store import sha256_of
from fedbench.progress import progress_bar
from fedbench.scoring.runner import ScoreResult, score
from fedbench.store.atomic import remove_stale_temps, write_bytes_atomic
from fedbench.store.journal import Journal, compact, generation_key, read_rows
from fedbench.store.lock import FolderBusyError, folder_lock, holder, is_locked

GENERATED = "generated"
RUN_FILES = ("eval.json", "generations.jsonl", "samples.jsonl", "summary.json", "run.json")


class RunFolderError(ValueError):
    pass


@dataclass
class EvalResult:
    out: Path
    config: EditorConfig
    config_hash: str
    generations: list[dict[str, Any]]
    score: ScoreResult
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def summary(self) -> dict[str, Any]:
        return self.score.summary


def _png_bytes(rgb: Any) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def _library_versions(editor: Editor) -> dict[str, str]:
    from fedbench import __version__

    try:
        libs = editor.libraries()
    except Exception as exc:  # provenance must not stop a run; say what went wrong instead
        libs = {"error": f"{type(exc).__name__}: {exc}"}
    return {"fedbench": __version__, **libs}


def _prepare_folder(out: Path, info: dict[str, Any], resume: bool, overwrite: bool, check_only: bool = False) -> None:
    meta = out / "eval.json"
    if check_only and overwrite:
        return
    if meta.exists() and overwrite:
        shutil.rmtree(out / GENERATED, ignore_errors=True)
        for name in RUN_FILES:
            (out / name).unlink(missing_ok=True)
    elif meta.exists():
        if not resume:
            raise RunFolderError(f"{out} already holds an eval run ({meta}); pass --resume to continue it "
                                 "or --overwrite to start again")
        try:
            old = json.loads(meta.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise RunFolderError(f"{meta} is unreadable ({exc}); use another --out, or --overwrite to start "
                                 "again") from None
        if (old.get("config_hash"), old.get("benchmark"), old.get("shard")) != (
                info["config_hash"], info["benchmark"], info.get("shard")):
            raise RunFolderError(
                f"{out} was made by editor {old.get('editor')!r} (config {old.get('config_hash')}) on "
                f"{old.get('benchmark')}; this run is {info['editor']!r} (config {info['config_hash']}) on "
                f"{info['benchmark']} (shard {old.get('shard')} vs {info.get('shard')}). Use another --out, "
                "or --overwrite to replace it")
    if check_only:
        return
    (out / GENERATED).mkdir(parents=True, exist_ok=True)
    for folder in (out, out / GENERATED):  # what a killed writer left (the folder is locked: none is ours)
        remove_stale_temps(folder)
    if not meta.exists():
        write_bytes_atomic(meta, (json.dumps(info, indent=2, sort_keys=True, default=str) + "\n").encode())


def request_digest(t: Any, editor: Editor) -> str:
    """The request's content: a source, instruction or target changed under the same id is a new request."""
    h = hashlib.sha256()
    h.update(sha256_of(t.source).encode())
    for part in (t.instruction, t.target, t.source_expression or ""):
        h.update(b"\x1f" + part.encode())
    if editor.reads_ground_truth:
        h.update(b"\x1f" + sha256_of(t.ground_truth).encode())
    return h.hexdigest()[:16]


def _reusable(row: dict[str, Any], key: str, image: Path) -> bool:
    if row.get("key") != key:
        return False
    if row.get("status") == EditStatus.REFUSED.value:
        return True  # a refusal is the model's answer; asking again would not be the same run
    if row.get("status") != EditStatus.OK.value or not image.is_file():
        return False  # failures are tried again on resume
    return hashlib.sha256(image.read_bytes()).hexdigest() == row.get("sha256")


def _run_one(editor: Editor, request: EditRequest) -> tuple[EditResult, float]:
    t0 = time.perf_counter()
    try:
        result = editor.edit(request)
    except Exception as exc:  # one sample's failure never stops the run: it becomes its row's status
        result = EditResult.failed(f"{type(exc).__name__}: {exc}", traceback=traceback.format_exc(limit=8)[-2000:])
        result = result.scrubbed(editor.secret_values())  # an exception's text may quote a key too
    if result.status == EditStatus.OK and (result.image is None or result.image.ndim != 3 or result.image.shape[2] != 3):
        result = EditResult.failed("the editor returned no H x W x 3 image")
    return result, time.perf_counter() - t0


def _request(t: Any, seed: int, editor: Editor) -> EditRequest:
    return EditRequest(
        sample_id=t.id, source=t.source, instruction=t.instruction, target=t.target, seed=seed,
        source_expression=t.source_expression, ground_truth=t.ground_truth if editor.reads_ground_truth else None,
    )


def generate(editor: Editor, config: EditorConfig, config_hash: str, manifest: Manifest, out: Path,
             progress: bool = True, console: Console | None = None,
             jobs: int = 1, dispatch: Any = None) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Generate every missing image of `manifest` into out/generated; returns the compacted log.

    `jobs` > 1 sends that many requests at once to editors that allow it (`thread_safe`: HTTP APIs,
    external commands); rows are logged as they finish and put back in manifest order at the end.
    """
    console = console or Console(stderr=True)
    log_path = out / "generations.jsonl"
    previous = {r["id"]: r for r in read_rows(log_path)}
    libraries = _library_versions(editor)
    counts = {"reused": 0, "generated": 0, "failed": 0, "refused": 0}
    todo = []
    for t in manifest:
        seed = sample_seed(config.seed, t.id)
        try:
            key = generation_key(config_hash, seed, t.id, request_digest(t, editor))
        except OSError:  # an unreadable source: the editor's own attempt will name the problem
            key = generation_key(config_hash, seed, t.id, "unreadable")
        image = out / GENERATED / f"{t.id}.png"
        if editor.cacheable and t.id in previous and _reusable(previous[t.id], key, image):
            counts["reused"] += 1
        else:
            image.unlink(missing_ok=True)  # never score a stale image beside a new status
            todo.append((t, seed, key, image))

    def finish(item: tuple[Any, int, str, Path], result: EditResult, seconds: float) -> dict[str, Any]:
        t, seed, key, image = item
        row: dict[str, Any] = {
            "id": t.id, "key": key, "editor": config.name, "adapter": config.adapter,
            "editor_version": editor.version, "config_hash": config_hash, "seed": seed,
            "params": editor.params, "status": result.status.value, "reason": result.reason,
            "seconds": round(seconds, 4), "details": result.details, "libraries": libraries,
            "reads_ground_truth": editor.reads_ground_truth, "image": None, "sha256": None,
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        if result.status == EditStatus.OK:
            data = _png_bytes(result.image)
            write_bytes_atomic(image, data)  # the image first: a row never points at a missing file
            row.update(image=f"{GENERATED}/{image.name}", sha256=hashlib.sha256(data).hexdigest(),
                       size=[int(result.image.shape[1]), int(result.image.shape[0])])
            counts["generated"] += 1
        else:
            counts["failed" if result.status == EditStatus.FAILED else "refused"] += 1
        return row

    with Journal(log_path) as log, progress_bar(progress, console) as bar:
        task = bar.add_task(f"generating ({config.name})", total=len(manifest),
                            completed=counts["reused"]) if bar else None
        if dispatch is not None:  # another executor (fedbench.eval_ray): rows logged here as results arrive
            for item, result, seconds in dispatch([(item, _request(item[0], item[1], editor)) for item in todo], bar):
                log.append(finish(item, result, seconds))
                if bar:
                    bar.advance(task)
        elif jobs > 1 and editor.thread_safe:
            pool = ThreadPoolExecutor(jobs)
            try:
                pending: dict[Any, tuple[Any, int, str, Path]] = {}
                queue = iter(todo)
                while True:
                    while len(pending) < 2 * jobs and (item := next(queue, None)) is not None:
                        pending[pool.submit(_run_one, editor, _request(item[0], item[1], editor))] = item
                    if not pending:
                        break
                    done, _ = wait(pending, return_when=FIRST_COMPLETED)
                    for future in done:  # dropped once logged: memory holds only the window
                        log.append(finish(pending.pop(future), *future.result()))
                        if bar:
                            bar.advance(task)
            finally:
                pool.shutdown(wait=True, cancel_futures=True)  # Ctrl-C: no queued (paid) request starts
        else:
            for item in todo:
                log.append(finish(item, *_run_one(editor, _request(item[0], item[1], editor))))
                if bar:
                    bar.advance(task)
    rows = compact(log_path, [t.id for t in manifest])
    return rows, counts


def evaluate(
    editor: str | Path | EditorConfig,
    benchmark: str | Path | Manifest,
    out: str | Path,
    *,
    editor_args: dict[str, Any] | None = None,
    seed: int | None = None,
    resume: bool = False,
    overwrite: bool = False,
    columns: dict[str, str] | None = None,
    allow_outside: bool = False,
    limit: int | None = None,
    jobs: int = 1,
    workers: int | None = None,
    cache_path: str | Path | None = None,
    perception: PerceptionConfig | None = None,
    progress: bool = True,
    console: Console | None = None,
    version: str = FEDSCORE_VERSION,
    n_bootstrap: int = 1000,
    wait: bool = False,
    shard: tuple[int, int] | None = None,
    executor: str = "local",
    address: str | None = None,
    gpus_per_editor: float = 1.0,
    judge: Any = None,
) -> EvalResult:
    """Generate with `editor` (a YAML config, a registered name, or an EditorConfig) over `benchmark`,
    then score into `out`. Raises before any work on a bad manifest, config or run folder. `judge`: a
    JudgeConfig (docs/judge.md) for Alignment, applied when scoring.

    The run folder is locked while the run uses it: a second process is refused with the holder's
    PID (FolderBusyError), or, with `wait`, waits for it."""
    console = console or Console(stderr=True)
    manifest = benchmark if isinstance(benchmark, Manifest) else read_manifest(benchmark, columns, allow_outside)
    if limit is not None:
        manifest = Manifest(manifest.path, manifest.root, manifest.triplets[:limit])
    if shard is not None:  # an array job's part (fedbench.eval_shards); `eval --merge` joins the parts
        from fedbench.eval_shards import select_shard

        manifest = select_shard(manifest, *shard)
    config = editor if isinstance(editor, EditorConfig) else load_editor_config(editor, editor_args, seed)
    try:
        instance = build_editor(config)
    except (TypeError, ValueError, KeyError, ImportError, OSError) as exc:  # unknown adapter, missing extra
        raise EditorConfigError(f"editor {config.name!r} ({config.adapter}): {exc}") from exc
    if cache_path is not None:
        instance.use_feature_cache(cache_path)
    config_hash = resolved_hash(config, instance)
    out = Path(out)
    info = {"editor": config.name, "adapter": config.adapter, "editor_version": instance.version,
            "config_hash": config_hash, "seed": config.seed, "params": instance.params,
            "config_file": config.source, "benchmark": str(manifest.path), "limit": limit,
            **({"shard": f"{shard[0]}/{shard[1]}"} if shard else {})}
    if executor not in ("local", "ray"):
        raise ValueError(f"unknown executor {executor!r}: local or ray")
    if out.exists() and not out.is_dir():
        raise RunFolderError(f"--out {out} is a file, not a folder; give a folder path")
    if not wait and is_locked(out):  # refuse early, before a long model load
        raise FolderBusyError(f"{out.resolve()} is in use by {holder(out)}; wait for it to finish, or pass --wait")
    closed = False
    dispatch = None
    try:
        _prepare_folder(out, info, resume, overwrite, check_only=True)  # refuse early, before a long load
        try:
            if executor == "ray":  # the editor loads in Ray actors (fedbench.eval_ray), not here
                from fedbench.eval_ray import RayDispatch

                dispatch = RayDispatch(config, address=address, gpus_per_editor=gpus_per_editor, console=console,
                                       cache_path=cache_path)
            else:
                instance.load()
        except Exception as exc:  # e.g. DiffusersLoadError: the whole run cannot go on, and nothing is touched
            raise EditorConfigError(f"editor {config.name!r} ({config.adapter}) cannot load: {exc}") from exc
        with folder_lock(out, wait=wait, on_wait=lambda m: console.print(f"[yellow]{m}")):
            _prepare_folder(out, info, resume, overwrite, check_only=True)  # again: the holder may have changed it
            _prepare_folder(out, info, resume, overwrite)
            t0 = time.perf_counter()
            rows, counts = generate(instance, config, config_hash, manifest, out, progress, console, jobs, dispatch)
            generation_s = time.perf_counter() - t0
            closed = True
            instance.close()  # free the editor (GPU memory, sessions) before scoring starts its workers
            if dispatch is not None:
                dispatch.close()
            result = score_run(manifest, out, info, rows, {**counts, "seconds": round(generation_s, 2)},
                               perception=perception, workers=workers, cache_path=cache_path, progress=progress,
                               console=console, version=version, n_bootstrap=n_bootstrap, judge=judge)
    finally:
        if not closed:  # generation raised (or the folder was busy): free the editor all the same
            instance.close()
            if dispatch is not None:
                dispatch.close()
    return EvalResult(out=out, config=config, config_hash=config_hash, generations=rows, score=result, counts=counts)


def score_run(manifest: Manifest, out: Path, info: dict[str, Any], rows: list[dict[str, Any]],
              generation: dict[str, Any], *, perception: PerceptionConfig | None = None, workers: int | None = None,
              cache_path: str | Path | None = None, progress: bool = True, console: Console | None = None,
              version: str = FEDSCORE_VERSION, n_bootstrap: int = 1000, judge: Any = None) -> ScoreResult:
    """Score a run folder's generated images (also for merged shards); `generation` goes to run.json."""
    failed = {r["id"]: (r["status"], r["reason"]) for r in rows if r["status"] != EditStatus.OK.value}
    # summary.json stays a pure function of the inputs (byte-identical on a rerun), so it carries the
    # editor's provenance; how this run got its images (reused, generated, seconds) goes to run.json.
    return score(manifest, out / GENERATED, out, config=perception, workers=workers, cache_path=cache_path,
                 progress=progress, console=console, version=version, n_bootstrap=n_bootstrap,
                 generation=failed, provenance=info, run_extra={"generation": generation}, judge=judge)
