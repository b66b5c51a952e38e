"""Atomic result files: a reader sees the old file or the complete new one, never a cut one.

Every result file (summary.json, run.json, samples.jsonl, manifests, generated images, markers) is
written to a unique hidden temporary file beside its destination, fsynced, then renamed over it. On
any failure the temporary file is removed, so a full disk leaves nothing behind; ENOSPC / EDQUOT
become one `DiskFullError` whose message says what could not be written and what to do.
"""

from __future__ import annotations

import errno
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

_FULL = {errno.ENOSPC, errno.EDQUOT} if hasattr(errno, "EDQUOT") else {errno.ENOSPC}


class DiskFullError(OSError):
    """No space (or quota) left while writing a result; nothing partial was kept."""

    def __init__(self, path: Path | str, cause: OSError | None = None) -> None:
        code = cause.errno if cause is not None and cause.errno else errno.ENOSPC
        super().__init__(code, f"no space left on the device while writing {path}; nothing partial was kept. "
                               "Free some space and run the same command again (eval: add --resume)")
        self.path = Path(path)

    def __str__(self) -> str:
        return str(self.strerror)


def is_disk_full(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in _FULL


@contextmanager
def atomic_open(path: Path | str, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO[Any]]:
    """Write `path` through a temporary file that replaces it only when the block ends without error."""
    path = Path(path)
    binary = "b" in mode
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb" if binary else "w", encoding=None if binary else encoding,
                       newline=None if binary else "") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; results are ordinary files
        os.replace(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if is_disk_full(exc) and not isinstance(exc, DiskFullError):
            raise DiskFullError(path, exc) from exc  # type: ignore[arg-type]
        raise


def write_bytes_atomic(path: Path | str, data: bytes) -> None:
    with atomic_open(path, "wb") as fh:
        fh.write(data)


def write_text_atomic(path: Path | str, text: str) -> None:
    with atomic_open(path, "w") as fh:
        fh.write(text)


def write_json_atomic(path: Path | str, value: Any, **dumps: Any) -> None:
    """`json.dumps(value, **dumps)` plus a final newline, atomically."""
    write_text_atomic(path, json.dumps(value, **dumps) + "\n")


def copy_atomic(src: Path | str, dest: Path | str, chunk: int = 1 << 20) -> None:
    """Copy a file so that `dest` is complete or absent (streamed: large files stay out of memory)."""
    with open(src, "rb") as fin, atomic_open(dest, "wb") as fout:
        while block := fin.read(chunk):
            fout.write(block)


def remove_stale_temps(folder: Path | str) -> int:
    """Delete temporary files a killed writer left in `folder` (not recursive); returns how many."""
    n = 0
    for p in Path(folder).glob(".*.tmp"):
        p.unlink(missing_ok=True)
        n += 1
    return n


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _umask()  # read once at import: os.umask is process-wide and not safe to flip under threads
