"""Perception inside a build worker: the shared perception service over the build's own feature cache
(so the label and verification stages never perceive an image twice)."""

from __future__ import annotations

from pathlib import Path

from fedbench.data.images import ImageReadError
from fedbench.engine.stage import Stage
from fedbench.faces.perception import PerceptionConfig
from fedbench.faces.service import PerceptionService


class CachedPerceiver(PerceptionService):
    """A build worker's service: one thread (one worker per core already), features written at once
    (each build worker writes its own rows; the stages read what the earlier ones wrote)."""

    def __init__(self, cache_path: Path, config: PerceptionConfig | None = None) -> None:
        import cv2

        cv2.setNumThreads(1)  # one worker per core already
        super().__init__(config, cache_path, threads=1)

    def features(self, path: Path, want_rgb: bool = False):
        try:
            return super().features(path, want_rgb)
        finally:
            self.flush()


class PerceivingStage(Stage):
    """A stage that perceives images: the backbones load once per worker, features go to the build's cache."""

    def setup(self) -> None:
        self.perception = CachedPerceiver(self.work / "features.sqlite")

    def teardown(self) -> None:
        self.perception.close()


__all__ = ["CachedPerceiver", "ImageReadError", "PerceivingStage"]
