"""Tight crops: how many labelled faces the landmarker misses, and how many a padded retry recovers.

    .venv/bin/python benchmarks/tight_crops.py [--labels ../shared/fixtures/faces-in-the-wild/labels.csv]
        [--fractions 0.15,0.25,0.35,0.5,0.15+0.5] [--modes replicate,grey] [--json benchmarks/results/tight_crops.json]

Every image of the labels CSV is decoded as perception decodes it (the working copy, long side at most
`PerceptionConfig.max_side`) and searched by the Face Landmarker. The images where it finds no face are
padded on every side by each fraction of the long side (edge pixels repeated, or mid-grey) and searched
again with the Perceiver's own helper (`fedbench.faces.perception.detect_with_padding`); `a+b` tries
fraction a, then b where a finds nothing. For each variant it reports how many are recovered, and how much of the recovered
faces' boxes lies inside the original frame (a face that fills the frame reaches past its edges).

A second, harder set: every image where a face *was* found, cut to that face's landmark box (the
tightest crop an aligned-face dataset would hold); the same variants are tried on those crops that
the unpadded search misses.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np
from rich.progress import Progress

from fedbench.data.images import decode_image
from fedbench.faces.geometry import bounding_box
from fedbench.faces.landmarks import FaceLandmarker
from fedbench.faces.perception import PerceptionConfig, detect_with_padding

REPO = Path(__file__).resolve().parents[1]


def _inside(box: np.ndarray) -> float:
    """Fraction of a normalised box's area inside the unit frame."""
    area = float((box[2] - box[0]) * (box[3] - box[1]))
    x0, y0, x1, y1 = np.clip(box, 0.0, 1.0)
    return float((x1 - x0) * (y1 - y0)) / area if area > 0 else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labels", type=Path,
                        default=REPO.parent / "shared" / "fixtures" / "faces-in-the-wild" / "labels.csv")
    parser.add_argument("--fractions", default="0.15,0.25,0.35,0.5,0.15+0.5")
    parser.add_argument("--modes", default="replicate,grey")
    parser.add_argument("--json", type=Path, default=REPO / "benchmarks" / "results" / "tight_crops.json")
    args = parser.parse_args()
    fractions = [[float(f) for f in x.split("+")] for x in args.fractions.split(",")]
    modes = args.modes.split(",")
    with open(args.labels, encoding="utf-8", newline="") as fh:
        images = [args.labels.parent / row["image"] for row in csv.DictReader(fh)]
    max_side = PerceptionConfig().max_side
    landmarker = FaceLandmarker(max_faces=PerceptionConfig().max_faces)
    missed: dict[str, np.ndarray] = {}
    crops: dict[str, np.ndarray] = {}
    with Progress() as bar:
        task = bar.add_task("landmarker, unpadded", total=len(images))
        for path in images:
            name = str(path.relative_to(args.labels.parent))
            rgb = decode_image(path.read_bytes(), max_side).rgb
            found = landmarker.detect(rgb)
            if not found:
                missed[name] = rgb
            else:
                h, w = rgb.shape[:2]
                x0, y0, x1, y1 = np.round(bounding_box(found[0].landmarks) * [w, h, w, h]).astype(int)
                x0, y0, x1, y1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
                if x1 - x0 >= 32 and y1 - y0 >= 32:
                    crops[name] = np.ascontiguousarray(rgb[y0:y1, x0:x1])
            bar.advance(task)
        task = bar.add_task("tight crops, unpadded", total=len(crops))
        crops_missed = {}
        for name, rgb in crops.items():
            if not landmarker.detect(rgb):
                crops_missed[name] = rgb
            bar.advance(task)
        sets = {"images": _variants(landmarker, missed, fractions, modes, bar),
                "tight_crops": _variants(landmarker, crops_missed, fractions, modes, bar)}
    landmarker.close()
    result = {
        "labels": args.labels.name, "max_side": max_side, "images": len(images),
        "no_face_unpadded": len(missed), "no_face_images": sorted(missed), "variants": sets["images"],
        "tight_crops": {"crops": len(crops), "no_face_unpadded": len(crops_missed), "variants": sets["tight_crops"]},
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{len(images)} images, no face unpadded: {len(missed)}")
    _print(sets["images"])
    print(f"{len(crops)} tight crops of the faces found, no face unpadded: {len(crops_missed)}")
    _print(sets["tight_crops"])
    print(f"wrote {args.json}")


def _variants(landmarker: FaceLandmarker, missed: dict[str, np.ndarray], fractions: list[list[float]],
              modes: list[str], bar: Progress) -> dict[str, dict]:
    variants = {}
    for mode in modes:
        for fraction in fractions:
            label = "+".join(f"{f:g}" for f in fraction)
            task = bar.add_task(f"padded {label} {mode}", total=len(missed))
            recovered, inside = [], []
            for name, rgb in missed.items():
                found, _ = detect_with_padding(landmarker, rgb, fraction, mode)  # type: ignore[arg-type]
                if found:
                    recovered.append(name)
                    inside.append(_inside(bounding_box(found[0].landmarks)))
                bar.advance(task)
            variants[f"{mode} {label}"] = {
                "mode": mode, "fractions": fraction, "recovered": len(recovered),
                "still_no_face": len(missed) - len(recovered),
                "mean_box_inside_frame": round(float(np.mean(inside)), 4) if inside else None,
                "recovered_images": recovered,
            }
    return variants


def _print(variants: dict[str, dict]) -> None:
    for name, v in variants.items():
        print(f"  {name:>16}: recovered {v['recovered']}, still no face {v['still_no_face']}, "
              f"mean box inside frame {v['mean_box_inside_frame']}")


if __name__ == "__main__":
    main()
