"""One process per run folder: an advisory lock on `<folder>/.fedbench.lock` holding the owner's PID.

A second `fedbench eval` / `score` on the same `--out` is refused with the holder's PID, or waits
for it with `--wait`. The lock is the kernel's (flock / LockFileEx): it is released when the holder
exits, SIGKILL included, so a stale lock file never blocks a later run. Re-entrant within a process
(`eval` locks its folder and then scores into it).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

LOCK_NAME = ".fedbench.lock"
_held: dict[Path, tuple[IO[Any], int]] = {}
_guard = threading.Lock()


class FolderBusyError(RuntimeError):
    """Another process holds the folder's lock."""


def _try_lock(fh: IO[Any]) -> bool:
    if sys.platform == "win32":
        import msvcrt

        try:
            fh.seek(0)
            msvcrt.locking(fh.fileno(), msvcrt.LK_NBLCK, 1)
            return True
        except OSError:
            return False
    import fcntl

    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


def holder(folder: Path) -> str:
    """What the lock file says about its holder ("process 1234 on host, since ..."), or "another process"."""
    try:
        text = (Path(folder) / LOCK_NAME).read_text(encoding="utf-8").strip()
    except OSError:
        text = ""
    return text or "another process"


def is_locked(folder: Path) -> bool:
    """True when another process holds `folder`'s lock; creates nothing."""
    path = Path(folder) / LOCK_NAME
    if Path(folder).resolve() in _held or not path.is_file():
        return False
    with open(path, "a+", encoding="utf-8") as fh:
        if _try_lock(fh):
            return False  # closing the file releases the probe's lock
        return True


@contextmanager
def folder_lock(folder: Path | str, wait: bool = False, timeout_s: float | None = None,
                on_wait: Callable[[str], None] | None = None, poll_s: float = 0.25) -> Iterator[None]:
    """Hold `folder`'s lock for the block. Busy: FolderBusyError naming the holder, or (wait=True)
    poll until it is free — for at most `timeout_s` seconds when given — telling `on_wait` once."""
    folder = Path(folder).resolve()
    with _guard:
        if folder in _held:
            fh, depth = _held[folder]
            _held[folder] = (fh, depth + 1)
            reentrant = True
        else:
            reentrant = False
    if reentrant:
        try:
            yield
        finally:
            _release(folder)
        return
    folder.mkdir(parents=True, exist_ok=True)
    fh = open(folder / LOCK_NAME, "a+", encoding="utf-8")
    started, told = time.monotonic(), False
    try:
        while not _try_lock(fh):
            who = holder(folder)
            if not wait:
                raise FolderBusyError(f"{folder} is in use by {who}; wait for it to finish, or pass --wait")
            if timeout_s is not None and time.monotonic() - started > timeout_s:
                raise FolderBusyError(f"{folder} is still in use by {who} after waiting {timeout_s:g} s")
            if not told and on_wait is not None:
                on_wait(f"{folder} is in use by {who}; waiting for it to finish (Ctrl-C to stop)")
                told = True
            time.sleep(poll_s)
    except BaseException:
        fh.close()
        raise
    fh.seek(0)
    fh.truncate()
    fh.write(f"process {os.getpid()} on {_host()}, since {time.strftime('%Y-%m-%dT%H:%M:%S%z')}\n")
    fh.flush()
    with _guard:
        _held[folder] = (fh, 1)
    try:
        yield
    finally:
        _release(folder)


def _release(folder: Path) -> None:
    with _guard:
        fh, depth = _held[folder]
        if depth > 1:
            _held[folder] = (fh, depth - 1)
            return
        del _held[folder]
    try:
        fh.seek(0)
        fh.truncate()  # the holder's line goes with the lock (the file stays: unlinking it would race)
    except OSError:
        pass
    fh.close()  # closing releases the kernel lock


def _host() -> str:
    import socket

    return socket.gethostname()
