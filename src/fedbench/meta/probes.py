"""Probe edits for the meta-evaluation: images whose right score is known in advance.

lazy (E = S) must score FED 0; the oracle (E = G) must rank first; pixel blends S + k(G - S) under-
(k < 1) and over-edit (k > 1); `warp` (a real, training-free editor) at several strengths; and the
processed lazy and oracle: S or G after a seeded random processing (resize / crop / shift, gamma or
colour, a JPEG re-encode: metrics/processing.py), which changes no expression, so they must still
score as lazy and as the ground truth. Probes only make images: the core scorer
(`fedbench.scoring.runner.score`) scores them like any model.
"""

from __future__ import annotations

import os
import shutil
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image

from fedbench.data.images import ImageReadError, decode_image
from fedbench.data.manifest import Manifest, Triplet
from fedbench.editors.probes import pixel_blend
from fedbench.editors.warp import warp_expression
from fedbench.faces.perception import PerceptionConfig
from fedbench.faces.service import PerceptionService
from fedbench.metrics.single import pixel_l1_similarity, ssim_similarity
from fedbench.scoring.edits import EDIT_EXTENSIONS

ProbeKind = Literal["lazy", "oracle", "under", "copy", "over", "warp", "processed-lazy", "processed-oracle"]
PerceptionSpec = tuple[PerceptionConfig | None, Path | None] | None  # (config, feature cache file)

BLEND_KS: tuple[float, ...] = (0.25, 0.5, 0.75, 1.0, 1.5, 2.0)
WARP_STRENGTHS: tuple[float, ...] = (0.5, 1.0, 2.0)
PROCESSED_SEEDS: tuple[int, ...] = (0,)  # one processed copy of S and of G per triplet and seed
DECODE_MAX_SIDE = 4096  # probes are made at the images' own size (up to this)
SEP = "__"  # probe name SEP triplet id: the scored id of a probe edit


@dataclass(frozen=True)
class Probe:
    name: str
    kind: ProbeKind
    param: float | None = None

    @property
    def describe(self) -> str:
        if self.kind == "lazy":
            return "E = S (changes nothing)"
        if self.kind == "oracle":
            return "E = G (the ground truth)"
        if self.kind == "warp":
            return f"warp editor at strength {self.param:g} (1 = its reference)"
        if self.kind in ("processed-lazy", "processed-oracle"):
            return (f"{'S' if self.kind == 'processed-lazy' else 'G'} after a random processing "
                    f"(seed {self.param:g}): no expression change")
        what = {"under": "under-edit", "copy": "the ground truth in pixels", "over": "over-edit"}[self.kind]
        return f"S + {self.param:g} (G - S), {what}"


def default_probes(blend_ks: tuple[float, ...] = BLEND_KS, warp_strengths: tuple[float, ...] = WARP_STRENGTHS,
                   processed_seeds: tuple[int, ...] = PROCESSED_SEEDS) -> list[Probe]:
    probes = [Probe("lazy", "lazy"), Probe("oracle", "oracle")]
    for seed in processed_seeds:
        suffix = "" if len(processed_seeds) == 1 else f"-{seed}"
        probes += [Probe(f"processed-lazy{suffix}", "processed-lazy", float(seed)),
                   Probe(f"processed-oracle{suffix}", "processed-oracle", float(seed))]
    for k in blend_ks:
        kind: ProbeKind = "under" if k < 1 else ("copy" if k == 1 else "over")
        probes.append(Probe(f"blend-{k:g}", kind, float(k)))
    probes += [Probe(f"warp-{s:g}", "warp", float(s)) for s in warp_strengths]
    return probes


def probe_id(probe: str, triplet_id: str) -> str:
    return f"{probe}{SEP}{triplet_id}"


@dataclass
class ProbeEdit:
    probe: str
    triplet: Triplet
    path: Path  # the probe image, under <out>/probes/<probe>/
    pixel: dict[str, float] = field(default_factory=dict)  # pixel single metrics against G


@dataclass
class ProbeSet:
    edits: list[ProbeEdit]
    skipped: list[dict[str, str]]  # probe, id, reason: probes that could not be made for a triplet


def _save_png(rgb: np.ndarray, path: Path) -> None:
    # Lossless (a lossy blend would add artefacts the probe is not about); fast compression.
    Image.fromarray(rgb).save(path, compress_level=1)


def _copy(src: Path, dest_stem: Path) -> Path:
    """Copy a reference image byte for byte (same bytes: the feature cache recognises it)."""
    suffix = src.suffix.lower()
    if suffix not in EDIT_EXTENSIONS:  # a format the edit finder does not list: re-encode losslessly
        dest = _named(dest_stem, ".png")
        _save_png(decode_image(src.read_bytes(), DECODE_MAX_SIDE).rgb, dest)
        return dest
    dest = _named(dest_stem, suffix)
    shutil.copyfile(src, dest)
    return dest


def processed(rgb: np.ndarray, triplet_id: str, seed: int, role: str) -> np.ndarray:
    """A seeded random processing of S or G: the same triplet, role and seed always give the same image."""
    from fedbench.metrics import processing

    rng = np.random.default_rng([seed, zlib.crc32(f"{role}:{triplet_id}".encode())])
    return processing.process(rgb, processing.random_chain(rng))


def _named(stem: Path, suffix: str) -> Path:
    """stem + suffix; not Path.with_suffix, which would cut an id such as 'blend-0.5__x' at its dot."""
    return stem.parent / (stem.name + suffix)


