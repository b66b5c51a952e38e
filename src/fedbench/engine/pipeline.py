"""`fedbench build`: raw face footage -> verified test triplets and training pairs.

    built/
      test.jsonl, train.jsonl   core manifests (load straight into `fedbench score` / `eval`)
      images/sources, images/gt the images they name
      rejections.jsonl          each rejected candidate: stage and reason
      datacard.md               counts per class and stage, thresholds, backbones, editor, licences
      work/                     stage journals, frames, ground-truth candidates, feature cache

Every stage streams its input from the previous stage's journal and appends its outcome per record
(fsynced), so a killed build restarts where it stopped: a stage's journal is a prefix of its input
order, and the restarted stage skips that prefix. Finished stages are marked done and skipped.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

from rich.console import Console

from fedbench.engine.config import BuildConfig
from fedbench.engine.executors import Executor, LocalExecutor, make_executor
from fedbench.engine.faults import process_with_retries
from fedbench.engine.stage import Outcome, Record, Rejected, Stage
from fedbench.engine.stages.face_filter import FaceFilter
from fedbench.engine.stages.ground_truth import GroundTruth
from fedbench.engine.stages.ingest import Ingest, discover
from fedbench.engine.stages.instructions import Instruction
from fedbench.engine.stages.source_label import SourceLabel
from fedbench.engine.stages.split import split
from fedbench.engine.stages.targets import TargetChoice
from fedbench.engine.stages.verify import Verify
from fedbench.progress import progress_bar
from fedbench.store.atomic import atomic_open, copy_atomic, write_json_atomic, write_text_atomic
from fedbench.store.journal import Journal, iter_rows, repair
from fedbench.store.lock import folder_lock

STAGES: tuple[type[Stage], ...] = (Ingest, FaceFilter, SourceLabel, TargetChoice, Instruction, GroundTruth, Verify)
SPLIT_STAGE = "split"


class BuildFolderError(ValueError):
    pass


@dataclass
class StageCount:
    name: str
    inputs: int = 0
    outputs: int = 0
    rejected: int = 0
    seconds: float = 0.0
    reasons: dict[str, int] = field(default_factory=dict)


@dataclass
class BuildResult:
    out: Path
    test: Path
    train: Path
    counts: list[StageCount]
    per_class: dict[str, dict[str, int]]


def _journal(work: Path, name: str) -> Path:
    return work / f"{name}.jsonl"


def _outputs(work: Path, name: str) -> Iterator[Record]:
    for row in iter_rows(_journal(work, name), ("id", "out")):
        yield from row["out"]


def _count_rows(path: Path) -> int:
    if not path.exists():
        return 0
    with open(path, "rb") as fh:
        return sum(1 for _ in fh)


def _reason_key(reason: str) -> str:
    """Group rejection reasons for the data card: the failed checks, not their values or file names."""
    if reason.startswith("no candidate passed"):
        checks = re.findall(r"(\w+) -?[\d.]+ <", reason)
        rest = reason.split(": ", 1)[-1]
        return "no candidate passed: " + (", ".join(sorted(set(checks))) if checks else _numbers_out(rest))
    if reason.startswith("near-duplicate source"):
        return "near-duplicate source"
    if reason.startswith("unreadable"):
        return "unreadable"
    head, sep, rest = reason.partition(": ")
    if sep and re.search(r"\.\w{2,5}$", head):  # "<file name>: why" -> why
        reason = rest
    return _numbers_out(reason)


def _numbers_out(text: str) -> str:
    return re.sub(r"-?\d+(\.\d+)?", "#", text)[:80]


def _run_stage(stage: Stage, inputs: Iterable[Record], total: int | None, executor: Executor, work: Path,
               bar: Any, console: Console) -> StageCount:
    journal_path = _journal(work, stage.name)
    done_marker = work / f"{stage.name}.done"
    count = StageCount(stage.name)
    if done_marker.exists():
        return StageCount(**json.loads(done_marker.read_text()))
    if not stage.mapped:
        journal_path.unlink(missing_ok=True)  # cheap, stateful stages run again from the start
    repair(journal_path)
    finished = _count_rows(journal_path)
    it = iter(inputs)
    prior = iter_rows(journal_path, ("id", "out"))
    task = bar.add_task(stage.name, total=total) if bar else None
    for _ in range(finished):  # the journal is a prefix of the input: check it, then skip it
        record, row = next(it, None), next(prior, None)
        if record is None or row is None or record["id"] != row["id"]:
            raise BuildFolderError(f"{journal_path}: the inputs changed since this build started "
                                   "(use another --out, or --overwrite)")
    if bar:
        bar.update(task, completed=finished)
    t0 = time.perf_counter()
    with Journal(journal_path) as journal:
        if stage.mapped:
            outcomes: Iterator[tuple[Record, Outcome]] = _zip_ordered(it, executor, stage)
        else:
            outcomes = _sequential(stage, it)
        for record, outcome in outcomes:
            if isinstance(outcome, Rejected):
                journal.append({"id": record["id"], "out": [], "rejected": {"reason": outcome.reason,
                                                                             "details": outcome.details}})
            else:
                journal.append({"id": record["id"], "out": outcome, "rejected": None})
            if bar:
                bar.advance(task)
    for row in iter_rows(journal_path, ("id", "out")):
        count.inputs += 1
        count.outputs += len(row["out"])
        if row.get("rejected"):
            count.rejected += 1
            key = _reason_key(row["rejected"]["reason"])
            count.reasons[key] = count.reasons.get(key, 0) + 1
    count.seconds = round(time.perf_counter() - t0, 2)
    if bar:
        bar.update(task, total=count.inputs, completed=count.inputs)
    write_json_atomic(done_marker, count.__dict__)
    return count


def _zip_ordered(records: Iterator[Record], executor: Executor, stage: Stage) -> Iterator[tuple[Record, Outcome]]:
    """Pair each input with its outcome; the executor keeps the order, the inputs are replayed lazily."""
    from collections import deque

    pending: deque[Record] = deque()

    def feed() -> Iterator[Record]:
        for r in records:
            pending.append(r)
            yield r

    for outcome in executor.map(stage, feed()):
        yield pending.popleft(), outcome


def _sequential(stage: Stage, records: Iterator[Record]) -> Iterator[tuple[Record, Outcome]]:
    stage.setup()
    try:
        for r in records:
            yield r, process_with_retries(stage, r)
    finally:
        stage.teardown()


def _prepare(out: Path, config: BuildConfig, sources: list[Path], overwrite: bool) -> Path:
    work = out / "work"
    if overwrite and out.exists():
        shutil.rmtree(work, ignore_errors=True)
        for name in ("test.jsonl", "train.jsonl", "rejections.jsonl", "datacard.md"):
            (out / name).unlink(missing_ok=True)
        shutil.rmtree(out / "images", ignore_errors=True)
    work.mkdir(parents=True, exist_ok=True)
    identity = {"config": config.model_dump(mode="json"), "sources": [str(Path(s).resolve()) for s in sources]}
    meta = work / "build.json"
    if meta.exists():
        old = json.loads(meta.read_text())
        if old != identity:
            raise BuildFolderError(f"{out} holds a build with other sources or settings ({meta}); "
                                   "use another --out, or --overwrite to start again")
    else:
        write_json_atomic(meta, identity, indent=2)
    return work


def _manifest_row(r: Record, out: Path) -> dict[str, Any]:
    from fedbench.metrics.lexicon import parse_actions

    src = Path(r["image"])
    src_rel = Path("images/sources") / f"{r['source_id']}{src.suffix.lower()}"
    gt_rel = Path("images/gt") / f"{r['id']}.png"
    for from_, to in ((src, out / src_rel), (Path(r["ground_truth"]), out / gt_rel)):
        if not to.exists():  # copied under a temporary name first: a killed build leaves no torn image
            to.parent.mkdir(parents=True, exist_ok=True)
            copy_atomic(from_, to)
    row = {"id": r["id"], "source": str(src_rel), "instruction": r["instruction"], "target": r["target"],
           "ground_truth": str(gt_rel), "identity": r["identity"], "split": r["split"],
           "actions": [a.name for a in parse_actions(r["instruction"])],
           "meta": {"origin": r["origin"], "source_sha256": r["sha256"], "gt_seed": r["gt_seed"],
                    "editor": r["editor"], "verification": r["verification"], "face": r["face"],
                    "label_confidence": r["label_confidence"]}}
    if r.get("source_expression") not in (None, "unknown"):
        row["source_expression"] = r["source_expression"]
    return row


def build(
    sources: list[str | Path],
    out: str | Path,
    config: BuildConfig | None = None,
    *,
    executor: str | Executor = "local",
    workers: int | None = None,
    address: str | None = None,
    overwrite: bool = False,
    progress: bool = True,
    console: Console | None = None,
) -> BuildResult:
    """Run every stage over `sources` (image files, video files, folders) into `out`."""
    console = console or Console(stderr=True)
    config = config or BuildConfig()
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise BuildFolderError(f"--out {out} is a file, not a folder; give a folder path")
    with folder_lock(out, on_wait=lambda m: console.print(f"[yellow]{m}")):  # one build per folder
        return _build_locked([Path(s) for s in sources], out, config, executor, workers, address, overwrite,
                             progress, console)


def _build_locked(src_paths: list[Path], out: Path, config: BuildConfig, executor: str | Executor,
                  workers: int | None, address: str | None, overwrite: bool, progress: bool,
                  console: Console) -> BuildResult:
    work = _prepare(out, config, src_paths, overwrite)
    ex = make_executor(executor, workers, address) if isinstance(executor, str) else executor
    counts: list[StageCount] = []
    try:
        with progress_bar(progress, console) as bar:
            previous: str | None = None
            total: int | None = None
            for cls in STAGES:
                stage = cls(config, out)
                if previous is None:
                    inputs: Iterable[Record] = discover(src_paths, (config.ingest.image_extensions,
                                                                     config.ingest.video_extensions))
                else:
                    inputs = _outputs(work, previous)
                count = _run_stage(stage, inputs, total, ex, work, bar, console)
                counts.append(count)
                previous, total = stage.name, count.outputs
    finally:
        ex.close()

    verified = list(_outputs(work, previous))  # small rows (ids, paths, scores): the split needs them all
    t0 = time.perf_counter()
    result = split(verified, config)
    rows_test = [_manifest_row(r, out) for r in result.test]
    rows_train = [_manifest_row(r, out) for r in result.train]
    for name, rows in (("test.jsonl", rows_test), ("train.jsonl", rows_train)):
        write_text_atomic(out / name, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    split_count = StageCount(SPLIT_STAGE, inputs=len(verified), outputs=len(rows_test) + len(rows_train),
                             rejected=len(result.rejected), seconds=round(time.perf_counter() - t0, 2))
    for _, reason in result.rejected:
        key = _reason_key(reason)
        split_count.reasons[key] = split_count.reasons.get(key, 0) + 1
    counts.append(split_count)
    _write_rejections(out, work, result.rejected)
    per_class: dict[str, dict[str, int]] = {}
    for split_name, rows in (("test", rows_test), ("train", rows_train)):
        for r in rows:
            per_class.setdefault(r["target"], {"test": 0, "train": 0})[split_name] += 1
    from fedbench.engine.datacard import write_datacard

    write_datacard(out, config, counts, per_class, src_paths, ex.name)
    return BuildResult(out=out, test=out / "test.jsonl", train=out / "train.jsonl", counts=counts, per_class=per_class)


def _write_rejections(out: Path, work: Path, split_rejections: list[tuple[Record, str]]) -> None:
    with atomic_open(out / "rejections.jsonl") as fh:
        for cls in STAGES:
            for row in iter_rows(_journal(work, cls.name), ("id", "out")):
                if row.get("rejected"):
                    fh.write(json.dumps({"id": row["id"], "stage": cls.name, **row["rejected"]},
                                        ensure_ascii=False) + "\n")
        for record, reason in split_rejections:
            fh.write(json.dumps({"id": record["id"], "stage": SPLIT_STAGE, "reason": reason, "details": {}},
                                ensure_ascii=False) + "\n")


__all__ = ["BuildResult", "BuildFolderError", "LocalExecutor", "STAGES", "build"]
