"""FED-Score 1.0 / 1.1 / 1.2 reproduce, number for number, what they gave before the metric core.

tests/data/fedscore_golden_v1.json holds the rows that the pre-core scorer (commit 263719e,
`score_triplet`) gave for the constructed cases below; regenerate only when a 1.x definition is meant
to change (it is not): `python tests/unit/test_fedscore_golden.py > tests/data/fedscore_golden_v1.json`.
The cases are random but seeded: blendshapes, probabilities, identity embeddings and qualities of S,
G and E, plus S / E images with a face and a textured background, so every component and both
instruction paths (named actions, actions taken from G) are exercised.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from fedbench.faces.perception import FaceFeatures, ImageFeatures
from fedbench.labels import EXPRESSIONS
from fedbench.metrics.fedscore import ImageOutcome, score_triplet

GOLDEN = Path(__file__).resolve().parents[1] / "data" / "fedscore_golden_v1.json"
VERSIONS = ("1.0", "1.1", "1.2")
INSTRUCTIONS = ("Make her smile", "Change the expression to sad: lower the lip corners and raise the inner "
                "corners of the eyebrows.", "Change the expression to surprise.", "Look angry, press the lips.")
N_CASES = 24
SIZE = 96


def _face(rng: np.random.Generator, base: FaceFeatures | None, scale: float) -> FaceFeatures:
    lm_x = rng.uniform(0.35, 0.65, 478)
    lm_y = rng.uniform(0.3, 0.7, 478)
    landmarks = np.column_stack([lm_x, lm_y, np.zeros(478)]).astype(np.float32)
    if base is None:
        bs = rng.uniform(0, 0.3, 52).astype(np.float32)
        logits = rng.normal(0, 1.0, 7)
        emb = rng.normal(0, 1, 128)
        q = float(rng.uniform(50, 200))
    else:
        landmarks = base.landmarks
        bs = np.clip(base.blendshapes + rng.normal(0, scale, 52), 0, 1).astype(np.float32)
        logits = np.log(base.emotion) + rng.normal(0, 3 * scale, 7)
        emb = base.embedding + rng.normal(0, 0.08 * scale * 10, 128)
        q = float(base.quality * rng.uniform(0.6, 1.3))
    probs = np.exp(logits) / np.exp(logits).sum()
    emb = (emb / np.linalg.norm(emb)).astype(np.float32)
    return FaceFeatures(landmarks=landmarks, blendshapes=bs, box=np.array([0.35, 0.3, 0.65, 0.7], np.float32),
                        emotion=probs, members=probs[None], embedding=emb, quality=q)


def _image(rng: np.random.Generator, base: np.ndarray | None, noise: float) -> np.ndarray:
    if base is None:
        small = rng.uniform(0, 255, (12, 12, 3))
        img = np.kron(small, np.ones((8, 8, 1)))
    else:
        img = base + rng.normal(0, noise, base.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def _outcome(face: FaceFeatures) -> ImageOutcome:
    return ImageOutcome(ImageFeatures(status="ok", size=(SIZE, SIZE), faces=[face], member_names=["m"]))


def cases() -> list[dict]:
    """Seeded constructed triplets: (id, target, instruction, S, G, E features, S and E pixels, BG(S, G))."""
    out = []
    for k in range(N_CASES):
        rng = np.random.default_rng(1000 + k)
        s = _face(rng, None, 0)
        g = _face(rng, s, 0.12 if k % 6 else 0.002)  # every sixth ground truth barely moves: degenerate
        e = _face(rng, g if k % 3 else s, float(rng.uniform(0.0, 0.08)))  # near G or near S
        s_rgb = _image(rng, None, 0)
        e_rgb = _image(rng, s_rgb, float(rng.uniform(1, 40)))
        out.append(dict(id=f"case-{k}", target=EXPRESSIONS[k % 7], instruction=INSTRUCTIONS[k % 4],
                        s=s, g=g, e=e, s_rgb=s_rgb, e_rgb=e_rgb, bg_gt=float(rng.uniform(0.3, 1.0))))
    return out


def rows(version: str) -> list[dict]:
    return [score_triplet(c["id"], c["target"], c["instruction"], _outcome(c["s"]), _outcome(c["g"]),
                          _outcome(c["e"]), c["s_rgb"], c["e_rgb"], 0.363, version,
                          bg_gt=c["bg_gt"] if version == "1.2" else None)
            for c in cases()]


@pytest.mark.parametrize("version", VERSIONS)
def test_version_reproduces_the_pre_core_rows(version):
    golden = json.loads(GOLDEN.read_text())[version]
    got = json.loads(json.dumps(rows(version)))
    assert len(got) == len(golden)
    statuses = {r["status"] for r in got}
    assert "ok" in statuses and "degenerate_gt" in statuses  # the cases cover both paths
    for g_row, want in zip(got, golden):
        assert {k: g_row.get(k) for k in want} == want, g_row["id"]


if __name__ == "__main__":
    json.dump({v: rows(v) for v in VERSIONS}, sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")
