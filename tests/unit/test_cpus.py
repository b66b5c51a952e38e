"""One default worker count for scoring, the build and reports, also where the OS has no affinity mask."""

from __future__ import annotations

import os

import pytest

from fedbench import cpus
from fedbench.engine.executors import LocalExecutor
from fedbench.scoring import runner


def test_the_affinity_mask_where_there_is_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 3, 5}, raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    assert cpus.default_workers() == 3


def test_the_cpu_count_off_linux(monkeypatch: pytest.MonkeyPatch) -> None:
    """macOS and Windows have no sched_getaffinity: the build's executor used to fail there."""
    monkeypatch.delattr(os, "sched_getaffinity", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 6)
    assert cpus.default_workers() == 6
    assert LocalExecutor().workers == 6
    monkeypatch.setattr(os, "cpu_count", lambda: None)  # unknown: one worker, never zero
    assert cpus.default_workers() == 1


def test_scoring_uses_the_same_rule() -> None:
    assert runner.default_workers is cpus.default_workers
