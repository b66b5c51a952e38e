"""`fedbench demo`: the embedded default, offline and on CPU.

A small benchmark is assembled from public-domain portraits that ship inside installed packages
(scikit-image's astronaut, matplotlib's Grace Hopper), six target expressions each. The ground truth
is SYNTHETIC: the `warp` editor at its reference strength. Probe editors (lazy, oracle, pixel blends)
and `warp` at half and double strength are then scored and ranked.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from fedbench.data.images import decode_image
from fedbench.editors.probes import pixel_blend
from fedbench.editors.warp import warp_expression
from fedbench.faces.landmarks import FaceLandmarker

TARGETS = ("happy", "sad", "surprise", "fear", "angry", "disgust")
INSTRUCTIONS = {
    "happy": "Change the expression to happy: smile with the lip corners pulled up.",
    "sad": "Change the expression to sad: lower the lip corners and raise the inner corners of the eyebrows.",
    "surprise": "Change the expression to surprise: raise the eyebrows high and drop the jaw so the mouth opens.",
    "fear": "Change the expression to fear: raise the eyebrows and stretch the lips sideways.",
    "angry": "Change the expression to angry: lower and draw the eyebrows together and press the lips.",
    "disgust": "Change the expression to disgust: raise the upper lip and lower the lip corners.",
}
EDITORS = {
    "identity": "lazy probe: returns the source",
    "oracle": "returns the (synthetic) ground truth",
    "pixel-blend-0.5": "S + 0.5 (G - S): under-edit",
    "pixel-blend-2": "S + 2 (G - S): over-edit",
    "warp-0.5": "warp editor at half strength",
    "warp-2": "warp editor at double strength",
}


def public_domain_faces() -> dict[str, np.ndarray]:
    """Portraits that ship with installed packages (no download)."""
    faces: dict[str, np.ndarray] = {}
    from skimage import data

    faces["astronaut"] = data.astronaut()
    try:
        from matplotlib import cbook

        with cbook.get_sample_data("grace_hopper.jpg") as fh:
            faces["grace-hopper"] = decode_image(fh.read()).rgb
    except (ImportError, OSError, ValueError):
        pass  # matplotlib is optional; the astronaut alone still makes a benchmark
    return faces


def _save(rgb: np.ndarray, path: Path) -> None:
    Image.fromarray(rgb).save(path)


def build_demo(root: Path) -> Path:
    """Write the demo benchmark (images, manifest, every editor's outputs) under `root`."""
    images = root / "images"
    images.mkdir(parents=True, exist_ok=True)
    landmarker = FaceLandmarker(max_faces=1)
    rows = []
    for name, rgb in public_domain_faces().items():
        faces = landmarker.detect(rgb)
        if not faces:
            continue
        px = faces[0].landmarks[:, :2].astype(np.float64) * [rgb.shape[1], rgb.shape[0]]
        src = images / f"{name}.png"
        _save(rgb, src)
        for target in TARGETS:
            rid = f"{name}-{target}"
            gt = warp_expression(rgb, px, target, 1.0)
            _save(gt, images / f"{rid}-gt.png")
            rows.append({"id": rid, "source": f"images/{src.name}", "instruction": INSTRUCTIONS[target],
                         "target": target, "ground_truth": f"images/{rid}-gt.png", "identity": name,
                         "meta": {"ground_truth": "synthetic: warp editor, strength 1.0"}})
            outputs = {
                "identity": rgb, "oracle": gt,
                "pixel-blend-0.5": pixel_blend(rgb, gt, 0.5),
                "pixel-blend-2": pixel_blend(rgb, gt, 2.0),
                "warp-0.5": warp_expression(rgb, px, target, 0.5),
                "warp-2": warp_expression(rgb, px, target, 2.0),
            }
            for editor, out in outputs.items():
                (root / "edits" / editor).mkdir(parents=True, exist_ok=True)
                _save(out, root / "edits" / editor / f"{rid}.png")
    landmarker.close()
    manifest = root / "triplets.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return manifest
