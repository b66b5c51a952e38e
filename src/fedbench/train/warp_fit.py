"""`fedbench train warp --model additive`: fit the warp editor's displacement fields from the
landmark moves of training pairs. (The default model, `--model strength`, is in warp_strength.py:
held out by person, this landmark fit loses to the reference warp on the shared fixtures.)

For each pair (source S, ground truth G): Face Landmarker points of both; G's similarity head motion
relative to S (scale, rotation, translation, fitted by Procrustes on points an expression barely
moves: eye corners and the nose bridge) is removed, so a ground truth with a slightly moved head or a
different resolution does not turn into a field; what is left, G' - S, goes into S's face frame
(inter-ocular units, `warp.to_face_frame`), the frame in which the editor applies a field.

Model. An expression is a shape offset from neutral: each class e has a field F_e (F_neutral = 0),
and the move from s to t is F_t - F_s. A pair key "s>t" with direct pairs from at least `min_pairs`
people also gets its own residual R_{s>t}. All of it is one ridge regression, the same for every landmark
coordinate:

    min  sum_i |d_i - (F_t - F_s + R_{s>t})|^2 + lam * sum_e |F_e - P_e|^2 + mu * sum_k |R_k|^2

with P_e the prior: the reference field, 0, or the reference field scaled per target ("scaled":
P_e = a_e * reference_e, one number per class fitted across every person, `fit_scales`). lam is
counted in pairs: the prior weighs as much as `lam` pairs. The additive form is why few pairs go
far: happy->sad is informed by every pair that starts or ends in happy or sad, not only by happy->sad pairs, and a pair type absent from training (the
case of a held-out test pair) still gets a field. A row without `source_expression` is taken as
starting from neutral (counted in the checkpoint).

(prior, lam, mu) are chosen by K-fold cross-validation on the training pairs, every fold holding
out whole people (the `identity` column; a row without one is grouped by its source image, never on
its own: `data.assign_folds`), scored per held-out person (each person's mean, then the mean over
people) by an objective: "reg" (default), FED's REG curve applied to the landmark moves
(`landmark_reg`), or "rmse", the root-mean-square over landmarks of |predicted - measured| in
inter-ocular units. The final fields are refitted on every training pair with the chosen setting.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from itertools import product
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
from rich.console import Console

from fedbench.data.manifest import Manifest, Triplet
from fedbench.editors.warp import N_LANDMARKS, WarpFields, field_key, reference_field, to_face_frame
from fedbench.labels import EXPRESSIONS
from fedbench.train.data import (Folds, assign_folds, data_provenance, group_of, note_skip, unusable_pair,
                                 warp_checkpoint_inputs)

TRAINER = "fedbench train warp --model additive"
TRAINER_VERSION = "2"  # 2: grouped folds, the "scaled" prior, residuals need several people
# Points that an expression barely moves (MediaPipe face mesh): the four eye corners and the nose
# bridge from between the eyes to the dorsum. Brows, lids, mouth, jaw and the nose tip (disgust
# wrinkles it) are left out: aligning on them would cancel part of the expression itself.
STABLE_POINTS: tuple[int, ...] = (33, 133, 362, 263, 168, 6, 197, 195)
NEUTRAL = "neutral"
_EMOTIONS = tuple(e for e in EXPRESSIONS if e != NEUTRAL)  # F_neutral = 0 is the origin

DEFAULT_LAMBDAS: tuple[float, ...] = (0.0, 0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 64.0, 1e6)
DEFAULT_MUS: tuple[float, ...] = (0.5, 2.0, 8.0, 1e6)
PRIORS: tuple[str, ...] = ("reference", "scaled", "zero")
DEFAULT_PRIORS = PRIORS
SCALE_PRIOR_PAIRS = 1.0  # the "scaled" prior's own anchor: a_e = 1 weighs as much as one pair
_EPS = 1e-8  # keeps the normal equations solvable at lam = 0 (the gauge of a neutral-free component)


# --- geometry ------------------------------------------------------------------------------------

def similarity_transform(src: np.ndarray, dst: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Least-squares similarity (Umeyama 1991): scale, 2x2 rotation, translation with
    scale * src @ R.T + t ~= dst. No reflection."""
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    mu_s, mu_d = src.mean(axis=0), dst.mean(axis=0)
    xs, xd = src - mu_s, dst - mu_d
    var_s = float((xs**2).sum()) / len(src)
    if var_s <= 0:
        raise ValueError("similarity_transform: the source points coincide")
    u, sig, vt = np.linalg.svd(xd.T @ xs / len(src))
    d = np.diag([1.0, float(np.sign(np.linalg.det(u @ vt)) or 1.0)])
    rot = u @ d @ vt
    scale = float(np.trace(np.diag(sig) @ d)) / var_s
    return scale, rot, mu_d - scale * rot @ mu_s


