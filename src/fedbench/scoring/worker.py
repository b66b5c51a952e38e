"""What runs in each scoring process: backbones loaded once, then one image or one triplet per call."""

from __future__ import annotations

import json
import os

# MediaPipe and TFLite log every model load at INFO/WARNING level from C++; keep the console for progress.
os.environ.setdefault("GLOG_minloglevel", "2")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from fedbench.data.images import ImageReadError, decode_image
from fedbench.faces.perception import PerceptionConfig, Perceiver
from fedbench.faces.service import Perceived, PerceptionService
from fedbench.metrics.bgsource import SourceBackground
from fedbench.metrics.fedscore import ImageOutcome, background_measure, score_triplet
from fedbench.metrics.spec import get_spec
from fedbench.store.features import pack_optional_float, unpack_optional_float
from fedbench.store.features import FeatureCache, content_key


@dataclass
class _State:
    service: PerceptionService  # read-only cache: new features go back to the main process's writer

    @property
    def perceiver(self) -> Perceiver:
        return self.service.perceiver

    @property
    def cache(self) -> FeatureCache:
        return self.service.cache

    @property
    def sig(self) -> str:
        return self.service.sig


_STATE: _State | None = None


def init_worker(config_json: str, cache_path: str, threads: int = 1) -> None:
    """Load the backbones once per process (the pool initialiser)."""
    global _STATE
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    import cv2

    cv2.setNumThreads(threads)  # one process per core already; OpenCV's own pool would oversubscribe
    config = PerceptionConfig.model_validate_json(config_json)
    service = PerceptionService(config, Path(cache_path), readonly=True, threads=threads)
    service.perceiver  # load the backbones now: `ready` times the start-up apart from the work
    _STATE = _State(service)


def shutdown_worker() -> None:
    """Release the backbones and the cache connection (in-process runs; pool workers just exit)."""
    global _STATE
    if _STATE is not None:
        _STATE.service.close()
        _STATE = None
    _source_rgb.cache_clear()
    _LAST_SOURCE_BACKGROUND.clear()


def ready(_: int) -> bool:
    """A no-op task: returns once this worker has loaded its backbones (times the start-up)."""
    return _STATE is not None


def _state() -> _State:
    if _STATE is None:
        raise RuntimeError("scoring worker used before init_worker")
    return _STATE


def _read(path: Path) -> bytes:
    with open(path, "rb") as fh:
        return fh.read()


@lru_cache(maxsize=8)
def _source_rgb(path: str, content_key: str, max_side: int) -> np.ndarray:
    """Decoded source for the background SSIM; a source usually serves several consecutive triplets.
    Keyed by content too, so a file rewritten between runs in one process is decoded afresh."""
    return decode_image(_read(Path(path)), max_side).rgb


_LAST_SOURCE_BACKGROUND: list[SourceBackground] = []  # one slot: consecutive triplets share a source


def _source_background(source_rgb: np.ndarray, landmarks: np.ndarray) -> SourceBackground:
    """S's side of the background measure, shared by the triplet's two pairs (S,E and S,G) and by
    the next triplets of the same source (`_source_rgb` hands back the same array for them)."""
    last = _LAST_SOURCE_BACKGROUND[0] if _LAST_SOURCE_BACKGROUND else None
    if last is not None and last.rgb is source_rgb and np.array_equal(last.landmarks, landmarks):
        return last
    prepared = SourceBackground(source_rgb, landmarks)
    _LAST_SOURCE_BACKGROUND[:] = [prepared]
    return prepared


def perceive_path(path: Path, need_rgb: bool = False) -> Perceived:
    """Features of one image (None features with a key: cached, not loaded, when need_rgb is False)."""
    return _state().service.perceive_path(path, need_features=need_rgb, need_rgb=need_rgb)


def perceive_reference(path_str: str) -> tuple[str, str | None, bytes | None, str | None]:
    """Phase 1 (sources and ground truths): (path, key, new blob or None when cached, problem)."""
    p = perceive_path(Path(path_str))
    return path_str, p.key, p.blob, p.problem


def _load_reference(key: str | None, problem: str | None) -> ImageOutcome:
    if key is None or problem is not None:
        return ImageOutcome(None, problem or "unreadable")
    features = _state().cache.get(key)
    if features is None:
        return ImageOutcome(None, "features missing from the cache")
    return ImageOutcome(features)


