"""How many worker processes to start by default: the one rule for scoring, meta, build and reports."""

from __future__ import annotations

import os


def default_workers() -> int:
    """The CPUs this process may run on: the affinity mask where the OS has one (Linux; a container or
    `taskset` may allow fewer than the machine has), else the CPU count (macOS, Windows); at least 1."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)