def remove_head_motion(source_px: np.ndarray, gt_px: np.ndarray,
                       points: Sequence[int] = STABLE_POINTS) -> np.ndarray:
    """G's landmarks mapped by the similarity that best puts its stable points onto S's."""
    idx = list(points)
    scale, rot, t = similarity_transform(gt_px[idx, :2], source_px[idx, :2])
    return scale * gt_px[:, :2] @ rot.T + t


def pair_field(source_px: np.ndarray, gt_px: np.ndarray) -> np.ndarray:
    """The expression move of one pair: N x 2 in S's face frame, head motion removed."""
    src = np.asarray(source_px, np.float64)[:, :2]
    return to_face_frame(src, remove_head_motion(src, np.asarray(gt_px, np.float64)) - src)


# --- observations ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class PairField:
    id: str
    source_expression: str  # canonical class; NEUTRAL when the row has none (assumed_neutral)
    target: str
    identity: str | None
    field: np.ndarray  # N_LANDMARKS x 2, face frame
    assumed_neutral: bool = False
    source: str | None = None  # the source image: the validation group of a row without identity

    @property
    def key(self) -> str:
        return field_key(self.target, self.source_expression)

    @property
    def group(self) -> str:
        return group_of(self.identity, self.source)


@dataclass
class Measured:
    pairs: list[PairField]
    skipped: Counter  # reason -> count
    skipped_rows: list[dict[str, Any]]  # {id, row, reason} for each skipped row


class _Landmarks:
    """Landmarks (pixels of the perceived working copy) per image file, from the shared perception
    service: a source shared by five pairs is read once, and an image perceived before (scored, say)
    is not perceived again. Pair fields are in inter-ocular units, so the resolution does not matter."""

    def __init__(self, cache_path: str | Path | None = None) -> None:
        from fedbench.faces.service import PerceptionService

        self._service = PerceptionService(None, cache_path)  # the default config: the warp editor's landmarks
        self._memo: dict[Path, np.ndarray | str] = {}

    def __call__(self, path: Path) -> np.ndarray | str:
        if path not in self._memo:
            p = self._service.perceive_path(path)
            if p.features is None:  # a broken file is that row's skip reason, not a crash
                self._memo[path] = f"unreadable: {p.problem}"[:200]
            else:
                face = p.features.primary()
                self._memo[path] = ("no face" if face is None
                                    else face.landmarks[:, :2].astype(np.float64) * p.features.size)
        return self._memo[path]

    def close(self) -> None:
        self._service.close()


def measure_pairs(triplets: Iterable[Triplet], progress: bool = False, console: Console | None = None,
                  cache_path: str | Path | None = None) -> Measured:
    """Landmark fields of every pair; rows whose source or ground truth is unreadable or shows no
    face, same-expression rows (nothing to learn) and rows into neutral without a source expression
    (which the model, taking an unknown source as neutral, cannot place) are skipped with a counted
    reason."""
    from fedbench.progress import progress_bar

    triplets = list(triplets)
    out = Measured([], Counter(), [])
    landmarks = _Landmarks(cache_path)
    try:
        with progress_bar(progress, console) as bar:
            task = bar.add_task("landmarks", total=len(triplets)) if bar else None
            for t in triplets:
                reason = None
                src_expr = t.source_expression or NEUTRAL
                if t.source_expression is None and t.target == NEUTRAL:
                    reason = "unknown_source_to_neutral"  # the model takes an unknown source as neutral
                elif src_expr == t.target:
                    reason = "same_expression"
                else:
                    s, g = landmarks(t.source), landmarks(t.ground_truth)
                    reason = unusable_pair(s, g)
                    if reason is None:
                        f = pair_field(s, g)
                        if not np.isfinite(f).all():
                            reason = "degenerate_landmarks"
                        else:
                            out.pairs.append(PairField(t.id, src_expr, t.target, t.identity, f,
                                                       t.source_expression is None, str(t.source)))
                note_skip(out.skipped, out.skipped_rows, t, reason)
                if bar:
                    bar.advance(task)
    finally:
        landmarks.close()
    return out


