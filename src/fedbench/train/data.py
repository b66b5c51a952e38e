"""Training data for the baseline editors: pairs from a core manifest, seeded splits, graded sequences.

A training set is a core triplet manifest (`id, source, instruction, target, ground_truth`;
`source_expression` and `identity` optional), read by the same validator as every other manifest:
unknown targets, missing files and duplicate ids are one error naming each bad row before any work.

Held-out data is always a different face: validation folds hold out whole identities, or whole
source images where a row names no identity (`assign_folds`), never single pairs; the benchmark
holds out one person at a time (`people_rows` gives every row its person).
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from fedbench.data.manifest import Manifest, ManifestError, Problem, Triplet, read_manifest
from fedbench.labels import normalise_expression
from fedbench.models.store import sha256_of


def load_training_manifest(path: str | Path, columns: dict[str, str] | None = None,
                           allow_outside: bool = False) -> Manifest:
    """A core manifest used as training data (ManifestError names every bad row and file)."""
    return read_manifest(path, columns, allow_outside)


# --- validation folds ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Folds:
    fold: list[int]  # fold index of each item
    k: int
    mode: str  # what a fold holds out whole: "identity", "source image" or "identity, else source image"
    reason: str


def warp_checkpoint_inputs(data: str | Path | Manifest, out: str | Path, columns: dict[str, str] | None,
                           allow_outside: bool, overwrite: bool) -> tuple[Path, Manifest]:
    """The output folder (refused when it already holds a warp checkpoint, unless `overwrite`) and the
    training manifest (read and checked here unless given already read)."""
    out = Path(out)
    if (out / "checkpoint.json").exists() and not overwrite:
        raise FileExistsError(f"{out} already holds a warp checkpoint; pass --overwrite to replace it")
    manifest = data if isinstance(data, Manifest) else load_training_manifest(data, columns, allow_outside)
    return out, manifest


def rows_sha256(manifest: Manifest) -> str:
    """sha256 of a manifest's rows by content: every field but the paths, and the sha256 of each
    row's source and ground-truth image, in row order. The same dataset as a Parquet file, a shard
    folder, a save_to_disk folder or an hf:// snapshot gives the same digest, wherever it lies."""
    h = hashlib.sha256()
    for t in manifest.triplets:
        fields = t.model_dump(mode="json", exclude={"source", "ground_truth", "row"})
        fields.update(source=sha256_of(t.source), ground_truth=sha256_of(t.ground_truth))
        h.update(json.dumps(fields, sort_keys=True).encode() + b"\n")
    return h.hexdigest()


def data_provenance(data: str | Path | Manifest, manifest: Manifest) -> dict[str, str]:
    """What a checkpoint records of its training data: where it was read from and a sha256.

    A JSONL/CSV manifest is one file: its bytes' sha256 (as checkpoints always recorded). A hub
    manifest (Parquet/Arrow file, dataset folder, hf:// dataset) may be a folder or a download
    snapshot, so its rows are hashed instead (`rows_sha256`), and an hf:// URL is recorded as given,
    not as the local snapshot folder it was downloaded to."""
    from fedbench.data import hub

    if not hub.is_hub_manifest(manifest.path):
        return {"path": str(manifest.path), "sha256": sha256_of(manifest.path)}
    url = None if isinstance(data, Manifest) else hub.hf_url(data)
    return {"path": url or str(manifest.path), "sha256": rows_sha256(manifest), "sha256_of": "rows"}


def unusable_pair(source: object, ground_truth: object) -> str | None:
    """The skip reason of a pair whose source or ground truth was perceived as a problem string ("no face"
    or why it is unreadable) instead of a face; None when both are usable."""
    if isinstance(source, str):
        return "no_face_source" if source == "no face" else "unreadable_source"
    if isinstance(ground_truth, str):
        return "no_face_ground_truth" if ground_truth == "no face" else "unreadable_ground_truth"
    return None


def note_skip(skipped: Counter, skipped_rows: list[dict[str, Any]], t: Triplet, reason: str | None) -> None:
    """Count a skipped row by reason and keep its id and row number (the commands report both)."""
    if reason:
        skipped[reason] += 1
        skipped_rows.append({"id": t.id, "row": t.row, "reason": reason})


def group_of(identity: str | None, source: str | Path | None) -> str:
    """The group a training pair belongs to for held-out validation: its person (`identity`), else its
    source image. Never the pair itself: two pairs from one source photo (or one person) on both sides
    of a fold would reward memorising that face."""
    if identity:
        return f"identity:{identity}"
    if source is None or str(source) == "":
        raise ValueError("a training pair needs an identity or a source image to be grouped for validation")
    return f"source:{source}"


