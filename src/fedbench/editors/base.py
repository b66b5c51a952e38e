"""The Editor protocol: one request (source image, instruction, target, seed) -> one result.

An editor returns an image or a named status; it never raises for a single sample's trouble (the
run records the status and goes on). Editors never compute scores.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, ClassVar

import numpy as np


def decode_full(data: bytes) -> np.ndarray:
    """RGB uint8 at the image's own size: editors edit full resolution (the decoder's pixel cap applies)."""
    from fedbench.data.images import decode_image

    return decode_image(data, max_side=1 << 16).rgb


class EditStatus(str, Enum):
    OK = "ok"
    REFUSED = "refused"  # the model declined (content filter, policy): its own status, never a low score
    FAILED = "generation_failed"  # the adapter could not produce an image (error, timeout, give-up)


@dataclass(frozen=True)
class EditRequest:
    sample_id: str
    source: Path
    instruction: str
    target: str
    seed: int
    source_expression: str | None = None
    ground_truth: Path | None = None  # only probes read it (oracle, pixel-blend); model adapters must not

    def source_rgb(self) -> np.ndarray:
        return decode_full(self.source.read_bytes())

    def ground_truth_rgb(self) -> np.ndarray:
        if self.ground_truth is None:
            raise ValueError(f"{self.sample_id}: this editor needs the ground truth, which the request lacks")
        return decode_full(self.ground_truth.read_bytes())


@dataclass
class EditResult:
    status: EditStatus
    image: np.ndarray | None = None  # H x W x 3 uint8 RGB when status is OK
    reason: str | None = None
    details: dict[str, Any] = field(default_factory=dict)  # adapter facts for provenance (attempts, http codes)

    @classmethod
    def ok(cls, image: np.ndarray, **details: Any) -> "EditResult":
        return cls(EditStatus.OK, np.ascontiguousarray(image, dtype=np.uint8), None, details)

    @classmethod
    def refused(cls, reason: str, **details: Any) -> "EditResult":
        return cls(EditStatus.REFUSED, None, reason, details)

    @classmethod
    def failed(cls, reason: str, **details: Any) -> "EditResult":
        return cls(EditStatus.FAILED, None, reason, details)

    def scrubbed(self, secrets: tuple[str, ...] = ()) -> "EditResult":
        """The same result with secrets (the given values, header values, key-shaped tokens) removed
        from its reason and details: what an adapter returns leaves it through here."""
        from fedbench.editors.secrets import scrub, scrub_value

        reason = None if self.reason is None else scrub(self.reason, secrets)
        return EditResult(self.status, self.image, reason, scrub_value(self.details, secrets))


class Editor(ABC):
    """Subclass, set `version`, implement `edit`; register with @register_editor("name") (the name is
    the config's `adapter`; the registry never modifies the class).

    `version` names the behaviour: bump it when the same parameters would give different images,
    so cached generations are not reused across it.
    """

    version: ClassVar[str] = "1"
    description: ClassVar[str] = ""
    reads_ground_truth: ClassVar[bool] = False  # probes only: marked in provenance
    cacheable: ClassVar[bool] = True  # False: re-run on every eval (cheap, and its inputs may change)
    thread_safe: ClassVar[bool] = False  # True: `eval --jobs N` may call edit() from N threads at once

    def __init__(self, **params: Any) -> None:
        self.params = params

    def load(self) -> None:
        """Load models or open sessions now. `fedbench eval` calls it before the first sample, so a
        model that cannot load (a typo in its id, no network, no GPU) stops the run with its error
        instead of failing every sample. Editors that load lazily override it."""

    @abstractmethod
    def edit(self, request: EditRequest) -> EditResult: ...

    def use_feature_cache(self, cache_path: str | Path | None) -> None:
        """The run's feature cache (`fedbench eval --cache`), for editors that perceive their inputs
        (warp keeps source landmarks there). Called before `load`; most editors perceive nothing."""

    def secret_values(self) -> tuple[str, ...]:
        """Values (API keys, tokens) that must never reach a record; scrubbed from every result."""
        return ()

    def libraries(self) -> dict[str, str]:
        """Versions of the libraries that shape this editor's output (for provenance)."""
        return {}

    def close(self) -> None:
        """Free models, sessions and processes."""

    def __enter__(self) -> "Editor":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
