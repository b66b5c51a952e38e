"""How well the emotion recogniser reads labelled faces (fedscore.md, meta-evaluation item 7).

Labels come from a manifest's `source_expression`, from the last frame of each graded sequence (it
shows the target at full intensity), or from a user CSV `image,label`. Accuracy, per-class accuracy
(recall) and the confusion matrix are given for the ensemble and for each member alone. Features come
from the same content-keyed cache as scoring, so faces already scored are not perceived again.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fedbench.data.manifest import Manifest
from fedbench.faces.perception import ImageFeatures, PerceptionConfig
from fedbench.faces.service import PerceptionService
from fedbench.labels import EXPRESSIONS, normalise_expression
from fedbench.progress import progress_bar
from fedbench.meta.sequences import SequenceFile


class LabelError(ValueError):
    """A malformed labels CSV; the message names the file and each bad row."""


@dataclass(frozen=True)
class LabelledFace:
    path: Path
    label: str
    origin: str  # which labelled set: "manifest", "sequences", "csv"
    where: str  # where the label was read, for messages


def _dedupe(faces: list[LabelledFace]) -> tuple[list[LabelledFace], list[str]]:
    """One entry per image; an image labelled two ways is reported and left out."""
    by_path: dict[Path, LabelledFace] = {}
    conflicts: dict[Path, str] = {}
    for f in faces:
        first = by_path.setdefault(f.path, f)
        if first.label != f.label:
            conflicts[f.path] = f"{f.path.name}: labelled {first.label!r} ({first.where}) and {f.label!r} ({f.where})"
    kept = [f for p, f in by_path.items() if p not in conflicts]
    return kept, list(conflicts.values())


def from_manifest(manifest: Manifest) -> list[LabelledFace]:
    return [LabelledFace(t.source, t.source_expression, "manifest", f"{manifest.path.name} row {t.row}")
            for t in manifest if t.source_expression]


def from_sequences(seqs: SequenceFile) -> list[LabelledFace]:
    return [LabelledFace(s.frames[-1], s.target, "sequences", f"{seqs.path.name} entry {s.index} (last frame)")
            for s in seqs.sequences]


def read_labels_csv(path: str | Path) -> list[LabelledFace]:
    """`image,label` rows, image paths relative to the CSV; every bad row is named at once."""
    path = Path(path).expanduser().resolve()
    if not path.is_file():
        raise LabelError(f"{path}: labels file not found")
    problems: list[str] = []
    faces: list[LabelledFace] = []
    with open(path, encoding="utf-8-sig", newline="") as fh:
        reader = csv.DictReader(fh)
        fields = [c.strip().lower() for c in (reader.fieldnames or [])]
        if "image" not in fields or "label" not in fields:
            raise LabelError(f"{path}: expected the columns image,label (found {', '.join(fields) or 'none'})")
        for n, raw in enumerate(reader, 2):  # row 1 is the header
            row = {(k or "").strip().lower(): (v or "").strip() for k, v in raw.items()}
            image, label_raw = row.get("image", ""), row.get("label", "")
            label = normalise_expression(label_raw)
            if not image:
                problems.append(f"row {n}: empty image")
                continue
            if label is None:
                problems.append(f"row {n}: unknown label {label_raw!r}; expected one of {', '.join(EXPRESSIONS)}")
                continue
            full = (path.parent / image).resolve()
            if not full.is_file():
                problems.append(f"row {n}: file not found: {image!r} (looked at {full})")
                continue
            faces.append(LabelledFace(full, label, "csv", f"{path.name} row {n}"))
    if problems:
        raise LabelError(f"{path}: {len(problems)} problem(s)\n" + "\n".join(f"  {p}" for p in problems))
    if not faces:
        raise LabelError(f"{path}: no labelled rows")
    return faces


def perceive_files(paths: list[Path], config: PerceptionConfig, cache_path: Path,
                   progress: bool = False) -> dict[Path, ImageFeatures | str]:
    """Features of each file from the cache, perceiving (and caching) only the missing ones.
    A file that cannot be read maps to the reason instead. `progress`: a bar on stderr."""
    paths = list(dict.fromkeys(paths))
    with PerceptionService(config, cache_path) as service, progress_bar(progress) as bar:
        task = bar.add_task("faces", total=len(paths)) if bar else None
        return service.perceive_files(paths, bar, task)


NO_FACE = "no_face"  # the prediction for a labelled image in which no face was found: wrong for every class


def confusion(truth: list[str], predicted: list[str]) -> np.ndarray:
    """7 x 8 counts, rows = true class, columns = predicted (EXPRESSIONS order, then no face found)."""
    m = np.zeros((len(EXPRESSIONS), len(EXPRESSIONS) + 1), dtype=int)
    for t, p in zip(truth, predicted):
        m[EXPRESSIONS.index(t), len(EXPRESSIONS) if p == NO_FACE else EXPRESSIONS.index(p)] += 1
    return m


def accuracy_report(truth: list[str], predicted: list[str]) -> dict[str, Any]:
    """Accuracy, per-class accuracy (recall) and balanced accuracy over the classes present.
    An image predicted NO_FACE counts in its class's total and is never correct."""
    cm = confusion(truth, predicted)
    per_class = {}
    for i, c in enumerate(EXPRESSIONS):
        n = int(cm[i].sum())
        if n:
            per_class[c] = {"n": n, "correct": int(cm[i, i]), "no_face": int(cm[i, -1]),
                            "accuracy": round(cm[i, i] / n, 4)}
    n = len(truth)
    return {
        "n": n,
        "accuracy": round(float(np.trace(cm[:, : len(EXPRESSIONS)])) / n, 4) if n else None,
        "balanced_accuracy": round(float(np.mean([cm[i, i] / cm[i].sum() for i in range(len(EXPRESSIONS))
                                                  if cm[i].sum()])), 4) if per_class else None,
        "per_class": per_class,
        "confusion": {"labels": list(EXPRESSIONS), "columns": [*EXPRESSIONS, NO_FACE],
                      "rows_true_columns_predicted": cm.tolist()},
    }


