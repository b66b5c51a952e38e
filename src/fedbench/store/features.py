"""Feature cache: perception results keyed by image content hash and perception signature.

SQLite in WAL mode: one file, many concurrent readers (the scoring workers) and one writer (the
main process), safe against a crash mid-write. A cache that another process holds locked is waited
for (announced on stderr, bounded by $FEDBENCH_CACHE_TIMEOUT_S, 600 s by default); a path that is a
folder or not a database, and a full disk, are one clear error each. S and G features computed for one model are reused
by every other model scored on the same benchmark.
"""

from __future__ import annotations

import hashlib
import math
import os
import sqlite3
import struct
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from fedbench.faces.perception import ImageFeatures
from fedbench.store.atomic import DiskFullError

T = TypeVar("T")


def content_key(data: bytes, signature_hash: str) -> str:
    return hashlib.sha256(data).hexdigest() + ":" + signature_hash


def pack_optional_float(value: float | None) -> bytes:
    return struct.pack("<d", math.nan if value is None else value)


def unpack_optional_float(blob: bytes) -> float | None:
    (value,) = struct.unpack("<d", blob)
    return None if math.isnan(value) else value


def signature_hash(signature: str) -> str:
    return hashlib.sha256(signature.encode()).hexdigest()[:16]


DEFAULT_BUSY_TIMEOUT_S = 600.0
BUSY_TIMEOUT_ENV = "FEDBENCH_CACHE_TIMEOUT_S"
_SQLITE_WAIT_S = 1.0  # SQLite's own busy handler; past it the loop below says what it waits for


class CacheError(ValueError):
    """The feature cache path is unusable (a folder, not a database) or the cache stayed busy."""


class CacheBusyError(CacheError):
    pass


def busy_timeout_s() -> float:
    """How long a busy cache is waited for: $FEDBENCH_CACHE_TIMEOUT_S, else 600 s."""
    raw = os.environ.get(BUSY_TIMEOUT_ENV)
    if not raw:
        return DEFAULT_BUSY_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        raise CacheError(f"${BUSY_TIMEOUT_ENV}={raw!r} is not a number of seconds") from None
    if value < 0:
        raise CacheError(f"${BUSY_TIMEOUT_ENV} must be >= 0, got {value:g}")
    return value


def _tell(message: str) -> None:
    print(f"fedbench: {message}", file=sys.stderr, flush=True)


class FeatureCache:
    """`timeout_s` bounds the wait for a cache another process holds locked (default: busy_timeout_s());
    the wait is announced once through `on_wait` (stderr by default)."""

    def __init__(self, path: Path, readonly: bool = False, timeout_s: float | None = None,
                 on_wait: Callable[[str], None] | None = _tell) -> None:
        self.path = Path(path)
        self.timeout_s = busy_timeout_s() if timeout_s is None else float(timeout_s)
        self.on_wait = on_wait
        if self.path.is_dir():
            raise CacheError(f"feature cache {self.path} is a folder; give a file path "
                             f"(such as {self.path / 'features.sqlite'})")
        try:
            if readonly:
                self._db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=_SQLITE_WAIT_S)
            else:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._db = sqlite3.connect(self.path, timeout=_SQLITE_WAIT_S)

                def setup() -> None:
                    self._db.execute("PRAGMA journal_mode=WAL")
                    self._db.execute("PRAGMA synchronous=NORMAL")
                    self._db.execute("CREATE TABLE IF NOT EXISTS features (key TEXT PRIMARY KEY, blob BLOB NOT NULL)")
                    self._db.commit()

                self._retry(setup)
            self._retry(lambda: self._db.execute("SELECT 1 FROM features LIMIT 1").fetchall())
        except sqlite3.DatabaseError as exc:
            if isinstance(exc, sqlite3.OperationalError) and _is_full(exc, self.path):
                raise DiskFullError(self.path) from exc
            raise CacheError(f"feature cache {self.path} is not a fedbench feature cache (SQLite): {exc}") from None

    def _retry(self, fn: Callable[[], T]) -> T:
        """Run `fn`, waiting while another process holds the database locked (bounded by timeout_s)."""
        started, told = time.monotonic(), False
        while True:
            try:
                return fn()
            except sqlite3.OperationalError as exc:
                if _is_full(exc, self.path):
                    raise DiskFullError(self.path) from exc
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise
                waited = time.monotonic() - started
                if waited >= self.timeout_s:
                    raise CacheBusyError(
                        f"feature cache {self.path} stayed locked by another process for {waited:.0f} s "
                        f"(limit {self.timeout_s:g} s; raise it with ${BUSY_TIMEOUT_ENV}, or use another --cache)"
                    ) from None
                if not told and self.on_wait is not None:
                    self.on_wait(f"feature cache {self.path} is locked by another process; waiting up to "
                                 f"{self.timeout_s:g} s (${BUSY_TIMEOUT_ENV})")
                    told = True
                time.sleep(0.2)

    def _one(self, sql: str, args: tuple = ()) -> Any:
        return self._retry(lambda: self._db.execute(sql, args).fetchone())

    def get(self, key: str) -> ImageFeatures | None:
        row = self._one("SELECT blob FROM features WHERE key = ?", (key,))
        return None if row is None else ImageFeatures.from_bytes(row[0])

    def get_raw(self, key: str) -> bytes | None:
        """A value that is not an image's features (a pair's background SSIM, say)."""
        row = self._one("SELECT blob FROM features WHERE key = ?", (key,))
        return None if row is None else bytes(row[0])

    def has(self, key: str) -> bool:
        return self._one("SELECT 1 FROM features WHERE key = ?", (key,)) is not None

    def put_many(self, items: list[tuple[str, bytes]]) -> None:
        if not items:
            return

        def put() -> None:
            with self._db:  # one transaction: rolled back whole when the lock is not had
                self._db.executemany("INSERT OR REPLACE INTO features (key, blob) VALUES (?, ?)", items)

        self._retry(put)

    def __len__(self) -> int:
        return int(self._one("SELECT COUNT(*) FROM features")[0])

    def close(self) -> None:
        self._db.close()


def _is_full(exc: sqlite3.OperationalError, path: Path) -> bool:
    """SQLite says "database or disk is full", or (journal writes) a bare "disk I/O error" on a full disk."""
    text = str(exc)
    if "disk is full" in text:
        return True
    if "disk I/O error" in text:
        import shutil

        try:
            return shutil.disk_usage(path.parent).free < (1 << 20)
        except OSError:
            return False
    return False
