"""The generation log of an eval run: `generations.jsonl`, one JSON row per generated sample.

Append-only while a run goes (each row flushed and fsynced after its image is in place), so a run
killed at any instant — SIGKILL included — leaves at worst one torn last line, which `repair`
removes. Rows are keyed by editor name + config hash + seed + sample id; `compact` rewrites the log
with exactly one row per sample, in manifest order, atomically.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable


def generation_key(editor: str, config_hash: str, seed: int, sample_id: str) -> str:
    return f"{editor}:{config_hash}:{seed}:{sample_id}"


def repair(path: Path) -> int:
    """Drop a torn last line (a crash mid-write). Returns the bytes dropped."""
    if not path.exists():
        return 0
    data = path.read_bytes()
    cut = data.rfind(b"\n") + 1
    if cut == len(data):
        return 0
    with open(path, "r+b") as fh:
        fh.truncate(cut)
    return len(data) - cut


def read_rows(path: Path) -> list[dict[str, Any]]:
    """Every complete row (a torn or invalid line is skipped: its sample is generated again)."""
    if not path.exists():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict) and "key" in row and "id" in row:
            rows.append(row)
    return rows


class GenerationLog:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        repair(self.path)
        self._fh = open(self.path, "a", encoding="utf-8")

    def append(self, row: dict[str, Any]) -> None:
        self._fh.write(json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> "GenerationLog":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def compact(path: Path, order: Iterable[str]) -> list[dict[str, Any]]:
    """Rewrite the log with the last row of each sample, in `order` (ids), atomically."""
    latest: dict[str, dict[str, Any]] = {}
    for row in read_rows(path):
        latest[row["id"]] = row
    rows = [latest[i] for i in order if i in latest]
    tmp = path.with_suffix(".jsonl.tmp")
    tmp.write_text("".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in rows), encoding="utf-8")
    os.replace(tmp, path)
    return rows