def _make_group(triplets: list[Triplet], out: Path, probes: list[Probe], perception: PerceptionSpec = None
                ) -> ProbeSet:
    """Every probe of some triplets (those of one source, usually). The warp probes' source landmarks
    come from the shared perception service: found once per source, and cached for the scoring."""
    edits: list[ProbeEdit] = []
    skipped: list[dict[str, str]] = []
    config, cache_path = perception or (None, None)
    service: PerceptionService | None = None
    landmarks: dict[Path, np.ndarray | None] = {}
    decoded: dict[Path, np.ndarray] = {}

    def landmarks_of(path: Path, rgb: np.ndarray) -> np.ndarray | None:
        nonlocal service
        if path not in landmarks:
            service = service or PerceptionService(config, cache_path)
            landmarks[path] = service.landmarks_px(path.read_bytes(), (rgb.shape[1], rgb.shape[0]))
        return landmarks[path]

    def rgb_of(path: Path) -> np.ndarray:
        if path not in decoded:
            if len(decoded) > 16:  # keep memory bounded when a group is large
                decoded.clear()
            decoded[path] = decode_image(path.read_bytes(), DECODE_MAX_SIDE).rgb
        return decoded[path]

    try:
        for t in triplets:
            for p in probes:
                stem = out / p.name / t.id
                try:
                    g = rgb_of(t.ground_truth)
                    if p.kind == "lazy":
                        path, e = _copy(t.source, stem), rgb_of(t.source)
                    elif p.kind == "oracle":
                        path, e = _copy(t.ground_truth, stem), g
                    elif p.kind in ("processed-lazy", "processed-oracle"):
                        role = "source" if p.kind == "processed-lazy" else "ground_truth"
                        base = rgb_of(t.source) if role == "source" else g
                        path, e = _named(stem, ".png"), processed(base, t.id, int(p.param or 0), role)
                        _save_png(e, path)
                        if e.shape != g.shape:  # a resized copy: the pixel metrics compare at G's size
                            import cv2

                            e = cv2.resize(e, (g.shape[1], g.shape[0]), interpolation=cv2.INTER_LINEAR)
                    elif p.kind == "warp":
                        s = rgb_of(t.source)
                        pts = landmarks_of(t.source, s)
                        if pts is None:
                            skipped.append({"probe": p.name, "id": t.id, "reason": "no face in the source to warp"})
                            continue
                        path, e = _named(stem, ".png"), warp_expression(s, pts, t.target, float(p.param or 0.0))
                        _save_png(e, path)
                    else:
                        s = rgb_of(t.source)
                        if s.shape != g.shape:
                            skipped.append({"probe": p.name, "id": t.id, "reason":
                                            f"source {s.shape[1]}x{s.shape[0]} and ground truth "
                                            f"{g.shape[1]}x{g.shape[0]} differ in size: no pixel blend"})
                            continue
                        path, e = _named(stem, ".png"), pixel_blend(s, g, float(p.param or 0.0))
                        _save_png(e, path)
                except (OSError, ImageReadError) as exc:
                    skipped.append({"probe": p.name, "id": t.id, "reason": f"cannot read an input: {exc}"})
                    continue
                # Pixel single metrics while both images are in memory (no second decode later).
                pixel = {"pixel_l1_to_gt": pixel_l1_similarity(e, g), "ssim_to_gt": ssim_similarity(e, g)}
                edits.append(ProbeEdit(p.name, t, path, pixel))
    finally:
        if service is not None:
            service.close()
    return ProbeSet(edits, skipped)


def _make_group_task(args: tuple[list[Triplet], Path, list[Probe], PerceptionSpec]) -> ProbeSet:
    import cv2

    cv2.setNumThreads(1)  # one process per core already
    return _make_group(*args)


def make_probes(manifest: Manifest, out: Path, probes: list[Probe], workers: int = 1,
                perception: PerceptionSpec = None) -> ProbeSet:
    """Write every probe image under `out/<probe>/<triplet id>.<ext>`; list what could not be made.
    Triplets are grouped by source and the groups shared among `workers` processes; the result is in
    manifest order, whatever the number of workers. `perception`: (config, feature cache) whose
    landmarks the warp probes use, the scoring run's (default: the default config and cache)."""
    for p in probes:
        (out / p.name).mkdir(parents=True, exist_ok=True)
    by_source: dict[Path, list[Triplet]] = {}
    for t in manifest:
        by_source.setdefault(t.source, []).append(t)
    groups = list(by_source.values())
    workers = max(1, min(workers, len(groups)))
    if workers == 1:
        parts = [_make_group(g, out, probes, perception) for g in groups]
    else:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        # spawn: MediaPipe's threads do not survive a fork (as in the scorer's pool).
        with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:
            parts = list(pool.map(_make_group_task, [(g, out, probes, perception) for g in groups]))
    order = {t.id: n for n, t in enumerate(manifest)}
    rank = {p.name: n for n, p in enumerate(probes)}
    edits = sorted((e for part in parts for e in part.edits), key=lambda e: (order[e.triplet.id], rank[e.probe]))
    skipped = sorted((s for part in parts for s in part.skipped), key=lambda s: (order[s["id"]], rank[s["probe"]]))
    return ProbeSet(edits, skipped)


def place(src: Path, dest_stem: Path) -> Path:
    """A second name for an image under `dest_stem` (hard link, else a copy; re-encoded losslessly
    when its format is not one the edit finder lists): the scorer reads one flat folder."""
    if src.suffix.lower() not in EDIT_EXTENSIONS:
        return _copy(src, dest_stem)
    dest = _named(dest_stem, src.suffix.lower())
    if dest.exists():
        dest.unlink()
    try:
        os.link(src, dest)
    except OSError:
        shutil.copyfile(src, dest)
    return dest
