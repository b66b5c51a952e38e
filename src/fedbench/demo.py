"""`fedbench demo`: the embedded default, offline and on CPU.

Default: a small REAL benchmark that ships inside the package (`fedbench/demo_data/`): 12 triplets of
PixelSmile edited portraits (Apache-2.0, NOTICE beside them) - three people, every non-neutral target
twice, each chosen because its ground truth moves clearly (|dG| >= 1.30 under FED-Score 1.2, against the
`degenerate_gt` threshold of 0.38). Probe editors (lazy, oracle, pixel blends) and the `warp` editor
at half and double strength run through `fedbench eval` and are ranked.

`--synthetic` keeps the older demo: public-domain portraits that ship inside installed packages
(scikit-image's astronaut, matplotlib's Grace Hopper), six targets each, with SYNTHETIC ground truth
made by the `warp` editor at its reference strength.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import numpy as np
from PIL import Image

from fedbench.data.images import decode_image
from fedbench.editors.base import EditRequest
from fedbench.editors.config import EditorConfig
from fedbench.editors.warp import WarpEditor

TARGETS = ("happy", "sad", "surprise", "fear", "angry", "disgust")
INSTRUCTIONS = {
    "happy": "Change the expression to happy: smile with the lip corners pulled up.",
    "sad": "Change the expression to sad: lower the lip corners and raise the inner corners of the eyebrows.",
    "surprise": "Change the expression to surprise: raise the eyebrows high and drop the jaw so the mouth opens.",
    "fear": "Change the expression to fear: raise the eyebrows and stretch the lips sideways.",
    "angry": "Change the expression to angry: lower and draw the eyebrows together and press the lips.",
    "disgust": "Change the expression to disgust: raise the upper lip and lower the lip corners.",
}
# name -> (adapter, params, what it is)
EDITORS: dict[str, tuple[str, dict, str]] = {
    "identity": ("identity", {}, "lazy probe: returns the source"),
    "oracle": ("oracle", {}, "returns the ground truth"),
    "pixel-blend-0.5": ("pixel-blend", {"k": 0.5}, "S + 0.5 (G - S): under-edit"),
    "pixel-blend-2": ("pixel-blend", {"k": 2.0}, "S + 2 (G - S): over-edit"),
    "warp-0.5": ("warp", {"strength": 0.5}, "warp editor at half strength"),
    "warp-2": ("warp", {"strength": 2.0}, "warp editor at double strength"),
}


def editor_configs() -> dict[str, EditorConfig]:
    return {name: EditorConfig(name=name, adapter=adapter, params=params, description=what)
            for name, (adapter, params, what) in EDITORS.items()}


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
    """Write the demo benchmark (sources, synthetic ground truths, manifest) under `root`."""
    images = root / "images"
    images.mkdir(parents=True, exist_ok=True)
    rows = []
    with WarpEditor(strength=1.0) as warp:
        for name, rgb in public_domain_faces().items():
            src = images / f"{name}.png"
            _save(rgb, src)
            for target in TARGETS:
                rid = f"{name}-{target}"
                result = warp.edit(EditRequest(sample_id=rid, source=src, instruction=INSTRUCTIONS[target],
                                               target=target, seed=0))
                if result.image is None:  # no face found: this portrait cannot serve
                    break
                _save(result.image, images / f"{rid}-gt.png")
                rows.append({"id": rid, "source": f"images/{src.name}", "instruction": INSTRUCTIONS[target],
                             "target": target, "ground_truth": f"images/{rid}-gt.png", "identity": name,
                             "meta": {"ground_truth": "synthetic: warp editor, strength 1.0"}})
    manifest = root / "triplets.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return manifest


DEMO_DATA = "demo_data"  # package folder: triplets.jsonl, images/, NOTICE.md


def embedded_manifest() -> Path:
    """The packaged real benchmark's manifest, read in place (for tests and `fedbench score`)."""
    return Path(str(resources.files("fedbench") / DEMO_DATA / "triplets.jsonl"))


def copy_embedded(root: Path) -> Path:
    """Copy the packaged real benchmark (manifest, images, NOTICE) under `root`; return its manifest.

    Copied rather than read in place so the run folders point at a folder the user owns (an
    installed package may be read-only or zipped) and the NOTICE travels with the images."""
    src = resources.files("fedbench") / DEMO_DATA
    (root / "images").mkdir(parents=True, exist_ok=True)
    for name in ("triplets.jsonl", "NOTICE.md"):
        (root / name).write_bytes((src / name).read_bytes())
    for item in (src / "images").iterdir():
        dst = root / "images" / item.name
        data = item.read_bytes()
        if not dst.is_file() or dst.read_bytes() != data:  # unchanged files keep their mtime
            dst.write_bytes(data)
    return root / "triplets.jsonl"
