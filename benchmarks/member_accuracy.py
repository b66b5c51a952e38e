"""Balanced accuracy of single emotion members on a labelled face set, at several crop margins.

    PYTHONPATH=src .venv/bin/python benchmarks/member_accuracy.py \
        [--labels ../shared/fixtures/faces-in-the-wild/labels.csv] [--margins 0.0,0.2,0.4] \
        [--limit N] [--probs-out FILE.csv --probs-margin 0.2] [--json out.json]

Each image is decoded as perception decodes it (long side 1024), the Face Landmarker finds the
faces and the largest one's landmark box is the face box (as in `Perceiver.perceive`). The
face-api member (`faceapi-cnn`) then sees that box padded by each margin. An image where the
landmarker finds no face counts as wrong for every margin. Prints, per margin, balanced accuracy
over the seven classes, per-class accuracy and the member's milliseconds per face (crop, resize and
net, one thread). `--probs-out` writes the member's probabilities for every image
(image,<EXPRESSIONS>; empty cells where no face was found).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import track
from rich.table import Table

from fedbench.data.images import decode_image
from fedbench.faces.faceapi import FaceApiCNN, face_crop
from fedbench.faces.geometry import box_area, bounding_box
from fedbench.faces.landmarks import FaceLandmarker
from fedbench.labels import EXPRESSIONS
from fedbench.meta.recogniser import accuracy_report, read_labels_csv

MAX_SIDE = 1024  # PerceptionConfig.max_side's default: the working copy perception sees


def report_counting_missing(truth_all: list[str], truth: list[str], predicted: list[str]) -> dict:
    """accuracy_report over the faces found, with per-class totals (and so the balanced accuracy)
    taken over every labelled image: an image without a face is a miss, not left out."""
    rep = accuracy_report(truth, predicted)
    per_class = {}
    for c in EXPRESSIONS:
        n = truth_all.count(c)
        if n:
            correct = rep["per_class"].get(c, {}).get("correct", 0)
            per_class[c] = {"n": n, "correct": correct, "accuracy": round(correct / n, 4)}
    rep["per_class"] = per_class
    rep["n"] = len(truth_all)
    rep["no_face"] = len(truth_all) - len(truth)
    rep["accuracy"] = round(sum(v["correct"] for v in per_class.values()) / len(truth_all), 4)
    rep["balanced_accuracy"] = round(float(np.mean([v["accuracy"] for v in per_class.values()])), 4)
    return rep


def main() -> None:
    here = Path(__file__).resolve().parents[1]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labels", type=Path, default=here.parent / "shared/fixtures/faces-in-the-wild/labels.csv")
    parser.add_argument("--margins", default="0.0,0.2,0.4", help="comma-separated box paddings to compare")
    parser.add_argument("--limit", type=int, default=None, help="only the first N rows (a quick look)")
    parser.add_argument("--probs-out", type=Path, default=None)
    parser.add_argument("--probs-margin", type=float, default=None, help="margin for --probs-out (default: first)")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--timing", type=int, default=300,
                        help="then time this many calls on one dev crop at --probs-margin (median, 10th percentile)")
    args = parser.parse_args()
    margins = [float(m) for m in args.margins.split(",")]
    probs_margin = margins[0] if args.probs_margin is None else args.probs_margin
    if probs_margin not in margins:
        margins.append(probs_margin)

    faces = read_labels_csv(args.labels)[: args.limit]
    root = args.labels.resolve().parent
    landmarker = FaceLandmarker()
    members = {m: FaceApiCNN(margin=m) for m in margins}
    truth_all = [f.label for f in faces]
    timing_crop: np.ndarray | None = None
    truth: list[str] = []
    preds: dict[float, list[str]] = {m: [] for m in margins}
    seconds: dict[float, float] = {m: 0.0 for m in margins}
    rows: list[list[str]] = []
    try:
        for face in track(faces, description="faces"):
            rgb = decode_image(face.path.read_bytes(), MAX_SIDE).rgb
            found = landmarker.detect(rgb)
            image = face.path.relative_to(root).as_posix()
            if not found:
                rows.append([image] + [""] * len(EXPRESSIONS))
                continue
            h, w = rgb.shape[:2]
            boxes = [bounding_box(f.landmarks) for f in found]
            box = max(boxes, key=box_area).astype(np.float64) * np.array([w, h, w, h])
            truth.append(face.label)
            if timing_crop is None:
                timing_crop = face_crop(rgb, box, probs_margin)
            for m, member in members.items():
                t0 = time.perf_counter()
                probs = member.predict_crop(face_crop(rgb, box, m))
                seconds[m] += time.perf_counter() - t0
                ordered = np.array([probs[member.labels.index(c)] for c in EXPRESSIONS])
                preds[m].append(EXPRESSIONS[int(np.argmax(ordered))])
                if m == probs_margin:
                    rows.append([image] + [f"{p:.6f}" for p in ordered / ordered.sum()])
    finally:
        landmarker.close()

    timing = {}
    if args.timing and timing_crop is not None:
        # the in-loop ms/face shares the CPU with the landmarker; this times the member by itself
        member = members[probs_margin]
        for _ in range(20):
            member.predict_crop(timing_crop)
        ms = []
        for _ in range(args.timing):
            t0 = time.perf_counter()
            member.predict_crop(timing_crop)
            ms.append(1000 * (time.perf_counter() - t0))
        timing = {"calls": args.timing, "crop": list(timing_crop.shape),
                  "median_ms": round(float(np.median(ms)), 2), "p10_ms": round(float(np.percentile(ms, 10)), 2),
                  "load_average_1min": round(os.getloadavg()[0], 1)}
        print(f"faceapi-cnn alone, {args.timing} calls: median {timing['median_ms']} ms, "
              f"10th percentile {timing['p10_ms']} ms (load average {timing['load_average_1min']})")
    results = {}
    for m in margins:
        rep = report_counting_missing(truth_all, truth, preds[m])
        rep["ms_per_face"] = round(1000 * seconds[m] / max(1, len(truth)), 2)
        results[f"{m:g}"] = rep
    table = Table(title=f"faceapi-cnn on {args.labels} ({len(faces)} images, {len(faces) - len(truth)} without a face)")
    table.add_column("margin")
    table.add_column("balanced", justify="right")
    for c in EXPRESSIONS:
        table.add_column(c, justify="right")
    table.add_column("ms/face", justify="right")
    for m, rep in results.items():
        table.add_row(m, f"{rep['balanced_accuracy']:.3f}",
                      *(f"{rep['per_class'][c]['accuracy']:.2f}" if c in rep["per_class"] else "—" for c in EXPRESSIONS),
                      f"{rep['ms_per_face']:.1f}")
    Console(width=160).print(table)
    if args.json:
        args.json.write_text(json.dumps({"labels": str(args.labels), "member": "faceapi-cnn",
                                         "results_by_margin": results, "timing": timing}, indent=2))
    if args.probs_out:
        args.probs_out.parent.mkdir(parents=True, exist_ok=True)
        partial = args.probs_out.with_name(args.probs_out.name + f".partial-{os.getpid()}")
        with open(partial, "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["image", *EXPRESSIONS])
            writer.writerows(rows)
        os.replace(partial, args.probs_out)  # a reader never sees half a file
        print(f"probabilities (margin {probs_margin:g}) written to {args.probs_out}")


if __name__ == "__main__":
    main()
