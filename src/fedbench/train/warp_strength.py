"""`fedbench train warp --model strength` (the default): one strength per target for the reference
fields, chosen by FED-Score itself on the training pairs, validated on held-out people.

Why not fit the fields' landmarks (`--model additive`, warp_fit.py)? On people it has not seen, a
landmark fit loses to the reference warp (docs/training.md, benchmarks/warp_finetune.py): the
ground truths' landmark moves differ from person to person about as much as they differ from zero,
and what FED rewards is an expression change the recognisers see, in the ground truth's direction
and size (REG), with the face kept (Fidelity). The reference fields point the right way; what they
get wrong is how far: on the PixelSmile sliders the reference warp's expression gain g is 0.1-0.5
of the ground truth's (REG punishes halving as much as doubling). So the model has one number per
target, a_t (the field is a_t x reference_t, blind to the source expression as the reference
editor is), and it is chosen on what the benchmark measures.

Fit. For every training pair and every strength of the grid, the source is warped with the
target's reference field at that strength and scored against the pair's ground truth by the core
scorer (`metrics.fedscore.score_triplet`, the perception of `fedbench eval`): a table of FED per
(pair, strength), computed once. Three rules turn the table into strengths:
  - "reference": a_t = 1 for every target (the untrained editor);
  - "global": one a for every target, the grid value with the best mean FED;
  - "shrunk": a_t per target from that target's FED curve shrunk towards the global one, each
    a mean per person: (n_t x curve_t + SHRINK x curve_all) / (n_t + SHRINK), n_t the people with
    pairs of t. A target seen on one or two people (a slider person holds one target) no longer
    follows that person's whims; one seen on many keeps its own best strength;
  - "per_target": a_t per target from that target's pairs (a target without pairs takes the
    global a).
Means are per person first (each identity, else source image, counts once: a person with 30
pairs does not outvote three with two), then over people. The rule is chosen by K-fold
cross-validation over whole people (`data.assign_folds`): each rule fitted on the other folds and
scored by the held-out people's FED in the table, so the choice costs no extra scoring. Ties go
to the simpler rule (reference, then global). The chosen rule is refitted on every pair.
"""

from __future__ import annotations

import time
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from rich.console import Console

from fedbench.data.manifest import Manifest, Triplet
from fedbench.editors.warp import WarpFields, reference_field, warp_expression
from fedbench.labels import EXPRESSIONS
from fedbench.metrics.fedscore import FEDSCORE_VERSION
from fedbench.train.data import (Folds, assign_folds, data_provenance, group_of, note_skip, unusable_pair,
                                 warp_checkpoint_inputs)

TRAINER = "fedbench train warp --model strength"
TRAINER_VERSION = "2"  # 2: the "shrunk" rule
DEFAULT_STRENGTHS: tuple[float, ...] = (0.5, 0.75, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0)
RULES: tuple[str, ...] = ("reference", "global", "shrunk", "per_target")  # simplest first: ties go to the earlier
SHRINK = 2.0  # "shrunk": the global curve counts as this many people
NEUTRAL = "neutral"


@dataclass
class StrengthTable:
    """FED of the reference field at each strength, per usable training pair (NaN: FED undefined,
    e.g. a ground truth without measurable change)."""

    ids: list[str]
    targets: list[str]
    groups: list[str]
    identities: list[str | None]
    sources: list[str]
    strengths: tuple[float, ...]
    fed: np.ndarray  # pairs x strengths
    skipped: Counter = field(default_factory=Counter)
    skipped_rows: list[dict[str, Any]] = field(default_factory=list)

    def subset(self, idx: Sequence[int]) -> "StrengthTable":
        pick = list(idx)
        return StrengthTable([self.ids[i] for i in pick], [self.targets[i] for i in pick],
                             [self.groups[i] for i in pick], [self.identities[i] for i in pick],
                             [self.sources[i] for i in pick], self.strengths, self.fed[pick])


