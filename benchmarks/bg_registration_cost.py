"""What a cheaper background registration would cost in accuracy: FED-Score 2.0's registered BG
measure under other ECC settings, on the 2.0 dev probes.

The registration (metrics/registration.py: ECC affine fit at 160 px, at most 60 iterations) is the
largest single stage above the backbones (benchmarks/score_breakdown.py). Its settings are part of
2.0's definition, so a faster setting changes 2.0's numbers: this measures by how much. Pairs: each
blend triplet's S against its G, three processed copies of S and of G, warp at strength 1 and the
0.75 pixel blend; each wild dev face's S against G, processed S and processed G (the probe images
`fedscore_v2_dev.py` made under --work). Per setting: milliseconds per pair of the whole measure (one
thread), and against the defined setting the largest and 99th-percentile |change| of BG's SSIM and
of the registration magnitude, and how many pairs flip between registered and refused.

    PYTHONPATH=src python benchmarks/fedscore_v2_dev.py --versions 2.0 --work /tmp/fedscore_v2_dev
    PYTHONPATH=src python benchmarks/bg_registration_cost.py --work /tmp/fedscore_v2_dev

Writes benchmarks/results/bg_registration_cost.json. Nothing here changes the package's settings.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from fedbench.faces.service import PerceptionService
from fedbench.metrics import registration
from fedbench.metrics.fedscore import background_measure

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fedscore_v2_dev import dev_triplets  # noqa: E402  (the probe sets it made)

REPO = Path(__file__).resolve().parents[1]
SETTINGS = ((160, 60), (160, 30), (160, 20), (120, 60), (120, 30), (96, 60), (96, 30))  # (px, iterations)
BLEND_EDITS = ("processed-lazy-0", "processed-lazy-1", "processed-lazy-2", "processed-oracle-0",
               "processed-oracle-1", "processed-oracle-2", "warp-1", "blend-0.75")
WILD_EDITS = ("processed-lazy", "processed-oracle")


def pairs_of(work: Path) -> list[tuple[str, Path, Path]]:
    """(name, S, X) for every measured pair of the dev probe sets under `work`."""
    blend, wild = dev_triplets(work)
    out: list[tuple[str, Path, Path]] = []
    for family, triplets, probes in (("blend", blend, BLEND_EDITS), ("wild", wild, WILD_EDITS)):
        for t in triplets:
            out.append((f"{family}/{t.name}/G", t.source, t.ground_truth))
            out += [(f"{family}/{t.name}/{p}", t.source, t.edits[p]) for p in probes if p in t.edits]
    return out


def measure(loaded: list[tuple[str, Any, Any, Any, Any]], px: int, iterations: int, reps: int
            ) -> tuple[float, np.ndarray]:
    """(median ms per pair, values: ssim, magnitude, chroma per pair) under one ECC setting."""
    registration.ECC_LONG_SIDE, registration.ECC_ITERATIONS = px, iterations
    times, values = [], None
    for _ in range(reps):
        t0 = time.perf_counter()
        vals = [background_measure(s, x, fs, fx, True) for _, s, x, fs, fx in loaded]
        times.append((time.perf_counter() - t0) * 1000.0 / len(loaded))
        values = np.array([[np.nan if v is None else v for v in triple] for triple in vals], float)
    return float(np.median(times)), values


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/fedscore_v2_dev"))
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks/results/bg_registration_cost.json")
    args = ap.parse_args()
    cv2.setNumThreads(1)  # as in a scoring worker
    service = PerceptionService(None, args.work / "features.sqlite")
    loaded = []
    try:
        for name, s_path, x_path in pairs_of(args.work):
            s = service.perceive_path(s_path, need_rgb=True)
            x = service.perceive_path(x_path, need_rgb=True)
            if s.features is None or x.features is None or not s.features.faces or not x.features.faces:
                continue
            s_face = s.features.faces[0]
            loaded.append((name, s.rgb, x.rgb, s_face, x.features.primary(s_face.box)))
    finally:
        service.close()
    if not loaded:
        raise SystemExit(f"no pairs under {args.work}; run fedscore_v2_dev.py --work {args.work} first")
    defined = (registration.ECC_LONG_SIDE, registration.ECC_ITERATIONS)
    base_ms, base = measure(loaded, *defined, args.reps)
    rows = []
    for px, it in SETTINGS:
        ms, v = (base_ms, base) if (px, it) == defined else measure(loaded, px, it, args.reps)
        d_ssim = np.abs(v[:, 0] - base[:, 0])
        d_mag = np.abs(v[:, 1] - base[:, 1])
        flips = int(np.sum((v[:, 1] > 0) != (base[:, 1] > 0)))
        worst = int(np.nanargmax(d_ssim))
        rows.append({"ecc_px": px, "ecc_iterations": it, "ms_per_pair": round(ms, 2),
                     "max_abs_d_ssim": round(float(np.nanmax(d_ssim)), 6),
                     "p99_abs_d_ssim": round(float(np.nanpercentile(d_ssim, 99)), 6),
                     "max_abs_d_magnitude": round(float(np.nanmax(d_mag)), 6),
                     "registration_flips": flips, "worst_pair": loaded[worst][0]})
    registration.ECC_LONG_SIDE, registration.ECC_ITERATIONS = defined
    print(f"{len(loaded)} pairs; defined setting {defined[0]} px / {defined[1]} iterations")
    print(f"{'px':>4}{'iter':>6}{'ms/pair':>9}{'max|dSSIM|':>12}{'p99':>10}{'max|dmag|':>11}{'flips':>7}  worst pair")
    for r in rows:
        print(f"{r['ecc_px']:>4}{r['ecc_iterations']:>6}{r['ms_per_pair']:>9.2f}{r['max_abs_d_ssim']:>12.2e}"
              f"{r['p99_abs_d_ssim']:>10.2e}{r['max_abs_d_magnitude']:>11.2e}{r['registration_flips']:>7}  {r['worst_pair']}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"command": "PYTHONPATH=src python benchmarks/bg_registration_cost.py "
                                    + " ".join(sys.argv[1:]), "pairs": len(loaded), "settings": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
