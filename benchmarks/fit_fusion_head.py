"""Fit (or refit, bit for bit) the emotion fusion heads shipped in fedbench/faces/data/fusion_head_v*.json.

    .venv/bin/python benchmarks/fit_fusion_head.py                 # perceive the dev faces, CV, fit, write
    .venv/bin/python benchmarks/fit_fusion_head.py --from-table    # refit from the recorded feature table
    .venv/bin/python benchmarks/fit_fusion_head.py --mirror-table  # perceive every dev face flipped (v2's data)
    .venv/bin/python benchmarks/fit_fusion_head.py --head fusion-v2 --from-table   # fusion_head_v2.json

Data: the development half of an identity-disjoint split of labelled faces in the wild
(`../shared/fixtures/faces-in-the-wild/labels.csv`: image,label,identity). Only these faces are used to
choose anything. Each face is perceived with the members alone (`emotion_head="mean"`), giving the head's
inputs; the table of inputs is written to `benchmarks/data/fusion_head_v1_features.npz` so the fit can be
repeated without perceiving again (the tests refit from it and compare the weights bit for bit).

The ridge strength is chosen by identity-grouped 5-fold cross-validation (seeds 0, 1, 2; every person in
exactly one fold), maximising balanced accuracy over the seven classes with a face not found counted as
wrong. Ridges within TIE of the best count as tied (one of the 7 fear faces moves balanced accuracy by
0.02 in one seed, 0.007 over three), and a tie goes to the stronger ridge: closer to the members' prior,
which is what rare classes need. The class-balanced negative log-likelihood is reported beside it. The
chosen head's cross-validated per-class accuracy and calibration (top-label ECE and each
class's one-vs-rest ECE) are written into the artifact and printed.

fusion-v2 is the same model fitted on every dev face plus its mirror image (the mirror table), with class
weights ~ n_class ** -1.5; its ridge is chosen by the same CV and rule through the variant study
(`benchmarks/fusion_head_study.py`, variant V2_VARIANT), whose per-seed figures go into its artifact.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
from pathlib import Path

import numpy as np

from fedbench.faces import fusion
from fedbench.labels import EXPRESSIONS, normalise_expression

ROOT = Path(__file__).resolve().parents[1]
# as the tests: beside $FEDBENCH_FIXTURES (the PixelSmile folder), else ../shared/fixtures beside the repo
SHARED = Path(os.environ["FEDBENCH_FIXTURES"]).parent if os.environ.get("FEDBENCH_FIXTURES") else ROOT.parent / "shared/fixtures"
DEFAULT_LABELS = SHARED / "faces-in-the-wild/labels.csv"
TABLE = ROOT / "benchmarks/data/fusion_head_v1_features.npz"
MIRROR_TABLE = ROOT / "benchmarks/data/fusion_head_mirror_features.npz"  # each dev face flipped
ARTIFACT = ROOT / "src/fedbench/faces/data" / fusion.HEAD_FILES["fusion-v1"]
CNN_MEMBERS = ("fer-cnn", "facex-cnn", "faceapi-cnn")
RIDGES = (0.005, 0.01, 0.02, 0.05, 0.1, 0.2)
SEEDS = (0, 1, 2)
TIE = 0.005  # balanced accuracies closer than this are not told apart
FOLDS = 5


def mirrored_png(path: Path, max_side: int) -> bytes:
    """The image as perception decodes it, flipped left-right, losslessly encoded: a second real view of
    the same face whose perception noise (crop, landmarks, CNN crops) is the members' own."""
    import cv2

    from fedbench.data.images import decode_image

    rgb = decode_image(path.read_bytes(), max_side).rgb
    ok, png = cv2.imencode(".png", cv2.cvtColor(np.ascontiguousarray(rgb[:, ::-1]), cv2.COLOR_RGB2BGR))
    if not ok:
        raise RuntimeError(f"{path}: cannot encode its mirror image")
    return png.tobytes()


def build_table(labels_csv: Path, cache: Path | None, mirror: bool = False) -> dict[str, np.ndarray]:
    """The head's inputs for every labelled face (`mirror`: for each face flipped left-right)."""
    from fedbench.faces.perception import PerceptionConfig
    from fedbench.faces.service import PerceptionService
    from fedbench.paths import features_db
    from fedbench.progress import track

    with open(labels_csv, encoding="utf-8-sig", newline="") as fh:
        rows = list(csv.DictReader(fh))
    paths = [(labels_csv.parent / r["image"]).resolve() for r in rows]
    config = PerceptionConfig(emotion_head="mean")
    with PerceptionService(config, cache or features_db()) as service:
        feats = [service.perceive(mirrored_png(p, config.max_side) if mirror else p.read_bytes()).features
                 for p in track(paths, "mirrored faces" if mirror else "faces")]
    images, labels, groups, xs, offsets, found = [], [], [], [], [], []
    for r, f in zip(rows, feats):
        images.append(r["image"])
        labels.append(EXPRESSIONS.index(normalise_expression(r["label"])))
        groups.append(r.get("identity") or r["image"])  # a person, else the image: never a pair
        has_face = f is not None and bool(f.faces)
        found.append(has_face)
        if has_face:
            face = f.faces[0]
            probs = dict(zip(f.member_names, face.members))
            px = face.landmarks[:, :2].astype(np.float64) * np.array(f.size, dtype=np.float64)
            x, off = fusion.head_inputs(probs, CNN_MEMBERS, face.blendshapes, px)
            xs.append(x)
            offsets.append(off)
    return {"image": np.array(images), "label": np.array(labels), "group": np.array(groups),
            "found": np.array(found), "x": np.array(xs), "offset": np.array(offsets),
            "labels_sha256": np.array(hashlib.sha256(labels_csv.read_bytes()).hexdigest()),
            "signature": np.array(config.signature()), "mirrored": np.array(mirror)}


