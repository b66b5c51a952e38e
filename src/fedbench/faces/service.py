"""The one way fedbench perceives an image: bytes -> ImageFeatures through the content-keyed cache.

Scoring, the build engine, meta, the warp editor, the probes and warp training all go through a
`PerceptionService`, so an image perceived by any of them is found in the cache by all the others
(the key is the sha256 of the file's bytes plus the perception signature, see
`PerceptionConfig.signature`). The backbones load on the first cache miss, not before: a run whose
images are all cached never loads a model.

Two modes:
- writer (the default): new features go into the cache, in batches (`flush`, `close`);
- read-only (`readonly=True`, scoring's pool workers): new features are only handed back as blobs in
  `Perceived.blob`, and the caller forwards them to the single writer in the main process.
"""

from __future__ import annotations

import os

# MediaPipe and TFLite log every model load at INFO/WARNING level from C++; keep the console for progress.
os.environ.setdefault("GLOG_minloglevel", "2")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fedbench.data.images import ImageReadError, decode_image
from fedbench.faces.perception import ImageFeatures, PerceptionConfig, Perceiver
from fedbench.paths import features_db
from fedbench.store.features import FeatureCache, content_key, signature_hash

WRITE_BATCH = 64  # rows per cache transaction (one commit per row is slow)


@dataclass
class Perceived:
    """One image: its cache key and features (blob when newly computed), or a problem."""

    key: str | None
    features: ImageFeatures | None
    blob: bytes | None
    rgb: np.ndarray | None
    problem: str | None


class PerceptionService:
    """Cached perception of image files or bytes with one configuration and one feature cache."""

    def __init__(self, config: PerceptionConfig | None = None, cache_path: str | Path | None = None, *,
                 readonly: bool = False, threads: int = 1) -> None:
        self.config = config or PerceptionConfig()
        self.cache_path = Path(cache_path) if cache_path else features_db()
        self.readonly = readonly
        self.cache = FeatureCache(self.cache_path, readonly=readonly)
        self.sig = signature_hash(self.config.signature())
        self.threads = threads
        self.perceived = 0  # images this service ran the backbones on (the rest came from the cache)
        self._perceiver: Perceiver | None = None
        self._pending: dict[str, tuple[bytes, ImageFeatures]] = {}  # written at the next flush

    # --- the backbones --------------------------------------------------------------------------

    @property
    def perceiver(self) -> Perceiver:
        """The backbones, loaded on first use."""
        if self._perceiver is None:
            self._perceiver = Perceiver(self.config, threads=self.threads)
        return self._perceiver

    @property
    def identity_threshold(self) -> float:
        return self.perceiver.identity_threshold

    # --- perceiving -----------------------------------------------------------------------------

    def key(self, data: bytes) -> str:
        return content_key(data, self.sig)

    def _cached(self, key: str) -> ImageFeatures | None:
        pending = self._pending.get(key)
        return pending[1] if pending is not None else self.cache.get(key)

    def perceive(self, data: bytes, *, need_features: bool = True, need_rgb: bool = False) -> Perceived:
        """Features of one encoded image: from the cache, else perceived (decoded once).

        With need_features False and need_rgb False, a cached image is only confirmed (features None,
        key set): scoring's first phase needs no more. Raises ImageReadError for undecodable bytes.
        """
        key = self.key(data)
        if not need_features and not need_rgb and (key in self._pending or self.cache.has(key)):
            return Perceived(key, None, None, None, None)
        cached = self._cached(key)
        if cached is not None and not need_rgb:
            return Perceived(key, cached, None, None, None)
        rgb = decode_image(data, self.config.max_side).rgb
        if cached is not None:
            return Perceived(key, cached, None, rgb, None)
        features = self.perceiver.perceive(rgb)
        self.perceived += 1
        blob = features.to_bytes()
        if not self.readonly:
            self._pending[key] = (blob, features)
            if len(self._pending) >= WRITE_BATCH:
                self.flush()
        return Perceived(key, features, blob, rgb, None)

    def perceive_path(self, path: Path, *, need_features: bool = True, need_rgb: bool = False) -> Perceived:
        """As `perceive`, for a file; an unreadable file is a Perceived with a problem, not an exception."""
        path = Path(path)
        try:
            data = path.read_bytes()
        except OSError as exc:
            return Perceived(None, None, None, None, f"cannot read {path.name}: {exc.strerror or exc}")
        try:
            return self.perceive(data, need_features=need_features, need_rgb=need_rgb)
        except ImageReadError as exc:
            return Perceived(self.key(data), None, None, None, f"{path.name}: {exc}")

    def features(self, path: Path, want_rgb: bool = False) -> tuple[ImageFeatures, np.ndarray | None]:
        """(features, rgb or None) of a file. Raises OSError / ImageReadError for unreadable files."""
        p = self.perceive(Path(path).read_bytes(), need_rgb=want_rgb)
        assert p.features is not None
        return p.features, p.rgb

    def perceive_files(self, paths: Iterable[Path], progress: Any = None, task: Any = None
                       ) -> dict[Path, ImageFeatures | str]:
        """Features of each file (once per distinct path); an unreadable file maps to the reason.
        `progress`/`task`: a rich Progress and its task, advanced once per file."""
        out: dict[Path, ImageFeatures | str] = {}
        for path in dict.fromkeys(paths):
            p = self.perceive_path(path)
            out[path] = p.features if p.features is not None else (p.problem or "unreadable")
            if progress is not None:
                progress.advance(task)
        self.flush()
        return out

    def landmarks_px(self, data: bytes, size: tuple[int, int]) -> np.ndarray | None:
        """The largest face's 478 landmarks (x, y) in pixels of a copy of the image `size` = (w, h)
        wide and high (landmarks are stored normalised, so any resolution of the image works);
        None when no face is found. Raises ImageReadError for undecodable bytes."""
        features = self.perceive(data).features
        face = features.primary() if features is not None else None
        if face is None:
            return None
        return face.landmarks[:, :2].astype(np.float64) * [size[0], size[1]]

    # --- the cache ------------------------------------------------------------------------------

    def flush(self) -> None:
        """Write the features perceived since the last flush (writer mode)."""
        if self._pending:
            self.cache.put_many([(k, blob) for k, (blob, _) in self._pending.items()])
            self._pending.clear()

    def close(self) -> None:
        try:
            if not self.readonly:
                self.flush()
        finally:
            if self._perceiver is not None:
                self._perceiver.close()
                self._perceiver = None
            self.cache.close()

    def __enter__(self) -> "PerceptionService":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["ImageReadError", "Perceived", "PerceptionService"]
