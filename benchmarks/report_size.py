"""How big and how slow is an HTML report of a full benchmark? 747 samples x 5 models.

The run folders are SYNTHETIC (`fedbench.testing.synthetic_runs`: invented rows, aggregated by the
scorer's own code) over REAL images: sources and ground truths are the shared PixelSmile fixtures
(or, without them, public-domain faces shipped in scikit-image / matplotlib), and every model's
edited image is a distinct pixel blend S + k (G - S) at 512 px, as a real editor's output would be.
Nothing is scored: this measures the report, not FED-Score.

Prints the page size, the report folder size, the thumbnail count, and the build seconds with a
cold thumbnail cache, then again for a re-run (every thumbnail reused). Fails (exit 1) if the page
or its folder reaches 50 MB, or if the re-run makes any thumbnail again.

    .venv/bin/python benchmarks/report_size.py [--work DIR] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from fedbench.editors.probes import pixel_blend
from fedbench.labels import EXPRESSIONS
from fedbench.report.html import build_report
from fedbench.report.runs import load_runs
from fedbench.testing.synthetic_runs import Behaviour, synthetic_rows, write_run

N_SAMPLES = 747
EDIT_SIDE = 512
LIMIT_BYTES = 50 * 1024 * 1024
MODELS = {  # invented behaviours: what the report has to show apart
    "faithful": (Behaviour(gain=1.0, alignment=0.85, keep=0.92), 1.0),
    "lazy": (Behaviour(gain=0.05, gain_spread=0.05, alignment=0.15, keep=0.99), 0.05),
    "over-edit": (Behaviour(gain=2.1, alignment=0.9, keep=0.65), 2.0),
    "under-edit": (Behaviour(gain=0.5, alignment=0.55, keep=0.95), 0.5),
    "flaky": (Behaviour(gain=1.1, gain_spread=0.5, alignment=0.75, keep=0.85, failure_rate=0.06), 1.2),
}
REPO = Path(__file__).resolve().parents[1]


def image_groups() -> dict[str, list[Path]]:
    """Real portraits in groups of one person (same size, so blends line up)."""
    root = Path(os.environ.get("FEDBENCH_FIXTURES", REPO.parent / "shared" / "fixtures" / "pixelsmile"))
    groups: dict[str, list[Path]] = {}
    if (root / "blend").is_dir():
        groups["blend"] = sorted((root / "blend").glob("*.jpg"))
        for folder in sorted((root / "slider").glob("*")):
            groups[f"slider-{folder.name}"] = sorted(folder.glob("*.avif"))
    groups = {k: v for k, v in groups.items() if len(v) >= 2}
    if groups:
        return groups
    # No fixtures: the public-domain faces the demo uses, with brightness variants as "expressions".
    from fedbench.demo import public_domain_faces

    out = Path(tempfile.mkdtemp(prefix="fedbench-faces-"))
    for name, rgb in public_domain_faces().items():
        paths = []
        for j, gain in enumerate((0.8, 0.9, 1.0, 1.1, 1.2)):
            p = out / f"{name}-{j}.png"
            Image.fromarray(np.clip(rgb * gain, 0, 255).astype(np.uint8)).save(p)
            paths.append(p)
        groups[name] = paths
    return groups


def small(path: Path, cache: dict[Path, np.ndarray]) -> np.ndarray:
    if path not in cache:
        with Image.open(path) as im:
            cache[path] = np.asarray(im.convert("RGB").resize((EDIT_SIDE, EDIT_SIDE), Image.Resampling.LANCZOS))
    return cache[path]


def build_benchmark(work: Path) -> list[Path]:
    """Manifest + 5 edits folders + 5 synthetic run folders; reused when already there."""
    runs = [work / "runs" / name for name in MODELS]
    if all((r / "summary.json").is_file() for r in runs):
        return runs
    rng = np.random.default_rng(0)
    groups = image_groups()
    names = list(groups)
    triplets = []
    for i in range(N_SAMPLES):
        g = groups[names[i % len(names)]]
        s, t = rng.choice(len(g), size=2, replace=False)
        target = EXPRESSIONS[i % len(EXPRESSIONS)]
        triplets.append({"id": f"fb-{i:04d}", "source": str(g[s]), "ground_truth": str(g[t]), "target": target,
                         "instruction": f"Change the expression to {target}; keep the person and the background."})
    manifest = work / "triplets.jsonl"
    work.mkdir(parents=True, exist_ok=True)
    manifest.write_text("".join(json.dumps(t) + "\n" for t in triplets))
    pixels: dict[Path, np.ndarray] = {}
    for m, (name, (behaviour, k)) in enumerate(MODELS.items()):
        rows = synthetic_rows([(t["id"], t["target"]) for t in triplets], behaviour, seed=m)
        edits = work / "edits" / name
        edits.mkdir(parents=True, exist_ok=True)
        for t, row in zip(triplets, rows):
            if row["status"] == "missing_edit":
                continue  # a failed model leaves no file, as a real one would
            kk = k + float(rng.normal(0, 0.05))  # every edit its own pixels
            e = pixel_blend(small(Path(t["source"]), pixels), small(Path(t["ground_truth"]), pixels), kk)
            Image.fromarray(e).save(edits / f"{t['id']}.jpg", quality=90)
        write_run(runs[m], rows, manifest, edits)
    return runs


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=None, help="work folder (default: a temporary one)")
    ap.add_argument("--keep", action="store_true", help="keep the work folder")
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="fedbench-report-size-"))
    try:
        t0 = time.perf_counter()
        runs = load_runs(build_benchmark(work))
        setup_s = time.perf_counter() - t0
        thumb_cache = work / "thumb-cache"
        shutil.rmtree(thumb_cache, ignore_errors=True)
        shutil.rmtree(work / "report", ignore_errors=True)
        cold = build_report(runs, work / "report", thumb_cache=thumb_cache)
        warm = build_report(runs, work / "report", thumb_cache=thumb_cache)
        fresh = build_report(runs, work / "report-2", thumb_cache=thumb_cache)
        figures = {
            "samples": N_SAMPLES, "models": len(runs), "gallery_rows": cold.n_items,
            "page_mb": round(cold.page_bytes / 1e6, 2), "folder_mb": round(cold.folder_bytes / 1e6, 2),
            "thumbnails": cold.thumbnails.unique, "thumbnail_references": cold.thumbnails.requested,
            "thumbnails_made_cold": cold.thumbnails.made, "build_s_cold": round(cold.seconds, 2),
            "thumbnails_made_rerun": warm.thumbnails.made, "build_s_rerun": round(warm.seconds, 2),
            "thumbnails_made_new_folder": fresh.thumbnails.made, "build_s_new_folder": round(fresh.seconds, 2),
            "setup_s": round(setup_s, 2), "cpus": os.cpu_count(),
        }
        print(json.dumps(figures, indent=2))
        ok = (cold.page_bytes < LIMIT_BYTES and cold.folder_bytes < LIMIT_BYTES
              and warm.thumbnails.made == 0 and fresh.thumbnails.made == 0)
        if not ok:
            print("FAIL: the page or its folder reached 50 MB, or a re-run made thumbnails again", file=sys.stderr)
        if args.keep or args.work:
            print(f"report: {work / 'report' / 'index.html'}", file=sys.stderr)
        return 0 if ok else 1
    finally:
        if not (args.keep or args.work):
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