def cross_validate(t: dict[str, np.ndarray], ridge: float) -> dict:
    """Identity-grouped CV; no-face images count as wrong in every class's accuracy."""
    found = t["found"]
    y_all = t["label"]
    y, groups = y_all[found], t["group"][found]
    totals = np.bincount(y_all, minlength=len(EXPRESSIONS))
    accs, eces, class_eces, nlls = [], [], [], []
    for seed in SEEDS:
        folds = fusion.group_folds(groups, FOLDS, seed)
        prob = np.zeros((len(y), len(EXPRESSIONS)))
        for k in range(FOLDS):
            tr, te = folds != k, folds == k
            w = fusion.fit_head(t["x"][tr], t["offset"][tr], y[tr], ridge)
            prob[te] = w.predict(t["x"][te], t["offset"][te])
        pred = prob.argmax(axis=1)
        correct = np.array([np.sum((pred == c) & (y == c)) for c in range(len(EXPRESSIONS))])
        accs.append(correct / totals)
        eces.append(fusion.expected_calibration_error(prob, y))
        true_p = np.clip(prob[np.arange(len(y)), y], 1e-12, None)
        nlls.append(np.mean([-np.log(true_p[y == c]).mean() for c in range(len(EXPRESSIONS)) if (y == c).any()]))
        class_eces.append([fusion.classwise_calibration_error(prob, y, c) for c in range(len(EXPRESSIONS))])
    acc = np.mean(accs, axis=0)
    return {
        "ridge": ridge, "seeds": list(SEEDS), "folds": FOLDS,
        "balanced_accuracy": round(float(acc.mean()), 4),
        "balanced_accuracy_per_seed": [round(float(a.mean()), 4) for a in accs],
        "per_class": {c: {"n": int(totals[i]), "accuracy": round(float(acc[i]), 4),
                          "calibration_error": round(float(np.mean(class_eces, axis=0)[i]), 4)}
                      for i, c in enumerate(EXPRESSIONS)},
        "expected_calibration_error": round(float(np.mean(eces)), 4),
        "balanced_nll": round(float(np.mean(nlls)), 4),
    }


# fusion-v2: the study's variant it ships (benchmarks/fusion_head_study.py, docs/perception.md): fusion-v1's
# model and inputs, trained on every dev face and its mirror image, rare classes weighted above balanced.
V2_VARIANT = "w1.5+mirror"
V2_ARTIFACT = ROOT / "src/fedbench/faces/data" / fusion.HEAD_FILES["fusion-v2"]


