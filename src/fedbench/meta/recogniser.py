"""How well the emotion recogniser reads labelled faces (fedscore.md, meta-evaluation item 7).

Labels come from a manifest's `source_expression`, from the last frame of each graded sequence (it
shows the target at full intensity), or from a user CSV `image,label`. Accuracy, per-class accuracy
(recall) and the confusion matrix are given for the ensemble and for each member alone. Features come
from the same content-keyed cache as scoring, so faces already scored are not perceived again.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fedbench.data.manifest import Manifest
from fedbench.faces.perception import ImageFeatures, PerceptionConfig
from fedbench.faces.service import PerceptionService
from fedbench.labels import EXPRESSIONS, normalise_expression
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
    from rich.console import Console

    from fedbench.scoring.runner import _progress

    paths = list(dict.fromkeys(paths))
    with PerceptionService(config, cache_path) as service, _progress(progress, Console(stderr=True)) as bar:
        task = bar.add_task("faces", total=len(paths)) if bar else None
        return service.perceive_files(paths, bar, task)


def confusion(truth: list[str], predicted: list[str]) -> np.ndarray:
    """7 x 7 counts, rows = true class, columns = predicted, EXPRESSIONS order."""
    m = np.zeros((len(EXPRESSIONS), len(EXPRESSIONS)), dtype=int)
    for t, p in zip(truth, predicted):
        m[EXPRESSIONS.index(t), EXPRESSIONS.index(p)] += 1
    return m


def accuracy_report(truth: list[str], predicted: list[str]) -> dict[str, Any]:
    """Accuracy, per-class accuracy (recall) and balanced accuracy over the classes present."""
    cm = confusion(truth, predicted)
    per_class = {}
    for i, c in enumerate(EXPRESSIONS):
        n = int(cm[i].sum())
        if n:
            per_class[c] = {"n": n, "correct": int(cm[i, i]), "accuracy": round(cm[i, i] / n, 4)}
    n = len(truth)
    return {
        "n": n,
        "accuracy": round(float(np.trace(cm)) / n, 4) if n else None,
        "balanced_accuracy": round(float(np.mean([v["accuracy"] for v in per_class.values()])), 4) if per_class else None,
        "per_class": per_class,
        "confusion": {"labels": list(EXPRESSIONS), "rows_true_columns_predicted": cm.tolist()},
    }


def evaluate(faces: list[LabelledFace], features: dict[Path, ImageFeatures | str]) -> dict[str, Any]:
    """Per labelled set (and all together): the ensemble's and each member's accuracy."""
    sets: dict[str, list[LabelledFace]] = {}
    for f in faces:
        sets.setdefault(f.origin, []).append(f)
    if len(sets) > 1:
        sets["all"] = faces
    result: dict[str, Any] = {}
    for name, group in sets.items():
        truth: list[str] = []
        preds: dict[str, list[str]] = {}
        unusable = []
        for f in group:
            feats = features.get(f.path)
            if not isinstance(feats, ImageFeatures) or not feats.faces:
                unusable.append({"image": str(f.path), "where": f.where,
                                 "reason": feats if isinstance(feats, str) else "no face found"})
                continue
            face = feats.faces[0]  # the largest face, as the subject of a source
            truth.append(f.label)
            preds.setdefault("ensemble", []).append(EXPRESSIONS[int(np.argmax(face.emotion))])
            for member, probs in zip(feats.member_names, face.members):
                preds.setdefault(member, []).append(EXPRESSIONS[int(np.argmax(probs))])
        result[name] = {
            "images": len(group), "unusable": unusable,
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
