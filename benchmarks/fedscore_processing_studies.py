"""Two more designs for FED-Score 2.0's unmet processing targets, measured on the 2.0 dev probes only.

The targets (docs/fedscore.md): an edit that differs from S only by processing scores <= 5, the ground
truth after processing >= 90, on every triplet. What fails is the gain of a single perception: a
processed S can read as most of G's change and a processed G as two thirds of it, mostly on the small
faces in the wild. Neither design below is adopted; this script keeps their evidence reproducible.

- `canonical`: perceive the face a second time in a canonical frame. The Face Landmarker's first pass
  gives landmarks; the face is cut out around them (a square `--canon-k` times the landmarks' extent,
  optionally with the eye line levelled) at `--canon-px` and the landmarker runs again on that crop, so
  that a crop, shift or resize of the picture no longer changes how the detector frames the face. The
  gain is recomputed with the second pass's blendshapes and landmark geometry (the pixel members as
  perceived), whitened as 2.0 whitens. Costs one more landmarker pass per image.
- `pixel-gate`: tell processing from an expression change in pixels. Each face is cut out in a frame
  fixed by its eye centres (`--thumb-px` square, grey, blurred, normalised to zero mean and unit
  variance inside an ellipse), the edit's crop is registered to the reference's by ECC on the upper
  face, and the RMS difference measured. A gate could call an edit within processing distance of S
  lazy, and one within processing distance of G complete: it works only if processing distances stay
  below every real change.

    PYTHONPATH=src python benchmarks/fedscore_v2_dev.py --versions 2.0 --work /tmp/fedscore_v2_dev
    PYTHONPATH=src python benchmarks/fedscore_processing_studies.py --work /tmp/fedscore_v2_dev

Writes benchmarks/results/fedscore_processing_studies.json (the figures docs/fedscore.md quotes).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from fedbench.faces.landmarks import FaceLandmarker
from fedbench.faces.perception import FaceFeatures
from fedbench.faces.service import PerceptionService
from fedbench.metrics import core
from fedbench.metrics.geometry_dims import EYE_L, EYE_R
from fedbench.metrics.reg import expression_gain
from fedbench.metrics.spec import get_spec

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fedscore_v2_dev import DevTriplet, dev_triplets  # noqa: E402  (the probe sets it made)

REPO = Path(__file__).resolve().parents[1]
BLEND_WARPS = ("warp-0.5", "warp-1", "warp-2")


@dataclass
class Image:
    rgb: np.ndarray
    face: FaceFeatures
    member_names: list[str]


class Loader:
    """Decoded images and their cached features (the one perception service, its cache under --work)."""

    def __init__(self, cache: Path) -> None:
        self.service = PerceptionService(None, cache)
        self._memo: dict[Path, Image | None] = {}

    def __call__(self, path: Path) -> Image | None:
        if path not in self._memo:
            p = self.service.perceive_path(path, need_rgb=True)
            ok = p.features is not None and bool(p.features.faces)
            self._memo[path] = Image(p.rgb, p.features.faces[0], p.features.member_names) if ok else None
        return self._memo[path]

    def close(self) -> None:
        self.service.close()


def _gain(s: np.ndarray, e: np.ndarray, g: np.ndarray) -> float:
    """The metric's own gain along G's change (never called degenerate here: every triplet is read)."""
    return expression_gain(s, e, g, degenerate_factor=0.0).gain


# --------------------------------------------------------------------------- canonical re-perception

class Canonical:
    """The whitened 2.0 expression vector from a second landmarker pass on a canonical face crop."""

    def __init__(self, k: float, px: int, level: bool) -> None:
        self.k, self.px, self.level = k, px, level
        self.landmarker = FaceLandmarker(max_faces=1)
        self.spec = get_spec("2.0")

    def plain(self, im: Image) -> np.ndarray:
        return core.expression(self.spec, im.face, tuple(im.member_names))

    def vector(self, im: Image) -> np.ndarray | None:
        h, w = im.rgb.shape[:2]
        pts = im.face.landmarks[:, :2].astype(np.float64) * (w, h)
        lo, hi = pts.min(axis=0), pts.max(axis=0)
        centre, side = (lo + hi) / 2, self.k * float(max(hi - lo))
        angle = 0.0
        if self.level:
            right, left = pts[list(EYE_R)].mean(axis=0), pts[list(EYE_L)].mean(axis=0)
            angle = float(np.degrees(np.arctan2(left[1] - right[1], left[0] - right[0])))
        scale = self.px / side
        m = cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])), angle, scale)
        m[:, 2] += np.array([self.px / 2, self.px / 2]) - centre
        flags = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
        crop = cv2.warpAffine(im.rgb, m, (self.px, self.px), flags=flags, borderMode=cv2.BORDER_CONSTANT,
                              borderValue=(128, 128, 128))
        found = self.landmarker.detect(crop)
        if not found:
            return None
        inverse = cv2.invertAffineTransform(m)
        back = (found[0].landmarks[:, :2].astype(np.float64) * self.px) @ inverse[:, :2].T + inverse[:, 2]
        landmarks = np.concatenate([back / (w, h), found[0].landmarks[:, 2:]], axis=1)
        second = replace(im.face, landmarks=landmarks, blendshapes=found[0].blendshapes)
        return core.expression(self.spec, second, tuple(im.member_names))

    def close(self) -> None:
        self.landmarker.close()


def canonical_study(blend: list[DevTriplet], wild: list[DevTriplet], load: Loader, k: float, px: int, level: bool
                    ) -> dict[str, Any]:
    canon = Canonical(k, px, level)
    gains: dict[str, dict[str, list[float]]] = {"plain": {}, "canonical": {}}
    lost = 0
    try:
        for family, triplets in (("blend", blend), ("wild", wild)):
            for t in triplets:
                images = {"S": load(t.source), "G": load(t.ground_truth), **{p: load(e) for p, e in t.edits.items()}}
                if any(v is None for v in images.values()):
                    continue
                plain = {n: canon.plain(im) for n, im in images.items()}
                second = {n: canon.vector(im) for n, im in images.items()}
                if any(v is None for v in second.values()):
                    lost += 1
                    continue
                for kind, vecs in (("plain", plain), ("canonical", second)):
                    for probe in t.edits:
                        key = f"{family}:{probe.rsplit('-', 1)[0] if probe[-1].isdigit() and 'processed' in probe else probe}"
                        gains[kind].setdefault(key, []).append(_gain(vecs["S"], vecs[probe], vecs["G"]))
    finally:
        canon.close()

    def summary(g: dict[str, list[float]]) -> dict[str, Any]:
        return {
            "blend processed S, max gain": round(max(g["blend:processed-lazy"]), 3),
            "blend processed G, min gain": round(min(g["blend:processed-oracle"]), 3),
            "blend median gain warp 0.5 / 1 / 2": [round(float(np.median(g[f"blend:{w}"])), 3) for w in BLEND_WARPS],
            "blend median gain 0.75 blend": round(float(np.median(g["blend:blend-0.75"])), 3),
            "wild processed S, max gain": round(max(g["wild:processed-lazy"]), 3),
            "wild processed S, 90th percentile |gain|": round(float(np.percentile(np.abs(g["wild:processed-lazy"]), 90)), 3),
            "wild processed G, min gain": round(min(g["wild:processed-oracle"]), 3),
            "wild processed G, 10th percentile gain": round(float(np.percentile(g["wild:processed-oracle"], 10)), 3),
        }

    return {"k": k, "px": px, "level_eyes": level, "triplets_without_second_pass": lost,
            "plain (2.0 as perceived)": summary(gains["plain"]), "canonical": summary(gains["canonical"])}


# --------------------------------------------------------------------------- pixel gate

class Thumbs:
    """Grey face crops in a frame fixed by the eye centres, compared after ECC on the upper face."""

    def __init__(self, px: int, blur: float) -> None:
        self.px, self.blur = px, blur
        yy, xx = np.mgrid[:px, :px]
        self.mask = (((xx - px / 2) / (px * 0.45)) ** 2 + ((yy - px / 2) / (px * 0.52)) ** 2) <= 1
        self.upper = np.zeros((px, px), np.uint8)
        self.upper[int(px * 0.1):int(px * 0.62), int(px * 0.1):int(px * 0.9)] = 1

    def thumb(self, im: Image) -> np.ndarray:
        h, w = im.rgb.shape[:2]
        pts = im.face.landmarks[:, :2].astype(np.float64) * (w, h)
        right, left = pts[list(EYE_R)].mean(axis=0), pts[list(EYE_L)].mean(axis=0)
        n = self.px
        src, dst = left - right, np.array([0.4 * n, 0.0])
        scale = float(np.hypot(*dst) / np.hypot(*src))
        angle = float(np.arctan2(dst[1], dst[0]) - np.arctan2(src[1], src[0]))
        c, s = scale * np.cos(angle), scale * np.sin(angle)
        m = np.array([[c, -s, 0.0], [s, c, 0.0]])
        m[:, 2] = np.array([0.3 * n, 0.3 * n]) - m[:, :2] @ right
        grey = cv2.cvtColor(im.rgb, cv2.COLOR_RGB2GRAY).astype(np.float32)
        if scale < 1:  # low-pass to the crop's scale before sampling
            sigma = 0.5 / scale - 0.5
            if sigma > 0.3:
                grey = cv2.GaussianBlur(grey, (0, 0), sigma)
        out = cv2.warpAffine(grey, m, (n, n), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        return cv2.GaussianBlur(out, (0, 0), self.blur)

    def _normalised(self, t: np.ndarray) -> np.ndarray:
        v = t[self.mask]
        return (t - v.mean()) / (v.std() + 1e-6)

    def distance(self, a: np.ndarray, b: np.ndarray) -> float:
        warp = np.eye(2, 3, dtype=np.float32)
        try:
            _, warp = cv2.findTransformECC(a, b, warp, cv2.MOTION_AFFINE,
                                           (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 50, 1e-5), self.upper, 1)
            b = cv2.warpAffine(b, warp, (self.px, self.px), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                               borderMode=cv2.BORDER_REPLICATE)
        except cv2.error:
            pass  # unregistered: the distance then includes the misalignment
        d = self._normalised(a) - self._normalised(b)
        return float(np.sqrt(np.mean(d[self.mask] ** 2)))


def pixel_gate_study(blend: list[DevTriplet], wild: list[DevTriplet], load: Loader, px: int, blur: float) -> dict[str, Any]:
    thumbs = Thumbs(px, blur)
    processing: list[float] = []  # distance of a processed copy from its original (S or G)
    real: dict[str, list[float]] = {}  # distance of a real change from its reference
    wrong_side = 0
    for family, triplets in (("blend", blend), ("wild", wild)):
        for t in triplets:
            s_im, g_im = load(t.source), load(t.ground_truth)
            if s_im is None or g_im is None:
                continue
            s, g = thumbs.thumb(s_im), thumbs.thumb(g_im)
            real.setdefault(f"{family}: G from S", []).append(thumbs.distance(s, g))
            for probe, path in t.edits.items():
                im = load(path)
                if im is None:
                    continue
                e = thumbs.thumb(im)
                to_s, to_g = thumbs.distance(s, e), thumbs.distance(g, e)
                if probe.startswith("processed-lazy"):
                    processing.append(to_s)
                    wrong_side += to_g <= to_s
                elif probe.startswith("processed-oracle"):
                    processing.append(to_g)
                    wrong_side += to_s <= to_g
                else:
                    real.setdefault(f"{family}: {probe} from S", []).append(to_s)
    top = max(processing)
    return {
        "thumb_px": px, "blur": blur,
        "processing distance, median / 99th percentile / max": [round(float(np.median(processing)), 3),
                                                               round(float(np.percentile(processing, 99)), 3),
                                                               round(top, 3)],
        "processed copies nearer the other reference": wrong_side,
        "real changes, min distance (and how many fall below the largest processing distance)": {
            k: [round(min(v), 3), int(sum(x <= top for x in v)), len(v)] for k, v in sorted(real.items())},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/fedscore_v2_dev"))
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks/results/fedscore_processing_studies.json")
    args = ap.parse_args()
    cv2.setNumThreads(1)
    blend, wild = dev_triplets(args.work)
    if not blend or not wild:
        raise SystemExit(f"no dev probes under {args.work}; run fedscore_v2_dev.py --work {args.work} first")
    load = Loader(args.work / "features.sqlite")
    try:
        results = {
            "command": "PYTHONPATH=src python benchmarks/fedscore_processing_studies.py " + " ".join(sys.argv[1:]),
            "triplets": {"blend": len(blend), "wild": len(wild)},
            "canonical": [canonical_study(blend, wild, load, k, px, level)
                          for k, px, level in ((2.0, 384, False), (2.0, 384, True), (1.6, 256, True), (2.6, 384, True))],
            "pixel_gate": [pixel_gate_study(blend, wild, load, px, blur) for px, blur in ((64, 1.0), (48, 1.5), (96, 1.5))],
        }
    finally:
        load.close()
    print(json.dumps(results, indent=1))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
