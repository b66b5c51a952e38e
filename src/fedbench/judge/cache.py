"""Judge answers kept beside the feature cache (same SQLite file, own table, WAL like store/features.py).

Key: judge config hash, prompt version, image sha256 and the actions asked. A second model scored on
the same benchmark pays only for its own edited images (S and G answers are shared), and a resumed run
pays for nothing twice. Only answers (`ok`) and refusals are kept: a failed call is tried again next run.
"""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

from fedbench.judge.schema import JudgeAnswer

KEPT = ("ok", "judge_refused")


def answer_key(config_hash: str, prompt_version: str, image_sha256: str, actions: list[str]) -> str:
    asked = hashlib.sha256(",".join(sorted(actions)).encode()).hexdigest()[:12]
    return f"judge:{config_hash}:{prompt_version}:{image_sha256}:{asked}"


def image_sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


class JudgeCache:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # check_same_thread=False: judge threads read it; writes happen only in the calling thread.
        self._db = sqlite3.connect(self.path, timeout=60, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS judge_answers (key TEXT PRIMARY KEY, answer TEXT NOT NULL)")
        self._db.commit()

    def get(self, key: str) -> JudgeAnswer | None:
        row = self._db.execute("SELECT answer FROM judge_answers WHERE key = ?", (key,)).fetchone()
        return None if row is None else JudgeAnswer.from_json(row[0])

    def put(self, key: str, answer: JudgeAnswer) -> None:
        if answer.status in KEPT:
            with self._db:
                self._db.execute("INSERT OR REPLACE INTO judge_answers (key, answer) VALUES (?, ?)",
                                 (key, answer.to_json()))

    def __len__(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM judge_answers").fetchone()[0])

    def close(self) -> None:
        self._db.close()
