"""Build faults: transient ones are retried and never journaled as rejections; a worker that dies on
one input costs that input only (rejected with the reason), the build goes on in order."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
from pathlib import Path

import pytest
from rich.console import Console

from fedbench.engine import faults
from fedbench.engine.config import BuildConfig
from fedbench.engine.executors import CRASH_REASON, LocalExecutor
from fedbench.engine.faults import TransientFault, is_transient, process_with_retries
from fedbench.engine.pipeline import _run_stage
from fedbench.engine.stage import Record, Rejected, Stage
from fedbench.store.atomic import DiskFullError


class Flaky(Stage):
    name = "flaky"
    oom_ids: set[str] = {"oom"}

    def __init__(self, config: BuildConfig, root: Path) -> None:
        super().__init__(config, root)
        self.calls: dict[str, int] = {}

    def process(self, record: Record):
        n = self.calls[record["id"]] = self.calls.get(record["id"], 0) + 1
        if record["id"] == "locked" and n <= 2:
            raise sqlite3.OperationalError("database is locked")
        if record["id"] in self.oom_ids:
            raise MemoryError("cannot allocate 2 GiB")
        if record["id"] == "bad":
            raise ValueError("not a face")
        return [{**record, "n": n}]


class Crashy(Stage):
    name = "crashy"

    def process(self, record: Record):
        if record["id"] == "segv":
            os.kill(os.getpid(), signal.SIGSEGV)  # what a native decoder does on a malformed video
        return [{**record, "pid": os.getpid()}]


@pytest.fixture(autouse=True)
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(faults, "BACKOFF_S", 0.0)


def _journal(work: Path, name: str) -> list[dict]:
    path = work / f"{name}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_classification() -> None:
    assert is_transient(MemoryError()) and is_transient(sqlite3.OperationalError("database is locked"))
    assert is_transient(ConnectionResetError()) and is_transient(TimeoutError())
    assert not is_transient(ValueError("bad")) and not is_transient(sqlite3.OperationalError("no such table: x"))
    assert not is_transient(FileNotFoundError(2, "gone"))


def test_transient_faults_are_retried_and_bad_inputs_rejected(tmp_path: Path) -> None:
    stage = Flaky(BuildConfig(), tmp_path)
    assert process_with_retries(stage, {"id": "locked"}) == [{"id": "locked", "n": 3}]  # third attempt
    assert process_with_retries(stage, {"id": "bad"}) == Rejected("flaky failed: ValueError: not a face")
    with pytest.raises(TransientFault, match="still failing after 3 retries"):
        process_with_retries(stage, {"id": "oom"})
    assert stage.calls["oom"] == 4  # bounded: one try and three retries


def test_a_full_disk_is_never_a_rejection(tmp_path: Path) -> None:
    class Full(Flaky):
        def process(self, record: Record):
            raise DiskFullError(tmp_path / "x.png")

    with pytest.raises(DiskFullError):
        process_with_retries(Full(BuildConfig(), tmp_path), {"id": "a"})


def test_a_persistent_transient_fault_stops_unjournaled_and_resumes(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    records = [{"id": i} for i in ("a", "locked", "bad", "oom", "z")]
    console = Console(stderr=True)
    with pytest.raises(TransientFault, match="'oom'"):
        _run_stage(Flaky(BuildConfig(), tmp_path), iter(records), None, LocalExecutor(1), work, None, console)
    rows = _journal(work, "flaky")
    assert [r["id"] for r in rows] == ["a", "locked", "bad"]  # a prefix; the OOM record is not journaled
    assert [r["rejected"] is not None for r in rows] == [False, False, True]
    assert not (work / "flaky.done").exists()
    # memory is back: the resumed build processes the record the fault stopped at
    Flaky.oom_ids = set()
    try:
        count = _run_stage(Flaky(BuildConfig(), tmp_path), iter(records), None, LocalExecutor(1), work, None, console)
    finally:
        Flaky.oom_ids = {"oom"}
    rows = _journal(work, "flaky")
    assert [r["id"] for r in rows] == ["a", "locked", "bad", "oom", "z"]
    assert (count.inputs, count.rejected) == (5, 1)


@pytest.mark.slow
def test_a_worker_crash_rejects_only_its_input(tmp_path: Path) -> None:
    ids = [f"r{i}" for i in range(6)] + ["segv"] + [f"r{i}" for i in range(6, 12)]
    outcomes = list(LocalExecutor(workers=2, in_flight=2).map(Crashy(BuildConfig(), tmp_path),
                                                                ({"id": i} for i in ids)))
    assert len(outcomes) == len(ids)
    for record_id, outcome in zip(ids, outcomes):
        if record_id == "segv":
            assert isinstance(outcome, Rejected) and CRASH_REASON in outcome.reason and outcome.details["crashed"]
        else:
            assert isinstance(outcome, list) and outcome[0]["id"] == record_id  # in order, none lost
    assert len({o[0]["pid"] for o in outcomes if isinstance(o, list)}) >= 2  # a fresh pool went on after it


class _RaisingEditor:
    """Stands in for a ground-truth editor: raises what it is told, or says a key in its error."""

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc

    def edit(self, request: object) -> object:
        raise self.exc

    def secret_values(self) -> tuple[str, ...]:
        return ("s3cret-token-value",)


@pytest.mark.parametrize("exc, transient", [(MemoryError("CUDA out of memory"), True),
                                            (sqlite3.OperationalError("database is locked"), True),
                                            (ValueError("bad face; token s3cret-token-value"), False)])
def test_ground_truth_lets_machine_faults_through(tmp_path: Path, exc: BaseException, transient: bool) -> None:
    from fedbench.editors.config import EditorConfig
    from fedbench.engine.stages.ground_truth import GroundTruth

    stage = GroundTruth(BuildConfig(), tmp_path)
    stage.editor, stage.editor_config = _RaisingEditor(exc), EditorConfig(name="x", adapter="identity")
    record = {"id": "a", "image": str(tmp_path / "a.png"), "instruction": "smile", "target": "happy"}
    if transient:  # never journaled as a rejection: process_with_retries retries it, then stops the build
        with pytest.raises(type(exc)):
            stage.process(record)
        with pytest.raises(TransientFault):
            process_with_retries(stage, record)
    else:
        outcome = stage.process(record)
        assert isinstance(outcome, Rejected) and "bad face" in outcome.reason
        assert "s3cret-token-value" not in outcome.reason
