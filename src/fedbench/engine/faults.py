"""Which errors in a build are the input's fault, and which are the machine's.

A rejected candidate is journaled and never retried, so only the input's own trouble may become a
rejection. Transient faults (out of memory, a busy SQLite database, a dropped connection, a timeout)
are retried a bounded number of times; when they persist the build stops with `TransientFault`,
nothing is journaled for that record, and a resumed build tries it again. A full disk stops the
build at once (resumable too).
"""

from __future__ import annotations

import errno
import sqlite3
import time
from collections.abc import Callable

from fedbench.engine.stage import Outcome, Record, Rejected, Stage
from fedbench.store.atomic import DiskFullError, is_disk_full

TRANSIENT_RETRIES = 3  # attempts after the first
BACKOFF_S = 0.5  # doubled per retry: 0.5, 1, 2 s
_TRANSIENT_ERRNOS = {errno.EAGAIN, errno.EBUSY, errno.EINTR, errno.ENOMEM, errno.ETIMEDOUT, errno.ECONNRESET,
                     errno.ECONNREFUSED, errno.ECONNABORTED, errno.EPIPE, errno.EMFILE, errno.ENFILE}


class TransientFault(RuntimeError):
    """A record kept failing for reasons outside it; the build stopped, resumable, nothing journaled."""

    def __init__(self, message: str) -> None:  # one str argument: it crosses process boundaries by pickle
        super().__init__(message)


def is_transient(exc: BaseException) -> bool:
    """True for faults of the machine, not of the input (asking again may succeed)."""
    from fedbench.store.features import CacheBusyError

    if isinstance(exc, (MemoryError, TimeoutError, ConnectionError, CacheBusyError)):
        return True
    if isinstance(exc, sqlite3.OperationalError):
        text = str(exc)
        return "locked" in text or "busy" in text
    if isinstance(exc, OSError):
        return exc.errno in _TRANSIENT_ERRNOS
    name = type(exc).__name__
    # torch.cuda.OutOfMemoryError / onnxruntime / cv2 out-of-memory errors, without importing them
    return "OutOfMemory" in name or "out of memory" in str(exc).lower()


def is_fatal(exc: BaseException) -> bool:
    """Faults that end the build at once (no retry helps, and no input is to blame)."""
    return isinstance(exc, DiskFullError) or is_disk_full(exc)


def process_with_retries(stage: Stage, record: Record, retries: int = TRANSIENT_RETRIES,
                         backoff_s: float | None = None, sleep: Callable[[float], None] | None = None) -> Outcome:
    """`stage.process(record)`: the input's own errors become a Rejected; transient faults are retried
    `retries` times, then raised as TransientFault; a full disk is raised as it is."""
    backoff_s = BACKOFF_S if backoff_s is None else backoff_s
    sleep = sleep or time.sleep
    for attempt in range(retries + 1):
        try:
            return stage.process(record)
        except Exception as exc:
            if is_fatal(exc):
                raise
            if not is_transient(exc):  # a bad record is a rejection with the error, never a crashed build
                return Rejected(f"{stage.name} failed: {type(exc).__name__}: {exc}")
            if attempt == retries:
                raise TransientFault(
                    f"stage {stage.name}, record {record.get('id')!r}: {type(exc).__name__}: {exc} "
                    f"(still failing after {retries} retries; nothing was journaled for it, run the same "
                    "build again to resume)") from None
            sleep(backoff_s * (2 ** attempt))
    raise AssertionError("unreachable")