def _per_person_mean(fed: np.ndarray, groups: Sequence[str]) -> np.ndarray:
    """Mean FED per strength: per person first, then over people (NaN rows ignored)."""
    by: dict[str, list[int]] = {}
    for i, g in enumerate(groups):
        by.setdefault(g, []).append(i)
    with warnings.catch_warnings():  # an all-NaN column (no FED at that strength) stays NaN, silently
        warnings.simplefilter("ignore", RuntimeWarning)
        people = [np.nanmean(fed[rows], axis=0) for rows in by.values()]
        return np.nanmean(np.stack(people), axis=0) if people else np.full(fed.shape[1], np.nan)


def _best(means: np.ndarray, strengths: Sequence[float]) -> float | None:
    """The grid strength with the highest mean; ties to the one nearest 1 (the reference)."""
    if not np.isfinite(means).any():
        return None
    top = np.nanmax(means)
    near = [s for s, m in zip(strengths, means) if np.isfinite(m) and m >= top - 1e-9]
    return float(min(near, key=lambda s: (abs(np.log(s)), s)))


def fit_rule(table: StrengthTable, rule: str) -> dict[str, float]:
    """Strength per emotion (every non-neutral class) under `rule`, from the pairs of `table`."""
    emotions = [e for e in EXPRESSIONS if e != NEUTRAL]
    if rule == "reference":
        return {e: 1.0 for e in emotions}
    curve = _per_person_mean(table.fed, table.groups)
    overall = _best(curve, table.strengths) or 1.0
    if rule == "global":
        return {e: overall for e in emotions}
    if rule not in ("per_target", "shrunk"):
        raise ValueError(f"unknown rule {rule!r}; expected one of {', '.join(RULES)}")
    out = {}
    for e in emotions:
        rows = [i for i, t in enumerate(table.targets) if t == e]
        best = None
        if rows:
            groups = [table.groups[i] for i in rows]
            own = _per_person_mean(table.fed[rows], groups)
            if rule == "shrunk":
                n = len(set(groups))
                # a strength where the target's own curve has no FED falls back to the global curve
                own = np.where(np.isfinite(own), (n * own + SHRINK * curve) / (n + SHRINK), curve)
            best = _best(own, table.strengths)
        out[e] = overall if best is None else best
    return out


def rule_fed(table: StrengthTable, strengths: dict[str, float]) -> list[float]:
    """FED of each pair of `table` at the strength `strengths` gives its target (grid lookup)."""
    col = {s: j for j, s in enumerate(table.strengths)}
    return [float(table.fed[i, col[strengths[t]]]) for i, t in enumerate(table.targets)]


@dataclass
class RuleValidation:
    folds: Folds
    seed: int
    table: list[dict[str, Any]]  # per rule: held-out FED (mean per person) and per fold
    best: str
    fed: float


def cross_validate_rules(table: StrengthTable, k: int = 5, seed: int = 0,
                         rules: Sequence[str] = RULES) -> RuleValidation:
    """Held-out FED (mean per held-out person) of each rule, folds by person."""
    folds = assign_folds(table.targets, table.identities, table.sources, k, seed)
    rows = []
    for rule in rules:
        held_fed: list[float] = []
        held_groups: list[str] = []
        for j in range(folds.k):
            train = [i for i, f in enumerate(folds.fold) if f != j]
            test = [i for i, f in enumerate(folds.fold) if f == j]
            if not train or not test:
                continue
            strengths = fit_rule(table.subset(train), rule)
            held_fed += rule_fed(table.subset(test), strengths)
            held_groups += [table.groups[i] for i in test]
        mean = float(_per_person_mean(np.array(held_fed)[:, None], held_groups)[0]) if held_fed else float("nan")
        rows.append({"rule": rule, "held_out_fed": mean, "n": int(np.isfinite(held_fed).sum())})
    finite = [r for r in rows if np.isfinite(r["held_out_fed"])]
    if not finite:
        raise ValueError("no held-out pair has a FED (every ground truth shows no measurable change?)")
    top = max(r["held_out_fed"] for r in finite)
    best = next(r for r in finite if r["held_out_fed"] >= top - 1e-9)  # rules are listed simplest first
    return RuleValidation(folds, seed, rows, best["rule"], best["held_out_fed"])


# --- measuring the table: warp and score every pair at every strength -------------------------------

