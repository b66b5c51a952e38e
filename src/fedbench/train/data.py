"""Training data for the baseline editors: pairs from a core manifest, seeded splits, graded sequences.

A training set is a core triplet manifest (`id, source, instruction, target, ground_truth`;
`source_expression` and `identity` optional), read by the same validator as every other manifest:
unknown targets, missing files and duplicate ids are one error naming each bad row before any work.

Splits are seeded and stratified by target. Validation folds keep an identity on one side where the
data has enough identities for that to mean something (see `assign_folds`); otherwise they split by
pair, and the reason is recorded.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from fedbench.data.manifest import Manifest, ManifestError, Problem, Triplet, read_manifest
from fedbench.labels import normalise_expression


def load_training_manifest(path: str | Path, columns: dict[str, str] | None = None,
                           allow_outside: bool = False) -> Manifest:
    """A core manifest used as training data (ManifestError names every bad row and file)."""
    return read_manifest(path, columns, allow_outside)


# --- seeded splits ---------------------------------------------------------------------------------

def stratified_holdout(items: Sequence[Triplet], n_per_class: int, seed: int) -> tuple[list[Triplet], list[Triplet]]:
    """(rest, held out): `n_per_class` triplets of each target held out, chosen with `seed`.

    A class with no more than `n_per_class` triplets keeps at least one on the training side.
    Order inside each side follows the input (manifest order), so the split is a pure function of
    (items, n_per_class, seed).
    """
    rng = np.random.default_rng(seed)
    by_target: dict[str, list[int]] = defaultdict(list)
    for i, t in enumerate(items):
        by_target[t.target].append(i)
    held: set[int] = set()
    for target in sorted(by_target):
        idx = by_target[target]
        k = min(n_per_class, len(idx) - 1)
        if k > 0:
            held.update(int(j) for j in rng.choice(idx, size=k, replace=False))
    return [t for i, t in enumerate(items) if i not in held], [t for i, t in enumerate(items) if i in held]


@dataclass(frozen=True)
class Folds:
    fold: list[int]  # fold index of each item
    k: int
    mode: str  # "identity" or "pair"
    reason: str


def assign_folds(targets: Sequence[str], identities: Sequence[str | None], k: int, seed: int,
                 min_identities: int | None = None) -> Folds:
    """Cross-validation folds for choosing a regularisation strength on held-out data.

    By identity when the data has at least `min_identities` (default k) distinct identities and none
    holds more than half of the pairs: a fold then holds out whole people, as a new benchmark would.
    Otherwise (one or two people, or one person dominating: a held-out fold would leave almost no
    training data) by pair. Either way folds are filled in a seeded order, stratified by target.
    """
    n = len(targets)
    if n < 2:
        raise ValueError(f"need at least 2 training pairs to hold any out for validation, got {n}")
    k = max(2, min(k, n))
    min_identities = k if min_identities is None else min_identities
    rng = np.random.default_rng(seed)
    known = [i for i in identities if i]
    counts = Counter(known)
    if len(known) == n and len(counts) >= min_identities and max(counts.values()) <= n / 2:
        # Whole identities, largest first (seeded tie order), each to the fold with fewest pairs so far.
        ids = sorted(counts, key=lambda x: (-counts[x], rng.random()))
        size = [0] * k
        where: dict[str, int] = {}
        for ident in ids:
            f = int(np.argmin(size))
            where[ident] = f
            size[f] += counts[ident]
        return Folds([where[i] for i in identities], k, "identity",
                     f"{len(counts)} identities, largest {max(counts.values())} of {n} pairs")
    why = ("identities missing on some rows" if len(known) < n
           else f"{len(counts)} identit{'y' if len(counts) == 1 else 'ies'} (need {min_identities}, "
                f"none above half the pairs)")
    fold = [0] * n
    by_target: dict[str, list[int]] = defaultdict(list)
    for i, t in enumerate(targets):
        by_target[t].append(i)
    offset = 0
    for target in sorted(by_target):
        idx = list(by_target[target])
        rng.shuffle(idx)
        for j, i in enumerate(idx):
            fold[i] = (offset + j) % k
        offset += len(idx)  # continue the round-robin so small classes do not all land in fold 0
    return Folds(fold, k, "pair", why)


# --- graded sequences -> training pairs -----------------------------------------------------------

def pairs_from_sequences(path: str | Path, first: int = 0, last: int = -1) -> tuple[list[dict[str, Any]], Counter]:
    """Training rows (core manifest fields) from a graded-sequence file: a JSON list of
    `{id, frames: [paths...], target}` where frame `first` is the unedited photo and later frames
    raise the target expression. One pair per sequence: frames[first] -> frames[last].

    Each sequence is its own identity (its id). Paths stay relative to the sequence file's folder.
    Sequences whose target is not one of the seven classes are skipped and counted.
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
        rows.append({"id": f"{seq['id']}-{first:02d}-to-{(last % len(frames)):02d}", "source": frames[first],
                     "ground_truth": frames[last], "target": target, "identity": str(seq["id"]),
                     "instruction": f"Change the expression to {target}."})
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
class SplitFiles:
    train: Path
    test: Path
    n_train: int
    n_test: int
    n_sequence_pairs: int
    skipped_sequences: dict[str, int]


def write_split_manifests(manifest: Manifest, out_dir: Path, n_test_per_class: int, seed: int,
                          sequences: Path | None = None) -> SplitFiles:
    """train.jsonl / test.jsonl in `out_dir`: a seeded split of `manifest` stratified by target (for
    a benchmark of one identity, where an identity split is impossible), plus the graded sequences'
    first -> last frame pairs on the training side. Paths are absolute: read them with allow_outside."""
    out_dir.mkdir(parents=True, exist_ok=True)
    train, test = stratified_holdout(manifest.triplets, n_test_per_class, seed)
    train_rows = [triplet_row(t) for t in train]  # absolute paths
    skipped: Counter = Counter()
    n_seq = 0
    if sequences is not None:
        seq_rows, skipped = pairs_from_sequences(sequences)
        base = Path(sequences).resolve().parent
        for r in seq_rows:
            train_rows.append({**r, "source": str(base / r["source"]), "ground_truth": str(base / r["ground_truth"])})
        n_seq = len(seq_rows)
    test_rows = [{**triplet_row(t), "split": "test"} for t in test]
    paths = out_dir / "train.jsonl", out_dir / "test.jsonl"
    for path, rows in zip(paths, (train_rows, test_rows)):
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return SplitFiles(paths[0], paths[1], len(train_rows), len(test_rows), n_seq, dict(skipped))