ENSEMBLE = "ensemble"


def evaluate(faces: list[LabelledFace], features: dict[Path, ImageFeatures | str]) -> dict[str, Any]:
    """Per labelled set (and all together): the ensemble's and each member's accuracy. An image without a
    face (or unreadable) is listed and counted wrong for every recogniser."""
    sets: dict[str, list[LabelledFace]] = {}
    for f in faces:
        sets.setdefault(f.origin, []).append(f)
    if len(sets) > 1:
        sets["all"] = faces
    result: dict[str, Any] = {}
    for name, group in sets.items():
        truth: list[str] = []
        preds: dict[str, list[str]] = {}
        no_face = []
        names = next((feats.member_names for f in group
                      if isinstance(feats := features.get(f.path), ImageFeatures)), [])
        for f in group:
            feats = features.get(f.path)
            truth.append(f.label)
            if not isinstance(feats, ImageFeatures) or not feats.faces:
                no_face.append({"image": str(f.path), "where": f.where,
                                "reason": feats if isinstance(feats, str) else "no face found"})
                for m in [ENSEMBLE, *names]:
                    preds.setdefault(m, []).append(NO_FACE)
                continue
            face = feats.faces[0]  # the largest face, as the subject of a source
            preds.setdefault(ENSEMBLE, []).append(EXPRESSIONS[int(np.argmax(face.emotion))])
            for member, probs in zip(feats.member_names, face.members):
                preds.setdefault(member, []).append(EXPRESSIONS[int(np.argmax(probs))])
        result[name] = {
            "images": len(group), "no_face": no_face,
            "by_recogniser": {m: accuracy_report(truth, p) for m, p in preds.items()},
        }
    return result


def collect(manifest: Manifest | None, seqs: SequenceFile | None, labels_csv: Path | None
            ) -> tuple[list[LabelledFace], list[str]]:
    faces: list[LabelledFace] = []
    conflicts: list[str] = []
    for group in (from_manifest(manifest) if manifest else [],
                  from_sequences(seqs) if seqs else [],
                  read_labels_csv(labels_csv) if labels_csv else []):
        kept, bad = _dedupe(group)
        faces += kept
        conflicts += bad
    return faces, conflicts


def run_labels(labels_csv: Path, out: Path, config: PerceptionConfig, cache_path: Path,
               progress: bool = False) -> dict[str, Any]:
    """`fedbench meta --labels FILE.csv` on its own: every recogniser's accuracy on labelled faces, to
    out/meta.json (the recogniser section of a full meta run) and out/meta.md."""
    faces, conflicts = collect(None, None, labels_csv)
    feats = perceive_files([f.path for f in faces], config, cache_path, progress=progress)
    sets = evaluate(faces, feats)
    meta = {"labels": str(Path(labels_csv).resolve()), "perception": config.model_dump(mode="json"),
            "recogniser": {"sets": sets, "label_conflicts": conflicts,
                           "recognisers": sorted({m for s in sets.values() for m in s["by_recogniser"]})}}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "meta.json").write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    from fedbench.meta.report import render_recogniser

    (out / "meta.md").write_text("# Emotion recogniser\n\n" + "\n".join(render_recogniser(meta["recogniser"])) + "\n",
                                 encoding="utf-8")
    return meta