BG_MEASURE_VERSION = 1  # bump when background_ssim changes: cached pair values are then recomputed
BG_REGISTERED_VERSION = 2  # the same for the registered measure (2.0); 2: ECC fitted at 160 px


def _ground_truth_background(task: dict[str, Any], source: ImageOutcome, gt: ImageOutcome,
                             source_rgb: np.ndarray, register: bool, prepared: SourceBackground
                             ) -> tuple[tuple[float | None, float | None], tuple[str, bytes] | None]:
    """BG(S, G) and its background chroma distance: how much the ground truth itself changed the
    background (a relative BG divides by it). One value per (source, ground truth) pair and way of
    measuring (registered or not), kept in the feature cache beside the image features."""
    st = _state()
    if register:
        key = f"bg-pair-reg:v{BG_REGISTERED_VERSION}:{task['source_key']}:{task['gt_key']}"
    else:
        key = f"bg-pair:v{BG_MEASURE_VERSION}:{task['source_key']}:{task['gt_key']}"
    cached = st.cache.get_raw(key)
    if cached is not None:
        if register:
            ssim, chroma = json.loads(cached.decode())
            return (ssim, chroma), None
        return (unpack_optional_float(cached), None), None
    s_face = source.features.faces[0]
    g_face = gt.features.primary(s_face.box)
    data = _read(Path(task["ground_truth"]))
    if content_key(data, st.sig) != task["gt_key"]:  # rewritten since phase 1: never cache a wrong value
        raise ImageReadError("the ground truth changed while scoring")
    gt_rgb = decode_image(data, st.perceiver.config.max_side).rgb
    value, _, chroma = background_measure(source_rgb, gt_rgb, s_face, g_face, register, prepared)
    if register:
        return (value, chroma), (key, json.dumps([value, chroma]).encode())
    return (value, None), (key, pack_optional_float(value))


def score_sample(task: dict[str, Any]) -> tuple[dict[str, Any], list[tuple[str, bytes]]]:
    """Phase 2: perceive the edit, then every FED-Score component of one triplet."""
    st = _state()
    source = _load_reference(task["source_key"], task["source_problem"])
    gt = _load_reference(task["gt_key"], task["gt_problem"])
    new_blobs: list[tuple[str, bytes]] = []
    edit_rgb = source_rgb = None
    generation = task.get("generation")
    if task["edit"] is None or generation is not None:
        edit = ImageOutcome(None, "missing")
    else:
        p = perceive_path(Path(task["edit"]), need_rgb=True)
        edit = ImageOutcome(p.features, p.problem)
        edit_rgb = p.rgb
        if p.blob is not None and p.key is not None:
            new_blobs.append((p.key, p.blob))
    if edit.features is not None and edit.features.faces and source.features is not None:
        try:
            source_rgb = _source_rgb(task["source"], task["source_key"], st.perceiver.config.max_side)
        except (OSError, ImageReadError) as exc:  # the file changed under us since phase 1
            source = ImageOutcome(None, f"source became unreadable: {exc}")
    bg_gt = bg_chroma_gt = None
    prepared = None
    if source_rgb is not None and source.features is not None and source.features.faces:
        prepared = _source_background(source_rgb, source.features.faces[0].landmarks)
    spec = get_spec(task["version"])
    if prepared is not None and spec.uses_gt_background and gt.features is not None and gt.features.faces:
        try:
            (bg_gt, bg_chroma_gt), blob = _ground_truth_background(task, source, gt, source_rgb,
                                                                     spec.bg_register, prepared)
        except (OSError, ImageReadError) as exc:  # the file changed under us since phase 1
            gt = ImageOutcome(None, f"ground truth became unreadable: {exc}")
        else:
            if blob is not None:
                new_blobs.append(blob)
    row = score_triplet(
        task["id"], task["target"], task["instruction"], source, gt, edit, source_rgb, edit_rgb,
        st.perceiver.identity_threshold, task["version"], None if generation is None else tuple(generation),
        bg_gt=bg_gt, bg_chroma_gt=bg_chroma_gt, actions=task.get("actions"), judge=task.get("judge"),
        source_background=prepared,
    )
    return row, new_blobs
