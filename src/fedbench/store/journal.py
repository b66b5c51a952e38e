"""Append-only JSONL journals: the generation log of an eval run (`generations.jsonl`) and the
per-stage work logs of a build.

Each row is flushed and fsynced as it is written (after any file it points at is in place), so a
process killed at any instant — SIGKILL included — leaves at worst one torn last line, which
`repair` removes. `compact` rewrites a journal with exactly one row per id, in a given order,
atomically.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable, Iterator

from fedbench.store.atomic import DiskFullError, atomic_open, is_disk_full


def generation_key(config_hash: str, seed: int, sample_id: str, request_digest: str) -> str:
    """What decides one generated image: the editor's resolved config, the seed, the sample, and the
    request's own content (source bytes, instruction, target; G's bytes for probes that read it).
    The run's name is not part of it: renaming a config reuses its images."""
    return f"{config_hash}:{seed}:{sample_id}:{request_digest}"


def repair(path: Path, block: int = 1 << 16) -> int:
    """Drop a torn last line (a crash mid-write). Returns the bytes dropped. Reads backwards from the
    end a block at a time, so a long journal is never loaded whole (memory stays flat on resume)."""
    if not path.exists():
        return 0
    with open(path, "r+b") as fh:
        size = fh.seek(0, os.SEEK_END)
        pos = size
        while pos > 0:
            start = max(0, pos - block)
            fh.seek(start)
            chunk = fh.read(pos - start)
            i = chunk.rfind(b"\n")
            if i >= 0:
                cut = start + i + 1
                break
            pos = start
        else:
            cut = 0
        if cut < size:
            fh.truncate(cut)
        return size - cut


def iter_rows(path: Path, required: tuple[str, ...] = ("id",)) -> Iterator[dict[str, Any]]:
    """Every complete row, streamed (a torn or invalid line is skipped: its work is done again)."""
    if not path.exists():
        return
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(row, dict) and all(k in row for k in required):
                yield row


def read_rows(path: Path, required: tuple[str, ...] = ("id", "key")) -> list[dict[str, Any]]:
    return list(iter_rows(path, required))


class Journal:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        repair(self.path)
        self._fh = open(self.path, "a", encoding="utf-8")

    def append(self, row: dict[str, Any]) -> None:
        try:
            self._fh.write(json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n")
            self._fh.flush()
            os.fsync(self._fh.fileno())
        except OSError as exc:  # a full disk: at worst a torn last line, which `repair` drops on resume
            if is_disk_full(exc):
                raise DiskFullError(self.path, exc) from exc
            raise

    def close(self) -> None:
        try:
            self._fh.close()
        except OSError as exc:  # the buffered tail could not be written: same as a torn line
            if is_disk_full(exc):
                raise DiskFullError(self.path, exc) from exc
            raise

    def __enter__(self) -> "Journal":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def compact(path: Path, order: Iterable[str]) -> list[dict[str, Any]]:
    """Rewrite the log with the last row of each id, atomically: the ids of `order` first, in that
    order (returned), then any other ids as they were (a `--limit` run keeps the rest's work)."""
    latest: dict[str, dict[str, Any]] = {}
    for row in read_rows(path):
        latest[row["id"]] = row
    wanted = list(order)
    rows = [latest[i] for i in wanted if i in latest]
    rest = [r for i, r in latest.items() if i not in set(wanted)]
    with atomic_open(path) as fh:
        for r in rows + rest:
            fh.write(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n")
    return rows