# --- the additive ridge model ------------------------------------------------------------------

@dataclass(frozen=True)
class Setting:
    prior: str  # "reference", "scaled" or "zero"
    lam: float
    mu: float

    def as_dict(self) -> dict[str, Any]:
        return {"prior": self.prior, "lambda": self.lam, "mu": self.mu}


def _prior(name: str, expr: str, scales: dict[str, float] | None = None) -> np.ndarray:
    if name == "reference":
        return reference_field(expr)
    if name == "scaled":
        return (scales or {}).get(expr, 1.0) * reference_field(expr)
    if name == "zero":
        return np.zeros((N_LANDMARKS, 2))
    raise ValueError(f"unknown prior {name!r}; expected one of {', '.join(PRIORS)}")


def residual_keys(pairs: Sequence[PairField], min_pairs: int) -> list[str]:
    """Pair keys with direct pairs from at least `min_pairs` different people (validation groups) to
    carry their own residual field: several intensities of one person's sequence are one person's
    habit, not something a residual should learn for everyone."""
    people: dict[str, set[str]] = {}
    for p in pairs:
        people.setdefault(p.key, set()).add(p.group)
    return sorted(k for k, g in people.items() if len(g) >= min_pairs)


@dataclass
class AdditiveFields:
    """Fitted F_e (e != neutral) and residuals R_k; `predict(s, t)` = F_t - F_s + R_{s>t}."""

    expr: dict[str, np.ndarray]
    residual: dict[str, np.ndarray]
    scales: dict[str, float] | None = None  # the "scaled" prior's a_e, when that prior was used

    def shape(self, e: str) -> np.ndarray:
        return np.zeros((N_LANDMARKS, 2)) if e == NEUTRAL else self.expr[e]

    def predict(self, source: str, target: str) -> np.ndarray:
        out = self.shape(target) - self.shape(source)
        r = self.residual.get(field_key(target, source))
        return out + r if r is not None else out