def load_table(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def fit_v2(t: dict[str, np.ndarray], m: dict[str, np.ndarray], out: Path) -> None:
    """Cross-validate fusion-v2's variant over the ridge grid (the study's code, v1's choice rule), fit it
    on every dev face with a found face plus the mirror images found of those faces, and write it."""
    import fusion_head_study as study  # imports this module: loaded here, not at the top

    v = study.VARIANTS[V2_VARIANT]
    res = study.study(v, t, m)
    best = res["chosen"]
    d = study.prepare(v, t, m)
    images = np.flatnonzero(d.ro >= 0)
    weights = study.fit_on(v, d, images, best["ridge"])
    mirrors = int((d.rm[images] >= 0).sum())
    totals = np.bincount(t["label"], minlength=len(EXPRESSIONS))
    r4 = lambda v: round(float(v), 4)  # noqa: E731
    meta = {
        "version": "fusion-v2",
        "cnn_members": list(CNN_MEMBERS),
        "inputs": [f"log p {m}" for m in CNN_MEMBERS] + ["sqrt blendshapes (52)"] + list(fusion.GEOMETRY_NAMES),
        "training": {"study_variant": V2_VARIANT, "what": v.what, "class_weight_power": v.class_power,
                     "mirror_images": mirrors},
        "fitted_on": {"labels": "faces-in-the-wild dev half (shared fixture labels.csv), each face as it is and "
                                "flipped left-right", "labels_sha256": str(t["labels_sha256"]),
                      "faces": int(len(images)), "mirror_images": mirrors,
                      "identities": len(set(t["group"].tolist())), "perception": str(t["signature"])},
        "refit": "python benchmarks/fit_fusion_head.py --head fusion-v2 --from-table",
        "cross_validation": {
            "ridge": best["ridge"], "seeds": list(SEEDS), "folds": FOLDS,
            "balanced_accuracy": r4(best["balanced_accuracy"]),
            "balanced_accuracy_per_seed": [r4(s["balanced_accuracy"]) for s in best["per_seed"]],
            "per_class": {c: {"n": int(totals[i]), "accuracy": r4(best["per_class"][i]),
                              "accuracy_per_seed": [r4(s["per_class"][i]) for s in best["per_seed"]],
                              "calibration_error": r4(best["class_ece"][i])} for i, c in enumerate(EXPRESSIONS)},
            "expected_calibration_error": r4(best["ece"]),
            "expected_calibration_error_per_seed": [r4(s["ece"]) for s in best["per_seed"]],
        },
        "ridge_grid": [{k: (r4(g[k]) if k != "ridge" else g[k]) for k in g} for g in res["grid"]],
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(fusion.to_json(weights, meta))
    print(study.HEADER + "\n" + study.row(res))
    print(f"chose ridge {best['ridge']}; wrote {out} (sha256 {hashlib.sha256(out.read_bytes()).hexdigest()})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--labels", type=Path, default=DEFAULT_LABELS)
    ap.add_argument("--cache", type=Path, default=None, help="feature cache (default: fedbench's)")
    ap.add_argument("--from-table", action="store_true", help="refit from the recorded feature table")
    ap.add_argument("--table", type=Path, default=TABLE)
    ap.add_argument("--out", type=Path, default=ARTIFACT)
    ap.add_argument("--mirror-table", action="store_true",
                    help=f"perceive each dev face flipped left-right, write {MIRROR_TABLE.name} and stop")
    ap.add_argument("--head", choices=sorted(fusion.HEAD_FILES), default="fusion-v1",
                    help="which head to fit (fusion-v2 also reads the mirror table)")
    args = ap.parse_args()
    if args.head == "fusion-v2":
        if not args.from_table:
            raise SystemExit("fusion-v2 refits from the recorded tables: pass --from-table (rebuild them with a "
                             "plain run and --mirror-table)")
        fit_v2(load_table(args.table), load_table(MIRROR_TABLE),
               V2_ARTIFACT if args.out == ARTIFACT else args.out)
        return
    if args.mirror_table:
        t = build_table(args.labels.resolve(), args.cache, mirror=True)
        np.savez_compressed(MIRROR_TABLE, **t)
        print(f"{int(t['found'].sum())} of {len(t['label'])} mirrored faces found; wrote {MIRROR_TABLE}")
        return
    if args.from_table:
        t = load_table(args.table)
    else:
        t = build_table(args.labels.resolve(), args.cache)
        args.table.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(args.table, **t)
    print(f"{len(t['label'])} faces, {int((~t['found']).sum())} without a face found, "
          f"{len(set(t['group'].tolist()))} identities")
    studies = []
    for ridge in RIDGES:
        cv = cross_validate(t, ridge)
        studies.append(cv)
        print(f"ridge {ridge:<6g} balanced NLL {cv['balanced_nll']:.4f}  balanced accuracy {cv['balanced_accuracy']:.3f}  ECE "
              f"{cv['expected_calibration_error']:.3f}  " +
              " ".join(f"{c} {v['accuracy']:.2f}" for c, v in cv["per_class"].items()))
    top = max(s["balanced_accuracy"] for s in studies)
    best = max((s for s in studies if s["balanced_accuracy"] >= top - TIE), key=lambda s: s["ridge"])
    found = t["found"]
    weights = fusion.fit_head(t["x"], t["offset"], t["label"][found], best["ridge"])
    meta = {
        "version": "fusion-v1",
        "cnn_members": list(CNN_MEMBERS),
        "inputs": [f"log p {m}" for m in CNN_MEMBERS] + ["sqrt blendshapes (52)"] + list(fusion.GEOMETRY_NAMES),
        "fitted_on": {"labels": "faces-in-the-wild dev half (shared fixture labels.csv)",
                      "labels_sha256": str(t["labels_sha256"]), "faces": int(found.sum()),
                      "identities": len(set(t["group"].tolist())), "perception": str(t["signature"])},
        "refit": "python benchmarks/fit_fusion_head.py --from-table",
        "cross_validation": best,
        "ridge_grid": [{k: s[k] for k in ("ridge", "balanced_nll", "balanced_accuracy", "expected_calibration_error")}
                       for s in studies],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(fusion.to_json(weights, meta))
    print(f"chose ridge {best['ridge']}; wrote {args.out} (sha256 {hashlib.sha256(args.out.read_bytes()).hexdigest()})")


if __name__ == "__main__":
    main()
