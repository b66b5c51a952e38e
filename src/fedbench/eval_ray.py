"""`fedbench eval --executor ray`: generation spread over Ray actors, one editor per GPU.

Each actor builds and loads the editor once (`--gpus-per-editor` GPUs each; one actor per CPU slot on
a cluster without GPUs) and answers edit requests. The driver keeps every actor two requests deep and
writes each result to the run's one generation log as it arrives (`fedbench.evaluate.generate`), so
the log is as crash-safe as a local run's and `--resume` works the same. Every request carries its
own seed, so which actor serves it does not change its image. Progress shows each actor's count and
throughput.

The run's feature cache (`--cache`; the warp editor keeps source landmarks there, as in a local
run) reaches the actors on the driver's machine as is: it is SQLite in WAL mode, whose writers are
serialised by file locks on one machine, and FeatureCache waits while another process holds the
lock, so several actor processes writing landmarks cannot corrupt it. WAL needs memory shared by
every process using the file, which processes on other machines do not have, even when the path
is on a network file system they all see; so an actor on another node keeps its landmarks in a
private cache file of its own (removed when it closes). Where landmarks are stored never changes
what they are, so the images are the same either way; the actors are closed (flushing their
writes) before the run is scored, so the scoring finds the sources the actors perceived.
"""

from __future__ import annotations

import os
import socket
import tempfile
import time
from collections import deque
from pathlib import Path
from typing import Any, Iterator

from rich.console import Console

from fedbench.editors.base import EditRequest, EditResult
from fedbench.editors.config import EditorConfig

IN_FLIGHT = 2  # requests queued per actor: the next one is waiting while the current one runs


def actor_cache_path(run_cache: str | None, driver_node: str, node: str, scratch: Path) -> str | None:
    """The feature cache an editor actor on `node` uses: the run's (None: the default cache, as a local
    run's editor uses) on the driver's node; on another node a private file under `scratch`, since an
    SQLite WAL file cannot be shared safely between machines (see the module docstring)."""
    if node == driver_node:
        return run_cache
    return str(scratch / "features.sqlite")


class _EditorActor:
    """One editor, loaded once per actor process."""

    def __init__(self, config: dict[str, Any], cache_path: str | None = None, driver_node: str = "") -> None:
        import ray

        from fedbench.editors.registry import build_editor

        self._scratch = tempfile.TemporaryDirectory(prefix="fedbench-ray-actor-")
        node = ray.get_runtime_context().get_node_id()
        self.cache_path = actor_cache_path(cache_path, driver_node or node, node, Path(self._scratch.name))
        self.editor = build_editor(EditorConfig(**config))
        if self.cache_path is not None:  # as evaluate() does
            self.editor.use_feature_cache(self.cache_path)
        self.editor.load()

    def feature_cache(self) -> str | None:
        return self.cache_path

    def close(self) -> None:
        """Free the editor and write what it perceived to the feature cache (ray.kill would drop it)."""
        try:
            self.editor.close()
        finally:
            self._scratch.cleanup()

    def where(self) -> str:
        import ray

        gpus = ray.get_gpu_ids()
        return f"{socket.gethostname()}:{os.getpid()}" + (f" gpu {','.join(map(str, gpus))}" if gpus else "")

    def edit(self, request: EditRequest) -> tuple[EditResult, float]:
        from fedbench.evaluate import _run_one  # the same guard and checks as a local run

        return _run_one(self.editor, request)


