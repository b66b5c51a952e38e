"""Measure the test-retest noise of every expression-vector dimension and write the noise model that
FED-Score 2.0 whitens by (src/fedbench/metrics/data/noise_v1.json).

    PYTHONPATH=src .venv/bin/python benchmarks/noise_model.py \
        [--wild ../shared/fixtures/faces-in-the-wild] [--portraits ../shared/fixtures/pixelsmile] \
        [--n-wild 200] [--copies-wild 3] [--copies-portrait 8] [--seed 0] [--out src/fedbench/metrics/data/noise_v1.json]

For each face (a seeded sample of the faces-in-the-wild DEV images, and the shared PixelSmile
portraits: every blend image and each slider's unedited frame), perceive it, then perceive seeded
random processed copies of it (metrics/processing.py: resize / crop / shift, then gamma or colour,
then a JPEG re-encode) and take the change of every dimension. Nothing about the face changed, so the
change is noise. Per dimension the file holds the robust std (1.4826 x median absolute change) and
the plain std, the number of copies, the perception signature it was measured under and this
command. Rerun it after any change to perception (a new recogniser changes the probability dims).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shlex
import sys
import time
from pathlib import Path

import numpy as np
from rich.progress import Progress

from fedbench.data.images import decode_image
from fedbench.faces.perception import FaceFeatures, PerceptionConfig, Perceiver
from fedbench.metrics import noise, processing
from fedbench.store.features import signature_hash

REPO = Path(__file__).resolve().parents[1]
# as the tests: beside $FEDBENCH_FIXTURES (the PixelSmile folder), else ../shared/fixtures beside the repo
SHARED = Path(os.environ["FEDBENCH_FIXTURES"]).parent if os.environ.get("FEDBENCH_FIXTURES") else REPO.parent / "shared" / "fixtures"
MAD_TO_STD = 1.4826


def wild_images(root: Path, n: int, seed: int) -> list[Path]:
    """A seeded sample of the dev faces, at most one image per identity (labels.csv: image,label,identity)."""
    with open(root / "labels.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    for i, r in enumerate(rows, start=2):
        if not r.get("image") or not r.get("identity"):
            raise ValueError(f"{root / 'labels.csv'} row {i}: needs image and identity, got {r}")
    by_id: dict[str, str] = {}
    for r in rows:
        by_id.setdefault(r["identity"], r["image"])
    rng = np.random.default_rng(seed)
    ids = sorted(by_id)
    pick = rng.choice(len(ids), size=min(n, len(ids)), replace=False)
    return [root / by_id[ids[i]] for i in sorted(pick)]


def portrait_images(root: Path) -> list[Path]:
    seqs = json.loads((root / "sequences.json").read_text())
    return sorted((root / "blend").glob("*.jpg")) + [root / s["frames"][0] for s in seqs]


def _face(perceiver: Perceiver, rgb: np.ndarray, box: np.ndarray | None) -> tuple[FaceFeatures | None, list[str]]:
    feats = perceiver.perceive(rgb)
    return feats.primary(box), feats.member_names


def measure(perceiver: Perceiver, images: list[tuple[str, Path, int]], seed: int) -> dict:
    deltas: list[np.ndarray] = []
    extras: list[tuple[float, float]] = []  # (identity cosine to the original, log quality ratio)
    chains: list[list[str]] = []
    origin: list[str] = []
    no_face, lost = [], []
    total = sum(1 + c for _, _, c in images)
    with Progress(transient=False) as bar:
        task = bar.add_task("noise model: perceiving originals and processed copies", total=total)
        for k, (group, path, copies) in enumerate(images):
            rgb = decode_image(path.read_bytes(), perceiver.config.max_side).rgb
            face, names = _face(perceiver, rgb, None)
            bar.advance(task)
            if face is None:
                no_face.append(str(path.name))
                bar.advance(task, copies)
                continue
            base = noise.face_vector(face, names)
            rng = np.random.default_rng([seed, k])
            for _ in range(copies):
                chain = processing.random_chain(rng)
                pf, pnames = _face(perceiver, processing.process(rgb, chain), face.box)
                bar.advance(task)
                if pf is None:
                    lost.append(f"{path.name}: {' + '.join(s.describe() for s in chain)}")
                    continue
                deltas.append(noise.face_vector(pf, pnames) - base)
                cos = float(np.dot(pf.embedding, face.embedding) /
                            (np.linalg.norm(pf.embedding) * np.linalg.norm(face.embedding)))
                extras.append((cos, float(np.log(max(pf.quality, 1e-9) / max(face.quality, 1e-9)))))
                chains.append([s.op for s in chain])
                origin.append(group)
    return {"deltas": np.array(deltas), "extras": np.array(extras), "chains": chains, "origin": origin, "no_face": no_face, "lost": lost}


def robust_sigma(d: np.ndarray) -> np.ndarray:
    return MAD_TO_STD * np.median(np.abs(d - np.median(d, axis=0)), axis=0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--wild", type=Path, default=SHARED / "faces-in-the-wild")
    ap.add_argument("--portraits", type=Path, default=SHARED / "pixelsmile")
    ap.add_argument("--n-wild", type=int, default=200)
    ap.add_argument("--copies-wild", type=int, default=3)
    ap.add_argument("--copies-portrait", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=REPO / "src/fedbench/metrics/data" / noise.NOISE_FILE)
    ap.add_argument("--dump-deltas", type=Path, default=None, help="also save every change (npz) for study")
    args = ap.parse_args()

    config = PerceptionConfig()
    perceiver = Perceiver(config)
    images = ([("wild", p, args.copies_wild) for p in wild_images(args.wild, args.n_wild, args.seed)]
              + [("portrait", p, args.copies_portrait) for p in portrait_images(args.portraits)])
    t0 = time.perf_counter()
    m = measure(perceiver, images, args.seed)
    perceiver.close()
    d = m["deltas"]
    if len(d) < 20:
        raise SystemExit(f"only {len(d)} processed copies kept a face: too few to measure noise")
    sigma, std = robust_sigma(d), d.std(axis=0)
    if args.dump_deltas:
        np.savez_compressed(args.dump_deltas, deltas=d, origin=np.array(m["origin"]),
                            geo=np.array([c[0] for c in m["chains"]]))
    # Each whitened FED-Score version: percentiles of a processing-only change's whitened norm; the
    # version's own percentile is the line below which a ground truth's change is degenerate.
    from fedbench.metrics.core import whitening_weights
    from fedbench.metrics.spec import SPECS

    degenerate_norm = {v: {str(q): round(float(np.percentile(np.linalg.norm(d * whitening_weights(s, std), axis=1), q)), 4)
                           for q in (90, 95, 97.5, 99)}
                       for v, s in SPECS.items() if s.gain == "whitened"}
    origin = np.array(m["origin"])
    geo = np.array([c[0] for c in m["chains"]])
    per_dim = {dim: {"sigma": round(float(sigma[i]), 6), "std": round(float(std[i]), 6),
                     "p95_abs": round(float(np.percentile(np.abs(d[:, i]), 95)), 6),
                     "sigma_wild": round(float(robust_sigma(d[origin == "wild"][:, [i]])[0]), 6)
                     if (origin == "wild").sum() else None,
                     "sigma_portrait": round(float(robust_sigma(d[origin == "portrait"][:, [i]])[0]), 6)
                     if (origin == "portrait").sum() else None}
               for i, dim in enumerate(noise.DIMS)}
    # How much each kind of geometric change moves the vector (median over copies of the whitened norm).
    floor = np.maximum(sigma, 1e-3)
    by_op = {op: {"n": int((geo == op).sum()),
                  "median_whitened_norm": round(float(np.median(np.linalg.norm(d[geo == op] / floor, axis=1))), 3)}
             for op in ("resize", "crop", "shift") if (geo == op).sum()}
    cos, logq = m["extras"][:, 0], m["extras"][:, 1]
    # Identity and face quality after processing alone: how far FED-Score 2.0 lets ID and PQ move
    # before it charges the edit (the 5th percentile: 95 % of processed copies stay inside).
    fidelity = {"identity_cos": {"median": round(float(np.median(cos)), 4), "p05": round(float(np.percentile(cos, 5)), 4),
                                 "min": round(float(cos.min()), 4)},
                "log_quality_ratio": {"median": round(float(np.median(logq)), 4),
                                      "p05": round(float(np.percentile(logq, 5)), 4),
                                      "sigma": round(float(robust_sigma(logq[:, None])[0]), 4)}}
    out = {
        "version": 1,
        "fidelity": fidelity,
        "dims": list(noise.DIMS),
        "per_dim": per_dim,
        "n_copies": int(len(d)),
        "n_images": {"wild": int(sum(g == "wild" for g, _, _ in images)),
                     "portrait": int(sum(g == "portrait" for g, _, _ in images))},
        "no_face_originals": m["no_face"],
        "lost_copies": m["lost"],
        "by_geometric_op": by_op,
        "degenerate_norm": degenerate_norm,
        "perception": {"signature": config.signature(), "signature_hash": signature_hash(config.signature())},
        "processing": {"jpeg_quality": processing.JPEG_QUALITY, "resize": processing.RESIZE,
                       "crop_shift": processing.CROP_SHIFT, "gamma": processing.GAMMA,
                       "colour_gain": processing.COLOUR_GAIN, "saturation": processing.SATURATION,
                       "chain": "one of resize/crop/shift, 0-1 of gamma/colour, then JPEG"},
        "seed": args.seed,
        "seconds": round(time.perf_counter() - t0, 1),
        "command": "PYTHONPATH=src python benchmarks/noise_model.py " + shlex.join(sys.argv[1:]),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    top = sorted(per_dim.items(), key=lambda kv: -kv[1]["sigma"])[:8]
    print(f"wrote {args.out}: {len(d)} copies of {len(images) - len(m['no_face'])} faces in {out['seconds']} s; "
          f"noisiest dims: " + ", ".join(f"{k} {v['sigma']:.3f}" for k, v in top))


if __name__ == "__main__":
    main()
