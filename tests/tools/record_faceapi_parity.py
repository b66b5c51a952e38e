"""Record the parity fixture for the face-api member (dev-only: needs Node and npm packages).

    PYTHONPATH=src .venv/bin/python tests/tools/record_faceapi_parity.py --node-modules DIR/node_modules \
        [--pixelsmile ../shared/fixtures/pixelsmile] [--wild ../shared/fixtures/faces-in-the-wild] \
        [--out tests/data/faceapi_parity.npz]

where DIR holds `npm install @tensorflow/tfjs@4.22.0 @tensorflow/tfjs-backend-wasm@4.22.0
@vladmandic/face-api@1.7.15` (outside the repo; not committed). For a few real faces (PixelSmile
portraits and faces in the wild, both Apache-2.0) it takes fedbench's face crop at several margins,
shrinks or keeps it at a few sizes (so both resize directions and non-square padding are covered),
and asks the ORIGINAL tfjs code (tests/tools/faceapi_reference.cjs) for its probabilities. The
crops (uint8 RGB) and the tfjs outputs go into the .npz that tests/unit/test_faceapi.py reads.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
from pathlib import Path

import cv2
import numpy as np

from fedbench.data.images import decode_image
from fedbench.faces.faceapi import face_crop
from fedbench.faces.geometry import box_area, bounding_box
from fedbench.faces.landmarks import FaceLandmarker

REPO = Path(__file__).resolve().parents[2]
# (fixture set, image, margin, stored size: the long side, or (w, h) to force a wide crop)
CASES = (
    ("pixelsmile", "blend/happy.jpg", 0.2, 120),
    ("pixelsmile", "blend/surprised.jpg", 0.0, 96),
    ("pixelsmile", "slider/sad/27.avif", 0.4, 140),
    ("wild", "images/Al_Gore_0002.jpg", 0.2, 80),
    ("wild", None, 0.4, (130, 97)),  # the first disgust face, clipped at the border, made wide
    ("wild", None, 0.2, 112),  # the first fear face
)


def first_with_label(wild: Path, label: str) -> str:
    for line in (wild / "labels.csv").read_text().splitlines()[1:]:
        image, lab, _ = line.split(",")
        if lab == label:
            return image
    raise SystemExit(f"no {label} image in {wild}/labels.csv")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--node-modules", type=Path, required=True)
    parser.add_argument("--pixelsmile", type=Path, default=REPO.parent / "shared/fixtures/pixelsmile")
    parser.add_argument("--wild", type=Path, default=REPO.parent / "shared/fixtures/faces-in-the-wild")
    parser.add_argument("--out", type=Path, default=REPO / "tests/data/faceapi_parity.npz")
    args = parser.parse_args()
    roots = {"pixelsmile": args.pixelsmile, "wild": args.wild}
    fill = iter([first_with_label(args.wild, "disgust"), first_with_label(args.wild, "fear")])

    landmarker = FaceLandmarker()
    crops, names = [], []
    try:
        for where, image, margin, side in CASES:
            image = image or next(fill)
            rgb = decode_image((roots[where] / image).read_bytes(), 1024).rgb
            found = landmarker.detect(rgb)
            if not found:
                raise SystemExit(f"{where}/{image}: no face found")
            h, w = rgb.shape[:2]
            box = max((bounding_box(f.landmarks) for f in found), key=box_area).astype(np.float64)
            crop = face_crop(rgb, box * np.array([w, h, w, h]), margin)
            if isinstance(side, tuple):
                size = side
            else:
                scale = side / max(crop.shape[:2])
                size = (max(2, round(crop.shape[1] * scale)), max(2, round(crop.shape[0] * scale)))
            crop = cv2.resize(crop, size, interpolation=cv2.INTER_AREA)
            crops.append(np.ascontiguousarray(crop, dtype=np.uint8))
            names.append(f"{where}/{image} margin {margin:g} -> {crop.shape[1]}x{crop.shape[0]}")
    finally:
        landmarker.close()

    with tempfile.TemporaryDirectory(prefix="faceapi-parity-") as tmp:
        src, dst = Path(tmp) / "in.json", Path(tmp) / "out.json"
        src.write_text(json.dumps({"crops": [{"shape": list(c.shape), "data": c.ravel().tolist()} for c in crops]}))
        env = dict(os.environ, NODE_PATH=str(args.node_modules.resolve()))
        subprocess.run(["node", str(REPO / "tests/tools/faceapi_reference.cjs"), str(src), str(dst)],
                       check=True, env=env, stdout=subprocess.DEVNULL)
        result = json.loads(dst.read_text())

    args.out.parent.mkdir(parents=True, exist_ok=True)
    arrays = {f"crop_{i}": c for i, c in enumerate(crops)}
    np.savez_compressed(
        args.out, **arrays,
        probs=np.array(result["probs"], dtype=np.float32),
        labels=np.array(result["labels"]), names=np.array(names),
        versions=np.array(json.dumps(result["versions"], sort_keys=True)),
    )
    print(f"{args.out}: {len(crops)} crops, {args.out.stat().st_size / 1024:.0f} KB, tfjs {result['versions']}")
    for name, p in zip(names, result["probs"]):
        print(f"  {name}: {result['labels'][int(np.argmax(p))]} {max(p):.3f}")


if __name__ == "__main__":
    main()
