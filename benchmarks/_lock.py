"""One benchmark run at a time per machine: two copies ruin each other's timings, so a second one waits."""

from __future__ import annotations

import fcntl
from pathlib import Path
from typing import IO


def hold_exclusive(lock_file: Path, name: str) -> IO[str]:
    """Take the lock (waiting, with a message, while another run holds it); keep the returned file open."""
    lock = open(lock_file, "w")  # noqa: SIM115 - held for the life of the process
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print(f"another {name} run holds {lock_file}; waiting for it to finish", flush=True)
        fcntl.flock(lock, fcntl.LOCK_EX)
    return lock
