"""Feature cache: perception results keyed by image content hash and perception signature.

SQLite in WAL mode: one file, many concurrent readers (the scoring workers) and one writer (the
main process), safe against a crash mid-write. S and G features computed for one model are reused
by every other model scored on the same benchmark.
"""

from __future__ import annotations

import hashlib
import math
import sqlite3
import struct
from pathlib import Path

from fedbench.faces.perception import ImageFeatures


def content_key(data: bytes, signature_hash: str) -> str:
    return hashlib.sha256(data).hexdigest() + ":" + signature_hash


def pack_optional_float(value: float | None) -> bytes:
    return struct.pack("<d", math.nan if value is None else value)


def unpack_optional_float(blob: bytes) -> float | None:
    (value,) = struct.unpack("<d", blob)
    return None if math.isnan(value) else value


def signature_hash(signature: str) -> str:
    return hashlib.sha256(signature.encode()).hexdigest()[:16]


class FeatureCache:
    def __init__(self, path: Path, readonly: bool = False) -> None:
        self.path = Path(path)
        if readonly:
            self._db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=60)
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, timeout=60)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("CREATE TABLE IF NOT EXISTS features (key TEXT PRIMARY KEY, blob BLOB NOT NULL)")
            self._db.commit()

    def get(self, key: str) -> ImageFeatures | None:
        row = self._db.execute("SELECT blob FROM features WHERE key = ?", (key,)).fetchone()
        return None if row is None else ImageFeatures.from_bytes(row[0])

    def get_raw(self, key: str) -> bytes | None:
        """A value that is not an image's features (a pair's background SSIM, say)."""
        row = self._db.execute("SELECT blob FROM features WHERE key = ?", (key,)).fetchone()
        return None if row is None else bytes(row[0])

    def has(self, key: str) -> bool:
        return self._db.execute("SELECT 1 FROM features WHERE key = ?", (key,)).fetchone() is not None

    def put_many(self, items: list[tuple[str, bytes]]) -> None:
        if items:
            with self._db:
                self._db.executemany("INSERT OR REPLACE INTO features (key, blob) VALUES (?, ?)", items)

    def __len__(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM features").fetchone()[0])

    def close(self) -> None:
        self._db.close()
