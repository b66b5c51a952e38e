"""The stage protocol. A stage turns one record into zero or more records, or rejects it with a
reason. Stages are plain picklable objects: the same code runs in-process, in a local process pool
or in Ray actors; `setup` loads heavy state (models, editors) once per worker."""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from fedbench.engine.config import BuildConfig

Record = dict[str, Any]


@dataclass
class Rejected:
    reason: str
    details: dict[str, Any] = field(default_factory=dict)


Outcome = list[Record] | Rejected


class Stage(ABC):
    name: ClassVar[str]
    mapped: ClassVar[bool] = True  # False: the stage needs every record at once and runs in the main process
    num_gpus: ClassVar[float] = 0.0

    def __init__(self, config: BuildConfig, root: Path) -> None:
        self.config = config
        self.root = Path(root)  # the build folder (work files live under root / "work")

    @property
    def work(self) -> Path:
        return self.root / "work"

    def setup(self) -> None:
        """Load models once per worker process or actor."""

    def teardown(self) -> None:
        """Free what setup loaded."""

    @abstractmethod
    def process(self, record: Record) -> Outcome: ...

    def __getstate__(self) -> dict[str, Any]:
        # Heavy state never travels to workers: each worker calls setup() itself.
        return {"config": self.config, "root": self.root}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["config"], state["root"])  # type: ignore[misc]


def short_hash(*parts: object, n: int = 10) -> str:
    return hashlib.sha256("\x1f".join(map(str, parts)).encode()).hexdigest()[:n]