def measure_strengths(triplets: Sequence[Triplet], strengths: Sequence[float] = DEFAULT_STRENGTHS,
                      version: str = FEDSCORE_VERSION, progress: bool = False,
                      console: Console | None = None) -> StrengthTable:
    """The FED table. Each source and ground truth is read and perceived once; rows whose images
    are unreadable or show no face, and same-expression rows, are skipped with a counted reason."""
    from fedbench.data.images import decode_image
    from fedbench.faces.perception import Perceiver
    from fedbench.metrics.fedscore import ImageOutcome, background_measure, score_triplet
    from fedbench.metrics.spec import get_spec
    from fedbench.progress import progress_bar

    strengths = tuple(float(s) for s in strengths)
    if not strengths or any(s <= 0 for s in strengths):
        raise ValueError(f"strengths must be positive, got {strengths}")
    spec = get_spec(version)
    perceiver = Perceiver(spec.perception())  # the recogniser the version was defined with, as scoring
    memo: dict[Path, tuple[Any, np.ndarray] | str] = {}

    def perceived(path: Path) -> tuple[Any, np.ndarray] | str:
        if path not in memo:
            try:
                rgb = decode_image(path.read_bytes(), perceiver.config.max_side).rgb
            except Exception as exc:  # a broken file is that row's skip reason, not a crash
                memo[path] = f"unreadable: {type(exc).__name__}: {exc}"[:200]
            else:
                feats = perceiver.perceive(rgb)
                memo[path] = (feats, rgb) if feats.faces else "no face"
        return memo[path]

    ids, targets, groups, identities, sources, fed_rows = [], [], [], [], [], []
    skipped: Counter = Counter()
    skipped_rows: list[dict[str, Any]] = []
    try:
        with progress_bar(progress, console) as bar:
            task = bar.add_task("warp strengths", total=len(triplets)) if bar else None
            for t in triplets:
                reason = None
                if t.source_expression is not None and t.source_expression == t.target:
                    reason = "same_expression"
                elif t.target == NEUTRAL:
                    reason = "target_neutral"  # the reference has no neutral field to scale
                else:
                    s, g = perceived(t.source), perceived(t.ground_truth)
                    reason = unusable_pair(s, g)
                    if reason is None:
                        (s_feat, s_rgb), (g_feat, g_rgb) = s, g
                        s_face = s_feat.faces[0]
                        bg_gt = bg_chroma_gt = None
                        if spec.uses_gt_background:  # what G did to the background, measured as scoring does
                            bg_gt, _, bg_chroma_gt = background_measure(s_rgb, g_rgb, s_face, g_feat.primary(s_face.box),
                                                                        spec.bg_register)
                        px = s_face.landmarks[:, :2].astype(np.float64) * [s_rgb.shape[1], s_rgb.shape[0]]
                        ref = reference_field(t.target)
                        row = []
                        for a in strengths:
                            edit = warp_expression(s_rgb, px, ref, a)
                            e_feat = perceiver.perceive(edit)
                            scored = score_triplet(t.id, t.target, t.instruction, ImageOutcome(s_feat),
                                                   ImageOutcome(g_feat), ImageOutcome(e_feat), s_rgb, edit,
                                                   perceiver.identity_threshold, version, bg_gt=bg_gt,
                                                   bg_chroma_gt=bg_chroma_gt)
                            row.append(np.nan if scored["fed"] is None else float(scored["fed"]))
                        ids.append(t.id)
                        targets.append(t.target)
                        groups.append(group_of(t.identity, t.source))
                        identities.append(t.identity)
                        sources.append(str(t.source))
                        fed_rows.append(row)
                note_skip(skipped, skipped_rows, t, reason)
                if bar:
                    bar.advance(task)
    finally:
        perceiver.close()
    fed = np.array(fed_rows, dtype=np.float64).reshape(len(fed_rows), len(strengths))
    return StrengthTable(ids, targets, groups, identities, sources, strengths, fed, skipped, skipped_rows)


# --- the command ---------------------------------------------------------------------------------

@dataclass
class StrengthTrainResult:
    out: Path
    fields: WarpFields
    validation: RuleValidation
    table: StrengthTable
    strengths: dict[str, float]
    meta: dict[str, Any] = field(default_factory=dict)


