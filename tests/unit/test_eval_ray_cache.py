"""Which feature cache a Ray editor actor uses (fedbench.eval_ray.actor_cache_path): the run's on the
driver's machine, a private one elsewhere (an SQLite WAL file cannot be shared between machines)."""

from __future__ import annotations

from pathlib import Path

from fedbench.eval_ray import actor_cache_path


def test_actor_on_the_drivers_node_shares_the_runs_cache(tmp_path: Path) -> None:
    assert actor_cache_path("/runs/a/features.sqlite", "node-1", "node-1", tmp_path) == "/runs/a/features.sqlite"
    assert actor_cache_path(None, "node-1", "node-1", tmp_path) is None  # the default cache, as a local run


def test_actor_on_another_node_gets_its_own_file(tmp_path: Path) -> None:
    for run_cache in ("/runs/a/features.sqlite", None):
        path = actor_cache_path(run_cache, "node-1", "node-2", tmp_path / "actor")
        assert path == str(tmp_path / "actor" / "features.sqlite")