class RayDispatch:
    """Callable for `generate(dispatch=...)`: yields (item, result, seconds) as actors finish."""

    def __init__(self, config: EditorConfig, *, address: str | None = None, gpus_per_editor: float = 1.0,
                 actors: int | None = None, console: Console | None = None,
                 cache_path: str | Path | None = None) -> None:
        try:
            import ray
        except ImportError as exc:
            raise ValueError("the ray executor needs Ray: pip install 'fedbench[ray]'") from exc
        self.ray = ray
        self.console = console or Console(stderr=True)
        self._owns = not ray.is_initialized()
        if self._owns:  # None starts a local instance; "auto" or "ray://host:port" joins a cluster
            ray.init(address=address, include_dashboard=False, log_to_driver=False)
        resources = ray.cluster_resources()
        gpus = resources.get("GPU", 0)
        if gpus_per_editor > 0 and gpus >= gpus_per_editor:
            n, options = int(gpus // gpus_per_editor), {"num_cpus": 1, "num_gpus": gpus_per_editor}
        else:  # no GPU (or none asked for): one actor per CPU slot
            n, options = max(1, int(resources.get("CPU", 1))), {"num_cpus": 1}
        n = min(n, actors) if actors else n
        remote = ray.remote(**options)(_EditorActor)
        driver_node = ray.get_runtime_context().get_node_id()
        cache = str(Path(cache_path).expanduser().resolve()) if cache_path is not None else None
        self.actors = [remote.remote(config.model_dump(), cache, driver_node) for _ in range(n)]
        try:
            # loading happens here, so a model that cannot load fails the run before any folder is written
            self.names = ray.get([a.where.remote() for a in self.actors])
        except Exception:
            self.close()
            raise
        self.console.print(f"ray: {n} editor actor(s) ({options}) on {len(ray.nodes())} node(s)")

    def __call__(self, requests: list[tuple[Any, EditRequest]],
                 bar: Any = None) -> Iterator[tuple[Any, EditResult, float]]:
        ray = self.ray
        queue = deque(requests)
        pending: dict[Any, tuple[int, Any]] = {}  # object ref -> (actor index, item)
        done = [0] * len(self.actors)
        t0 = time.perf_counter()
        tasks = [bar.add_task(f"  actor {i} ({name})", total=None) if bar else None
                 for i, name in enumerate(self.names)]

        dead: set[int] = set()

        def submit(i: int) -> None:
            while i not in dead and queue and sum(1 for a, _ in pending.values() if a == i) < IN_FLIGHT:
                item, request = queue.popleft()
                pending[self.actors[i].edit.remote(request)] = (i, item)

        try:
            for i in range(len(self.actors)):
                submit(i)
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                ref = ready[0]
                i, item = pending.pop(ref)
                try:
                    result, seconds = ray.get(ref)
                except ray.exceptions.RayActorError as exc:  # the actor died (OOM, node lost): this sample
                    dead.add(i)  # fails (tried again on --resume) and the actor gets no more work
                    result, seconds = EditResult.failed(f"ray actor {i} died: {type(exc).__name__}: {exc}"), 0.0
                result.details = {**(result.details or {}), "ray_actor": self.names[i]}  # provenance, in the log
                done[i] += 1
                if bar:
                    rate = done[i] / max(time.perf_counter() - t0, 1e-9)
                    bar.update(tasks[i], completed=done[i],
                               description=f"  actor {i} ({self.names[i]}): {rate:.2f} img/s")
                yield item, result, seconds
                submit(i)
                if queue and not pending:
                    raise RuntimeError(f"every Ray editor actor died; {len(queue)} request(s) not run "
                                       "(rerun with --resume)")
        finally:
            for ref in pending:  # Ctrl-C or an error upstream: queued work is dropped, not awaited
                try:
                    ray.cancel(ref)
                except Exception:  # already finished, or its actor is gone: nothing to cancel
                    pass

    def close(self) -> None:
        actors = getattr(self, "actors", [])
        try:  # let each actor flush its feature-cache writes; a dead one has nothing to flush
            self.ray.get([a.close.remote() for a in actors], timeout=120)
        except Exception:  # noqa: BLE001 - a dead or stuck actor must not keep the others alive
            pass
        for a in actors:
            self.ray.kill(a)
        self.actors = []
        if self._owns:
            self.ray.shutdown()
