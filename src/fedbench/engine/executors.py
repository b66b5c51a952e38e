"""Where a mapped stage runs: in this process, on a local process pool, or on Ray.

Each executor maps a stage over records IN ORDER with a bounded number in flight, so memory stays
flat in the number of inputs and the stage journal is always a prefix of the input order (which is
what makes a killed build resumable). Workers call `stage.setup()` once.
"""

from __future__ import annotations

import itertools
import multiprocessing as mp
import os
from collections import deque
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Iterable, Iterator, Protocol

from fedbench.cpus import default_workers
from fedbench.engine.faults import process_with_retries
from fedbench.engine.stage import Outcome, Record, Rejected, Stage

# Set once in each pool worker process by `_init` (the pool's initializer) and never in the parent:
# a spawned worker's module is the only place its set-up stage (loaded models) can wait between calls.
_STAGE: Stage | None = None


def _guarded(stage: Stage, record: Record) -> Outcome:
    # The input's errors become rejections; transient faults are retried, then stop the build unjournaled.
    return process_with_retries(stage, record)


def _init(stage: Stage) -> None:
    global _STAGE
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    _STAGE = stage
    _STAGE.setup()


def _call(record: Record) -> Outcome:
    assert _STAGE is not None
    return _guarded(_STAGE, record)


def _batches(items: Iterable[Record], size: int) -> Iterator[list[Record]]:
    it = iter(items)
    while batch := list(itertools.islice(it, size)):
        yield batch


class Executor(Protocol):
    name: str

    def map(self, stage: Stage, records: Iterable[Record]) -> Iterator[Outcome]: ...

    def close(self) -> None: ...


CRASH_REASON = ("the worker process died on this input (a crash such as a segfault in a native decoder, or "
                "the system killing it); the input was tried alone in a fresh worker and died again")


class LocalExecutor:
    """A spawn process pool (one process per core by default); workers <= 1 runs in this process.

    A worker that dies (segfault, OOM kill) breaks the pool. The records in flight are then tried
    one at a time in a fresh one-worker pool: the record that kills that worker too is rejected with
    CRASH_REASON, the others get their outcomes, and the build goes on with a new pool."""

    name = "local"

    def __init__(self, workers: int | None = None, in_flight: int = 32) -> None:
        self.workers = workers if workers is not None else default_workers()
        self.in_flight = in_flight

    def _pool(self, stage: Stage, workers: int) -> ProcessPoolExecutor:
        # spawn, not fork: MediaPipe and OpenVINO threads do not survive a fork
        return ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=_init, initargs=(stage,))

    def map(self, stage: Stage, records: Iterable[Record]) -> Iterator[Outcome]:
        # A stage that needs a GPU runs in this process: one model copy, not one per core.
        if self.workers <= 1 or stage.num_gpus > 0:
            stage.setup()
            try:
                for record in records:
                    yield _guarded(stage, record)
            finally:
                stage.teardown()
            return
        it = iter(records)
        window: deque[tuple[Record, Future]] = deque()  # in input order; bounded: memory stays flat
        pool = self._pool(stage, self.workers)
        try:
            while True:
                while len(window) < self.workers * self.in_flight and (record := next(it, None)) is not None:
                    window.append((record, pool.submit(_call, record)))
                if not window:
                    return
                try:
                    outcome = window[0][1].result()
                except BrokenProcessPool:
                    pool.shutdown(wait=False, cancel_futures=True)
                    suspects = list(window)
                    window.clear()
                    yield from self._isolate(stage, suspects)
                    pool = self._pool(stage, self.workers)
                    continue
                window.popleft()
                yield outcome
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def _isolate(self, stage: Stage, suspects: list[tuple[Record, Future]]) -> Iterator[Outcome]:
        """Outcomes of the records in flight when a worker died, in order: finished ones as they
        finished, the rest one at a time in a one-worker pool (the one that kills it is rejected)."""
        probe: ProcessPoolExecutor | None = None
        try:
            for record, future in suspects:
                if future.done() and not future.cancelled() and future.exception() is None:
                    yield future.result()
                    continue
                if future.done() and not future.cancelled() and not isinstance(future.exception(), BrokenProcessPool):
                    raise future.exception()  # type: ignore[misc]  # a TransientFault, a full disk: not a crash
                probe = probe or self._pool(stage, 1)
                try:
                    yield probe.submit(_call, record).result()
                except BrokenProcessPool:
                    probe.shutdown(wait=False, cancel_futures=True)
                    probe = None
                    yield Rejected(f"{stage.name}: {CRASH_REASON}", {"crashed": True})
        finally:
            if probe is not None:
                probe.shutdown(wait=True)

    def close(self) -> None:
        pass


class _StageActor:
    """One Ray actor per worker: the stage is set up once, then processes records."""

    def __init__(self, stage: Stage) -> None:
        _init(stage)

    def process(self, record: Record) -> Outcome:
        return _call(record)


class RayExecutor:
    """Ray actors (an ActorPool, ordered), one per worker; a stage that needs GPUs gets them per actor.
    `address=None` starts a local cluster; "auto" or "ray://host:port" joins a running one."""

    name = "ray"

    def __init__(self, address: str | None = None, workers: int | None = None, in_flight: int = 32,
                 init_kwargs: dict[str, Any] | None = None) -> None:
        import ray

        self.ray = ray
        self._owns = not ray.is_initialized()
        if self._owns:
            ray.init(address=address, include_dashboard=False, log_to_driver=False, **(init_kwargs or {}))
        self.workers = workers or max(1, int(ray.available_resources().get("CPU", 1)))
        self.in_flight = in_flight

    def map(self, stage: Stage, records: Iterable[Record]) -> Iterator[Outcome]:
        from ray.util import ActorPool

        actor = self.ray.remote(num_cpus=1, num_gpus=stage.num_gpus)(_StageActor)
        n = self.workers
        if stage.num_gpus > 0:  # never ask for actors the cluster's GPUs cannot place (the pool would wait forever)
            gpus = self.ray.cluster_resources().get("GPU", 0)
            n = min(n, int(gpus // stage.num_gpus))
            if n < 1:
                raise RuntimeError(f"stage {stage.name} asks {stage.num_gpus} GPU per actor; the Ray cluster has {gpus}")
        actors = [actor.remote(stage) for _ in range(n)]
        try:
            pool = ActorPool(actors)
            for batch in _batches(records, self.workers * self.in_flight):
                yield from pool.map(lambda a, r: a.process.remote(r), batch)
        finally:
            for a in actors:
                self.ray.kill(a)

    def close(self) -> None:
        if self._owns:
            self.ray.shutdown()


def make_executor(kind: str, workers: int | None = None, address: str | None = None) -> Executor:
    if kind == "local":
        return LocalExecutor(workers)
    if kind == "ray":
        try:
            return RayExecutor(address, workers)
        except ImportError as exc:
            raise ValueError("the ray executor needs Ray: pip install 'fedbench[ray]'") from exc
    raise ValueError(f"unknown executor {kind!r}: local or ray")