def fields_from_strengths(strengths: dict[str, float]) -> dict[str, np.ndarray]:
    """Checkpoint fields: the target's own key, a_t x reference_t; no source>target keys, so the
    editor uses it for every source, as it does the reference."""
    return {t: a * reference_field(t) for t, a in sorted(strengths.items())}


def train_strength(data: str | Path | Manifest, out: str | Path, *, folds: int = 5, seed: int = 0,
                   strengths: Sequence[float] = DEFAULT_STRENGTHS, rules: Sequence[str] = RULES,
                   version: str = FEDSCORE_VERSION, columns: dict[str, str] | None = None,
                   allow_outside: bool = False, overwrite: bool = False, progress: bool = True,
                   console: Console | None = None, table: StrengthTable | None = None) -> StrengthTrainResult:
    """Choose the strengths on the pairs of `data` and write a checkpoint folder to `out`. `table`
    reuses a table measured on (a superset of) these rows: the benchmark measures once for every
    person and refits per held-out person; the result is the same as measuring again."""
    from fedbench import __version__

    console = console or Console(stderr=True)
    out, manifest = warp_checkpoint_inputs(data, out, columns, allow_outside, overwrite)
    t0 = time.perf_counter()
    if table is None:
        table = measure_strengths(manifest.triplets, strengths, version, progress, console)
    else:
        where = {i: n for n, i in enumerate(table.ids)}
        rows = {t.id: t.row for t in manifest.triplets}
        skipped_rows = [{**r, "row": rows[r["id"]]} for r in table.skipped_rows if r["id"] in rows]
        table = table.subset([where[t.id] for t in manifest.triplets if t.id in where])
        table.skipped_rows, table.skipped = skipped_rows, Counter(r["reason"] for r in skipped_rows)
    for reason, n in sorted(table.skipped.items()):
        rows = [r for r in table.skipped_rows if r["reason"] == reason]
        shown = ", ".join(f"row {r['row']} ({r['id']})" for r in rows[:5]) + (" ..." if len(rows) > 5 else "")
        console.print(f"[yellow]skipped[/] {n} pair(s) of {manifest.path.name}: {reason}: {shown}")
    if len(table.ids) < 2:
        raise ValueError(f"{manifest.path}: {len(table.ids)} usable training pair(s) of {len(manifest)} rows "
                         f"(skipped: {dict(table.skipped)}); need at least 2")
    validation = cross_validate_rules(table, folds, seed, rules)
    chosen = fit_rule(table, validation.best)
    meta: dict[str, Any] = {
        "fitted": True, "model": "strength: field(t) = a_t x reference_t, any source",
        "trainer": TRAINER, "trainer_version": TRAINER_VERSION, "fedbench": __version__,
        "units": "inter-ocular distance, face frame (x towards the image right, y down)",
        "data": {**data_provenance(data, manifest), "rows": len(manifest),
                 "pairs": len(table.ids), "people": len(set(table.groups)),
                 "skipped": dict(sorted(table.skipped.items())), "skipped_rows": table.skipped_rows},
        "strengths": chosen, "rule": validation.best, "grid": list(table.strengths),
        "fedscore_version": version,
        "pairs_per_target": dict(sorted(Counter(table.targets).items())),
        "training_fed": {"per_strength_mean_per_person": [None if not np.isfinite(v) else round(float(v), 4)
                                                          for v in _per_person_mean(table.fed, table.groups)]},
        "validation": {"objective": "held-out FED (mean per held-out person) of each rule", "mode": validation.folds.mode,
                       "reason": validation.folds.reason, "folds": validation.folds.k, "seed": seed,
                       "fed": validation.fed, "rules": validation.table},
    }
    warp_fields = WarpFields(fields_from_strengths(chosen), meta)
    warp_fields.save(out)
    console.print(f"warp strengths from {len(table.ids)} pairs of {len(set(table.groups))} people in "
                  f"{time.perf_counter() - t0:.1f} s: rule {validation.best} (held-out FED "
                  + ", ".join(f"{r['rule']} {r['held_out_fed']:.2f}" for r in validation.table)
                  + f"; {validation.folds.k} folds by {validation.folds.mode}); "
                  + ", ".join(f"{t} {a:g}" for t, a in chosen.items()))
    return StrengthTrainResult(out, warp_fields, validation, table, chosen, meta)