def assign_folds(targets: Sequence[str], identities: Sequence[str | None], sources: Sequence[str | Path | None],
                 k: int, seed: int) -> Folds:
    """Cross-validation folds that hold out whole groups: a pair's identity, or its source image where
    the row names no identity (`group_of`); data of one person only is grouped by source image (mode
    "source image (one person only)": held-out photos, not a new face). k is capped at the number
    of groups (leave-one-group-out when there are fewer groups than folds). Groups go largest first (seeded order among equal
    sizes) to the fold with the fewest pairs so far, so folds stay balanced."""
    n = len(targets)
    if n < 2:
        raise ValueError(f"need at least 2 training pairs to hold any out for validation, got {n}")
    groups = [group_of(i, s) for i, s in zip(identities, sources)]
    counts = Counter(groups)
    one_person = len(counts) == 1 and all(identities)
    if one_person:
        # One person only: no other face exists to hold out. Other photos of that person are the next
        # best thing (never the pair itself); the mode says so, since it measures less than a new face.
        groups = [group_of(None, s) for s in sources]
        counts = Counter(groups)
    if len(counts) < 2:
        raise ValueError(f"all {n} training pairs come from one person and one source image ({groups[0]}): "
                         "validation needs pairs of at least 2 people (identity column) or source images, so "
                         "that a held-out fold is a face (or at least a photo) the fit has not seen")
    k = max(2, min(k, len(counts)))
    rng = np.random.default_rng(seed)
    order = sorted(counts, key=lambda g: (-counts[g], rng.random()))
    size = [0] * k
    where: dict[str, int] = {}
    for g in order:
        f = int(np.argmin(size))
        where[g] = f
        size[f] += counts[g]
    named = sum(1 for i in identities if i)
    mode = ("source image (one person only)" if one_person else "identity" if named == n
            else "source image" if named == 0 else "identity, else source image")
    return Folds([where[g] for g in groups], k, mode,
                 f"{len(counts)} groups ({named} of {n} pairs name an identity), largest {max(counts.values())} pairs")


# --- graded sequences -> training pairs -----------------------------------------------------------

def pairs_from_sequences(path: str | Path, first: int = 0,
                         gt_frames: Sequence[int] | None = None) -> tuple[list[dict[str, Any]], Counter]:
    """Training rows (core manifest fields) from a graded-sequence file: a JSON list of
    `{id, frames: [paths...], target}` (optional `identity`) where frame `first` is the unedited photo
    and later frames raise the target expression. One pair per ground-truth frame: frames[first] ->
    frames[g] for g in `gt_frames` (default: the middle and the last frame, a moderate and a full
    expression, so a fit learns the range a benchmark asks for rather than the extreme alone).

    Each sequence is one identity (its `identity`, else its id). Paths stay relative to the sequence
    file's folder. Sequences whose target is not one of the seven classes are skipped and counted.
    """
    path = Path(path)
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, list):
        raise ManifestError(path, [Problem(0, "a sequence file must hold a JSON list of {id, frames, target}")])
    rows: list[dict[str, Any]] = []
    skipped: Counter = Counter()
    problems: list[Problem] = []
    for n, seq in enumerate(data, 1):
        if not isinstance(seq, dict) or not isinstance(seq.get("frames"), list) or not seq.get("id"):
            problems.append(Problem(n, "expected {id, frames: [...], target}"))
            continue
        target = normalise_expression(str(seq.get("target", "")))
        if target is None:
            skipped[f"target {seq.get('target')!r} is not one of the seven classes"] += 1
            continue
        frames = seq["frames"]
        if len(frames) < 2:
            problems.append(Problem(n, f"needs at least 2 frames, has {len(frames)}", str(seq["id"])))
            continue
        wanted = gt_frames if gt_frames is not None else (len(frames) // 2, len(frames) - 1)
        for g in sorted({int(g) % len(frames) for g in wanted} - {first % len(frames)}):
            rows.append({"id": f"{seq['id']}-{first:02d}-to-{g:02d}", "source": frames[first],
                         "ground_truth": frames[g], "target": target,
                         "identity": str(seq.get("identity") or seq["id"]),
                         "instruction": f"Change the expression to {target}.",
                         "meta": {"sequence": str(seq["id"]), "frame": g, "frames": len(frames)}})
    if problems:
        raise ManifestError(path, problems)
    return rows, skipped


def triplet_row(t: Triplet, root: Path | None = None) -> dict[str, Any]:
    """A manifest row for `t`, paths relative to `root` where they are under it, else absolute."""
    def rel(p: Path) -> str:
        return p.relative_to(root).as_posix() if root is not None and p.is_relative_to(root) else str(p)

    row: dict[str, Any] = {"id": t.id, "source": rel(t.source), "instruction": t.instruction, "target": t.target,
                           "ground_truth": rel(t.ground_truth)}
    for key in ("source_expression", "identity", "split"):
        if getattr(t, key) is not None:
            row[key] = getattr(t, key)
    return row


@dataclass(frozen=True)
class PeopleRows:
    rows: list[dict[str, Any]]  # absolute paths, every row with its identity
    people: list[str]  # every person in the inputs, in input order (also those without a usable row)
    skipped_sequences: dict[str, int]


def people_rows(manifest: Manifest, sequences: Path | None = None,
                gt_frames: Sequence[int] | None = None) -> PeopleRows:
    """Every triplet of `manifest` plus the graded sequences' pairs, as manifest rows with absolute
    paths (read them with allow_outside) and an identity on every row, for holding out by person.
    A manifest row without an identity is an error naming it: it could be anyone's face."""
    missing = [t for t in manifest.triplets if not t.identity]
    if missing:
        raise ManifestError(manifest.path, [Problem(t.row, "no identity: a person-disjoint split needs one", t.id)
                                            for t in missing])
    rows = [triplet_row(t) for t in manifest.triplets]
    people = list(dict.fromkeys(t.identity for t in manifest.triplets if t.identity))
    skipped: Counter = Counter()
    if sequences is not None:
        seq_rows, skipped = pairs_from_sequences(sequences, gt_frames=gt_frames)
        base = Path(sequences).resolve().parent
        rows += [{**r, "source": str(base / r["source"]), "ground_truth": str(base / r["ground_truth"])}
                 for r in seq_rows]
        seqs = json.loads(Path(sequences).read_text(encoding="utf-8"))
        people += [str(s.get("identity") or s["id"]) for s in seqs if str(s.get("identity") or s["id"]) not in people]
    return PeopleRows(rows, people, dict(skipped))


def write_rows(path: Path, rows: Sequence[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path