def _design(pairs: Sequence[PairField], keys: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Design matrix (pairs x [emotions, residual keys]) and the measured fields (pairs x 2N)."""
    names = [*_EMOTIONS, *keys]
    col = {n: i for i, n in enumerate(names)}
    a = np.zeros((len(pairs), len(names)))
    for i, p in enumerate(pairs):
        if p.target != NEUTRAL:
            a[i, col[p.target]] += 1.0
        if p.source_expression != NEUTRAL:
            a[i, col[p.source_expression]] -= 1.0
        if p.key in col:
            a[i, col[p.key]] += 1.0
    d = np.stack([p.field.reshape(-1) for p in pairs]) if pairs else np.zeros((0, 2 * N_LANDMARKS))
    return a, d


def fit_scales(pairs: Sequence[PairField], setting: Setting, keys: Sequence[str],
               kappa: float = SCALE_PRIOR_PAIRS) -> dict[str, float]:
    """Per-class scale a_e of the reference field for the "scaled" prior, fitted jointly with the
    ridge deviations it anchors: the deviations are profiled out in closed form, which leaves a
    small least-squares problem in the six scales (weighted by what the landmark-level ridge cannot
    explain), plus `kappa` pseudo-pairs of a_e = 1 so that a class the data never shows keeps the
    reference. One number per class, fitted on every person: it cannot learn one face's shape."""
    a, d = _design(pairs, keys)
    n_e = len(_EMOTIONS)
    ridge = np.array([setting.lam] * n_e + [setting.mu] * len(keys)) + _EPS
    # Residual maker of the ridge: min_theta |y - A theta|^2 + theta' L theta = y' W y.
    w = np.eye(len(pairs)) - a @ np.linalg.solve(a.T @ a + np.diag(ridge), a.T)
    ref = np.stack([reference_field(e).reshape(-1) for e in _EMOTIONS])  # n_e x 2N
    ae = a[:, :n_e]
    awa = ae.T @ w @ ae
    norms = (ref**2).sum(axis=1)
    lhs = (ref @ ref.T) * awa + np.diag(kappa * norms)
    rhs = np.einsum("ec,ec->e", ae.T @ w @ d, ref) + kappa * norms
    s = np.linalg.solve(lhs + _EPS * np.eye(n_e), rhs)
    return {e: float(v) for e, v in zip(_EMOTIONS, s)}


def fit_additive(pairs: Sequence[PairField], setting: Setting, keys: Sequence[str]) -> AdditiveFields:
    """Closed-form ridge solution for all landmark coordinates at once (one small linear system)."""
    names = [*_EMOTIONS, *keys]
    col = {n: i for i, n in enumerate(names)}
    a, d = _design(pairs, keys)
    ridge = np.array([setting.lam] * len(_EMOTIONS) + [setting.mu] * len(keys)) + _EPS
    scales = fit_scales(pairs, setting, keys) if setting.prior == "scaled" else None
    theta0 = np.zeros((len(names), 2 * N_LANDMARKS))
    for e in _EMOTIONS:
        theta0[col[e]] = _prior(setting.prior, e, scales).reshape(-1)
    theta = np.linalg.solve(a.T @ a + np.diag(ridge), a.T @ d + ridge[:, None] * theta0)
    return AdditiveFields({e: theta[col[e]].reshape(N_LANDMARKS, 2) for e in _EMOTIONS},
                          {k: theta[col[k]].reshape(N_LANDMARKS, 2) for k in keys}, scales)


def landmark_error(pred: np.ndarray, measured: np.ndarray) -> float:
    """RMS over landmarks of the displacement error, in inter-ocular units."""
    return float(np.sqrt(np.mean(np.sum((pred - measured) ** 2, axis=1))))


def landmark_reg(pred: np.ndarray, measured: np.ndarray) -> float:
    """FED-Score's Relative Expression Gain, applied to landmark moves: gain g = <pred, measured> /
    |measured|^2 (1: the measured move, 0: none or orthogonal), REG = exp(-(ln g)^2 / (2 * 0.5^2)),
    0 for g <= 0. Halving and doubling cost the same, and a field that shrinks towards no edit
    where the direction is uncertain scores low - which the squared error rewards instead: on
    people the fit has not seen, the RMS error is lowest for no edit at all, which FED scores 0."""
    den = float(np.sum(measured**2))
    g = float(np.sum(pred * measured)) / den if den > 0 else 0.0
    return float(np.exp(-np.log(g) ** 2 / 0.5)) if g > 0 else 0.0


# Cross-validation objectives (lower is better): the held-out loss of one pair.
OBJECTIVES = {
    "reg": lambda pred, measured: 1.0 - landmark_reg(pred, measured),
    "rmse": landmark_error,
}
DEFAULT_OBJECTIVE = "reg"
OBJECTIVE_TEXT = {
    "reg": "1 - REG of the landmark moves (landmark_reg), held-out pairs, mean per held-out person",
    "rmse": "landmark displacement RMS error (inter-ocular units), held-out pairs, mean per held-out person",
}


@dataclass
class Validation:
    folds: Folds
    seed: int
    table: list[dict[str, Any]]  # one row per setting: prior, lambda, mu, loss
    best: Setting
    loss: float
    baselines: dict[str, float]  # the same held-out pairs under the reference editor and no edit
    objective: str = DEFAULT_OBJECTIVE


def _per_person(losses: Sequence[float], groups: Sequence[str]) -> float:
    """Mean over people of each person's mean loss: one person with 30 pairs must not outvote
    three with two each, since what is asked is how the fit does on a new person."""
    by: dict[str, list[float]] = {}
    for v, g in zip(losses, groups):
        by.setdefault(g, []).append(v)
    return float(np.mean([np.mean(v) for v in by.values()]))


def cross_validate(pairs: Sequence[PairField], k: int = 5, seed: int = 0, min_pairs: int = 2,
                   lambdas: Sequence[float] = DEFAULT_LAMBDAS, mus: Sequence[float] = DEFAULT_MUS,
                   priors: Sequence[str] = DEFAULT_PRIORS, objective: str = DEFAULT_OBJECTIVE) -> Validation:
    """Held-out loss (`objective`, averaged per person) of every (prior, lam, mu); the lowest wins
    (ties: the stronger shrinkage, then the reference before the scaled before the zero prior: the
    simpler model)."""
    if objective not in OBJECTIVES:
        raise ValueError(f"unknown objective {objective!r}; expected one of {', '.join(OBJECTIVES)}")
    loss_of = OBJECTIVES[objective]
    folds = assign_folds([p.target for p in pairs], [p.identity for p in pairs], [p.source for p in pairs], k, seed)
    splits = [([p for p, f in zip(pairs, folds.fold) if f != j], [p for p, f in zip(pairs, folds.fold) if f == j])
              for j in range(folds.k)]
    splits = [(tr, te) for tr, te in splits if tr and te]
    held_out = [p for _, te in splits for p in te]
    groups = [p.group for p in held_out]
    settings = [Setting(pr, float(la), float(mu)) for pr, la, mu in product(priors, lambdas, mus)]
    table = []
    for s in settings:
        errs = []
        for train, held in splits:
            model = fit_additive(train, s, residual_keys(train, min_pairs))
            errs.extend(loss_of(model.predict(p.source_expression, p.target), p.field) for p in held)
        table.append({**s.as_dict(), "loss": _per_person(errs, groups)})
    baselines = {
        "reference_editor": _per_person([loss_of(reference_field(p.target), p.field) for p in held_out], groups),
        "no_edit": _per_person([loss_of(np.zeros_like(p.field), p.field) for p in held_out], groups),
    }
    best_row = min(table, key=lambda r: (round(r["loss"], 12), -r["lambda"], -r["mu"], PRIORS.index(r["prior"])))
    best = Setting(best_row["prior"], best_row["lambda"], best_row["mu"])
    return Validation(folds, seed, table, best, best_row["loss"], baselines, objective)


def _components(pairs: Sequence[PairField]) -> dict[str, int]:
    """Connected components of the expression graph (an edge per pair): a difference F_t - F_s is
    identified by the data only when s and t are connected."""
    parent = {e: e for e in EXPRESSIONS}

    def find(e: str) -> str:
        while parent[e] != e:
            parent[e] = parent[parent[e]]
            e = parent[e]
        return e

    for p in pairs:
        parent[find(p.source_expression)] = find(p.target)
    roots = {find(e) for e in EXPRESSIONS}
    label = {r: i for i, r in enumerate(sorted(roots))}
    return {e: label[find(e)] for e in EXPRESSIONS}


def fields_from_model(model: AdditiveFields, pairs: Sequence[PairField]) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Checkpoint fields: "s>t" for every s != t that the data connects, and the target's own key
    "t" (used when a request has no source expression: from neutral) where t is connected to
    neutral. Other requests fall back to the reference field, as the untrained editor does."""
    seen = {p.source_expression for p in pairs} | {p.target for p in pairs}
    comp = _components(pairs)
    direct = Counter(p.key for p in pairs)
    fields: dict[str, np.ndarray] = {}
    stats: dict[str, Any] = {}
    for s, t in product(EXPRESSIONS, EXPRESSIONS):
        if s == t or s not in seen or t not in seen or comp[s] != comp[t]:
            continue
        key = field_key(t, s)
        fields[key] = model.predict(s, t)
        stats[key] = {"n_pairs": direct.get(key, 0), "residual": key in model.residual}
    if NEUTRAL in seen:
        for t in EXPRESSIONS:
            if t != NEUTRAL and t in seen and comp[t] == comp[NEUTRAL]:
                fields[t] = model.predict(NEUTRAL, t)
                stats[t] = {"n_pairs": direct.get(field_key(t, NEUTRAL), 0), "from": NEUTRAL}
    return fields, stats


# --- the command ---------------------------------------------------------------------------------

@dataclass
class WarpTrainResult:
    out: Path
    fields: WarpFields
    validation: Validation
    measured: Measured
    meta: dict[str, Any] = field(default_factory=dict)


def train_warp(data: str | Path | Manifest, out: str | Path, *, folds: int = 5, seed: int = 0, min_pairs: int = 2,
               lambdas: Sequence[float] = DEFAULT_LAMBDAS, mus: Sequence[float] = DEFAULT_MUS,
               priors: Sequence[str] = DEFAULT_PRIORS, objective: str = DEFAULT_OBJECTIVE,
               columns: dict[str, str] | None = None,
               allow_outside: bool = False, overwrite: bool = False, progress: bool = True,
               console: Console | None = None, cache_path: str | Path | None = None) -> WarpTrainResult:
    """Fit warp fields on the pairs of `data` and write a checkpoint folder to `out`. `cache_path`:
    the feature cache the landmarks are read from and kept in (default: the default cache)."""
    from fedbench import __version__

    console = console or Console(stderr=True)
    out, manifest = warp_checkpoint_inputs(data, out, columns, allow_outside, overwrite)
    t0 = time.perf_counter()
    measured = measure_pairs(manifest.triplets, progress=progress, console=console, cache_path=cache_path)
    for reason, n in sorted(measured.skipped.items()):
        rows = [r for r in measured.skipped_rows if r["reason"] == reason]
        shown = ", ".join(f"row {r['row']} ({r['id']})" for r in rows[:5]) + (" ..." if len(rows) > 5 else "")
        console.print(f"[yellow]skipped[/] {n} pair(s) of {manifest.path.name}: {reason}: {shown}")
    pairs = measured.pairs
    if len(pairs) < 2:
        raise ValueError(f"{manifest.path}: {len(pairs)} usable training pair(s) of {len(manifest)} rows "
                         f"(skipped: {dict(measured.skipped)}); need at least 2")
    validation = cross_validate(pairs, folds, seed, min_pairs, lambdas, mus, priors, objective)
    model = fit_additive(pairs, validation.best, residual_keys(pairs, min_pairs))
    fitted, stats = fields_from_model(model, pairs)
    meta: dict[str, Any] = {
        "fitted": True,
        "trainer": TRAINER, "trainer_version": TRAINER_VERSION, "fedbench": __version__,
        "units": "inter-ocular distance, face frame (x towards the image right, y down)",
        "model": "additive: field(s>t) = F_t - F_s (+ residual for keys with >= min_pairs pairs); F_neutral = 0",
        "data": {**data_provenance(data, manifest), "rows": len(manifest),
                 "pairs": len(pairs), "assumed_neutral_source": sum(p.assumed_neutral for p in pairs),
                 "skipped": dict(sorted(measured.skipped.items())), "skipped_rows": measured.skipped_rows},
        "key_stats": stats,
        "regularisation": {**validation.best.as_dict(), "min_pairs": min_pairs, "scales": model.scales,
                           "min_pairs_unit": "people (validation groups) with a direct pair of the key",
                           "lambda_unit": "pseudo-pairs of the prior", "mu_unit": "pseudo-pairs of a zero residual"},
        "validation": {"objective": objective, "metric": OBJECTIVE_TEXT[objective],
                       "mode": validation.folds.mode, "reason": validation.folds.reason, "folds": validation.folds.k,
                       "seed": seed, "loss": validation.loss, "baselines": validation.baselines,
                       "grid": validation.table},
        "stable_points": list(STABLE_POINTS),
    }
    warp_fields = WarpFields(fitted, meta)
    warp_fields.save(out)
    # Timing goes to the console, not the checkpoint: a refit of the same data writes the same bytes.
    console.print(f"warp fields: {len(pairs)} pairs, {len(fitted)} keys in {time.perf_counter() - t0:.1f} s; chosen "
                  f"prior={validation.best.prior} lambda={validation.best.lam:g} mu={validation.best.mu:g}; "
                  f"held-out {validation.objective} loss "
                  f"{validation.loss:.4f} (reference editor {validation.baselines['reference_editor']:.4f}, "
                  f"no edit {validation.baselines['no_edit']:.4f}; {validation.folds.k} folds by "
                  f"{validation.folds.mode})")
    return WarpTrainResult(out, warp_fields, validation, measured, meta)

