"""Perception inside a build worker: the scoring backbones, with features cached by file content in
the build's own cache (so the label and verification stages never perceive an image twice)."""

from __future__ import annotations

import os

os.environ.setdefault("GLOG_minloglevel", "2")

from pathlib import Path

from fedbench.data.images import ImageReadError, decode_image
from fedbench.engine.stage import Stage
from fedbench.faces.perception import ImageFeatures, PerceptionConfig, Perceiver
from fedbench.store.features import FeatureCache, content_key, signature_hash


class CachedPerceiver:
    def __init__(self, cache_path: Path, config: PerceptionConfig | None = None) -> None:
        import cv2

        cv2.setNumThreads(1)  # one worker per core already
        self.config = config or PerceptionConfig()
        self.perceiver = Perceiver(self.config, threads=1)
        self.cache = FeatureCache(cache_path)
        self.sig = signature_hash(self.config.signature())

    def features(self, path: Path, want_rgb: bool = False):
        """(features, rgb or None). Raises OSError / ImageReadError for unreadable files."""
        data = Path(path).read_bytes()
        key = content_key(data, self.sig)
        cached = self.cache.get(key)
        if cached is not None and not want_rgb:
            return cached, None
        rgb = decode_image(data, self.config.max_side).rgb
        if cached is not None:
            return cached, rgb
        feats: ImageFeatures = self.perceiver.perceive(rgb)
        self.cache.put_many([(key, feats.to_bytes())])
        return feats, rgb

    def close(self) -> None:
        self.perceiver.close()
        self.cache.close()




class PerceivingStage(Stage):
    """A stage that perceives images: the backbones load once per worker, features go to the build's cache."""

    def setup(self) -> None:
        self.perception = CachedPerceiver(self.work / "features.sqlite")

    def teardown(self) -> None:
        self.perception.close()


__all__ = ["CachedPerceiver", "ImageReadError", "PerceivingStage"]
