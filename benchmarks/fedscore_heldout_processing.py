"""Processed lazy and processed oracle under processing that FED-Score 2.0 was not designed on.

2.0's noise model and dev probes draw from one processing contract (metrics/processing.py: resize
0.5-0.9x, crop or shift 1-4 %, gamma, colour, JPEG 70-95). A user's editor does other things. This
applies each of a fixed list of other operations to S (a processed lazy edit) and to G (a processed
oracle) of every shared blend triplet and scores them with the ordinary scorer: a lazy edit must still
score <= 5 and the oracle >= 90 (the targets of docs/fedscore.md). `crop 6 %` is deliberately past
the registration's 5 % scale limit, to show where the forgiveness ends.

    PYTHONPATH=src python benchmarks/fedscore_heldout_processing.py [--version 2.0] [--work /tmp/heldout]

Writes benchmarks/results/fedscore_heldout_processing.json.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
from PIL import Image

from fedbench.data.images import decode_image
from fedbench.data.manifest import read_manifest, write_manifest
from fedbench.meta.probes import _save_png
from fedbench.metrics import processing
from fedbench.metrics.fedscore import FEDSCORE_VERSION
from fedbench.scoring.runner import score

REPO = Path(__file__).resolve().parents[1]
DEFAULT_FIXTURES = Path(os.environ.get("FEDBENCH_FIXTURES", REPO.parent / "shared" / "fixtures" / "pixelsmile"))
LAZY_MAX, ORACLE_MIN = 5.0, 90.0


def _webp(rgb: np.ndarray, quality: int) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "WEBP", quality=quality)
    return np.array(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))


def _rotate(rgb: np.ndarray, degrees: float) -> np.ndarray:
    h, w = rgb.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0)
    return cv2.warpAffine(rgb, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def _sharpen(rgb: np.ndarray, amount: float) -> np.ndarray:
    blurred = cv2.GaussianBlur(rgb, (0, 0), 2.0).astype(np.float32)
    return np.clip(rgb.astype(np.float32) * (1 + amount) - blurred * amount, 0, 255).astype(np.uint8)


OPERATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "WebP q80": lambda x: _webp(x, 80),
    "JPEG q50": lambda x: processing.jpeg(x, 50),
    "rotate 2 deg": lambda x: _rotate(x, 2.0),
    "Gaussian blur 1 px": lambda x: cv2.GaussianBlur(x, (0, 0), 1.0),
    "unsharp mask 0.6": lambda x: _sharpen(x, 0.6),
    "resize 0.4x": lambda x: processing.resize(x, 0.4),
    "brightness +12": lambda x: np.clip(x.astype(np.int16) + 12, 0, 255).astype(np.uint8),
    "crop 4 %": lambda x: processing.crop(x, 0.04, 0.5, 0.5),  # centred: a zoom of 1 / 0.96
    "crop 6 % (past the 5 % limit)": lambda x: processing.crop(x, 0.06, 0.5, 0.5),
}


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name.split(" (")[0]).strip("-").lower()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fixtures", type=Path, default=DEFAULT_FIXTURES)
    ap.add_argument("--version", default=FEDSCORE_VERSION)
    ap.add_argument("--work", type=Path, default=Path("/tmp/fedscore_heldout"))
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks/results/fedscore_heldout_processing.json")
    args = ap.parse_args()
    edits = args.work / "edits"
    edits.mkdir(parents=True, exist_ok=True)
    manifest = read_manifest(args.fixtures / "triplets.jsonl")
    rows = []
    for t in manifest:
        images = {"lazy": decode_image(Path(t.source).read_bytes(), 4096).rgb,
                  "oracle": decode_image(Path(t.ground_truth).read_bytes(), 4096).rgb}
        for name, op in OPERATIONS.items():
            for role, rgb in images.items():
                sample_id = f"{role}-{_slug(name)}__{t.id}"
                path = edits / f"{sample_id}.png"
                if not path.is_file():
                    _save_png(op(rgb), path)
                rows.append({"id": sample_id, "source": str(t.source), "ground_truth": str(t.ground_truth),
                             "target": t.target, "instruction": t.instruction})
    write_manifest(args.work / "manifest.jsonl", rows)
    result = score(args.work / "manifest.jsonl", edits, None, allow_outside=True, cache_path=args.work / "features.sqlite",
                   n_bootstrap=0, version=args.version, progress=True)
    by_probe: dict[str, list[dict]] = {}
    for r in result.samples:
        by_probe.setdefault(r["id"].split("__", 1)[0], []).append(r)
    table = []
    for name in OPERATIONS:
        entry: dict[str, object] = {"processing": name}
        for role in ("lazy", "oracle"):
            samples = by_probe[f"{role}-{_slug(name)}"]
            feds = [r["fed"] for r in samples if r["fed"] is not None]
            statuses: dict[str, int] = {}
            for r in samples:
                statuses[r["status"]] = statuses.get(r["status"], 0) + 1
            if role == "lazy":
                entry["lazy"] = {"max_fed": round(max(feds), 2), "above_5": sum(f > LAZY_MAX for f in feds),
                                 "n": len(feds), "statuses": statuses}
            else:
                worst = min(samples, key=lambda r: r["fed"] if r["fed"] is not None else float("inf"))
                bgs = [r["bg"] for r in samples if r["bg"] is not None]
                entry["oracle"] = {"min_fed": round(min(feds), 2), "median_fed": round(float(np.median(feds)), 2),
                                   "max_fed": round(max(feds), 2), "below_90": sum(f < ORACLE_MIN for f in feds),
                                   "bg_min_median_max": [round(min(bgs), 3), round(float(np.median(bgs)), 3),
                                                         round(max(bgs), 3)] if bgs else None,
                                   "n": len(feds), "statuses": statuses,
                                   "worst": {k: worst.get(k) for k in ("id", "alignment", "fidelity", "reg", "bg", "pq",
                                                                      "id_score", "bg_shift")}}
        table.append(entry)
    print(f"FED-Score {args.version}, {len(manifest)} blend triplets")
    print(f"{'processing':32}{'lazy max':>10}{'> 5':>6}{'oracle min':>12}{'< 90':>6}")
    for e in table:
        lazy, oracle = e["lazy"], e["oracle"]
        print(f"{e['processing']:32}{lazy['max_fed']:>10.2f}{lazy['above_5']:>6}{oracle['min_fed']:>12.2f}{oracle['below_90']:>6}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"command": "PYTHONPATH=src python benchmarks/fedscore_heldout_processing.py "
                                    + " ".join(sys.argv[1:]), "version": args.version, "triplets": len(manifest),
                                    "table": table}, indent=1) + "\n")


if __name__ == "__main__":
    main()
