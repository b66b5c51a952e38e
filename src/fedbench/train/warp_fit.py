"""`fedbench train warp`: fit the warp editor's displacement fields from training pairs.

For each pair (source S, ground truth G): Face Landmarker points of both; G's similarity head motion
relative to S (scale, rotation, translation, fitted by Procrustes on points an expression barely
moves: eye corners and the nose bridge) is removed, so a ground truth with a slightly moved head or a
different resolution does not turn into a field; what is left, G' - S, goes into S's face frame
(inter-ocular units, `warp.to_face_frame`), the frame in which the editor applies a field.

Model. An expression is a shape offset from neutral: each class e has a field F_e (F_neutral = 0),
and the move from s to t is F_t - F_s. A pair key "s>t" with at least `min_pairs` direct pairs also
gets its own residual R_{s>t}. All of it is one ridge regression, the same for every landmark
coordinate:

    min  sum_i |d_i - (F_t - F_s + R_{s>t})|^2 + lam * sum_e |F_e - P_e|^2 + mu * sum_k |R_k|^2

with P_e the reference field (or 0). lam is counted in pairs: the prior weighs as much as `lam`
pairs. The additive form is why few pairs go far: happy->sad is informed by every pair that starts
or ends in happy or sad, not only by happy->sad pairs, and a pair type absent from training (the
case of a held-out test pair) still gets a field. A row without `source_expression` is taken as
starting from neutral (counted in the checkpoint).

(prior, lam, mu) are chosen by K-fold cross-validation on the training pairs (folds by identity
where possible, see `data.assign_folds`) with the landmark-displacement error of the held-out pairs:
the root-mean-square over landmarks of |predicted - measured| in inter-ocular units, averaged over
pairs. The final fields are refitted on every training pair with the chosen setting.
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
from fedbench.models.store import sha256_of
from fedbench.train.data import Folds, assign_folds, load_training_manifest

TRAINER = "fedbench train warp"
TRAINER_VERSION = "1"
# Points that an expression barely moves (MediaPipe face mesh): the four eye corners and the nose
# bridge from between the eyes to the dorsum. Brows, lids, mouth, jaw and the nose tip (disgust
# wrinkles it) are left out: aligning on them would cancel part of the expression itself.
STABLE_POINTS: tuple[int, ...] = (33, 133, 362, 263, 168, 6, 197, 195)
NEUTRAL = "neutral"
_EMOTIONS = tuple(e for e in EXPRESSIONS if e != NEUTRAL)  # F_neutral = 0 is the origin

DEFAULT_LAMBDAS: tuple[float, ...] = (0.0, 0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 64.0, 1e6)
DEFAULT_MUS: tuple[float, ...] = (0.5, 2.0, 8.0, 1e6)
DEFAULT_PRIORS: tuple[str, ...] = ("reference", "zero")
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

    @property
    def key(self) -> str:
        return field_key(self.target, self.source_expression)


@dataclass
class Measured:
    pairs: list[PairField]
    skipped: Counter  # reason -> count
    skipped_rows: list[dict[str, Any]]  # {id, row, reason} for each skipped row


class _Landmarks:
    """Landmarks (pixels of the perceived working copy) per image file, from the shared perception
    service: a source shared by five pairs is read once, and an image perceived before (scored, say)
    is not perceived again. Pair fields are in inter-ocular units, so the resolution does not matter."""

    def __init__(self) -> None:
        from fedbench.faces.service import PerceptionService

        self._service = PerceptionService()
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


def measure_pairs(triplets: Iterable[Triplet], progress: bool = False, console: Console | None = None) -> Measured:
    """Landmark fields of every pair; rows whose source or ground truth is unreadable or shows no
    face, same-expression rows (nothing to learn) and rows into neutral without a source expression
    (which the model, taking an unknown source as neutral, cannot place) are skipped with a counted
    reason."""
    from fedbench.scoring.runner import _progress

    triplets = list(triplets)
    out = Measured([], Counter(), [])
    landmarks = _Landmarks()
    try:
        with _progress(progress, console or Console(stderr=True)) as bar:
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
                    if isinstance(s, str):
                        reason = "no_face_source" if s == "no face" else "unreadable_source"
                    elif isinstance(g, str):
                        reason = "no_face_ground_truth" if g == "no face" else "unreadable_ground_truth"
                    else:
                        f = pair_field(s, g)
                        if not np.isfinite(f).all():
                            reason = "degenerate_landmarks"
                        else:
                            out.pairs.append(PairField(t.id, src_expr, t.target, t.identity, f,
                                                       t.source_expression is None))
                if reason:
                    out.skipped[reason] += 1
                    out.skipped_rows.append({"id": t.id, "row": t.row, "reason": reason})
                if bar:
                    bar.advance(task)
    finally:
        landmarks.close()
    return out


# --- the additive ridge model ------------------------------------------------------------------

@dataclass(frozen=True)
class Setting:
    prior: str  # "reference" or "zero"
    lam: float
    mu: float

    def as_dict(self) -> dict[str, Any]:
        return {"prior": self.prior, "lambda": self.lam, "mu": self.mu}


def _prior(name: str, expr: str) -> np.ndarray:
    if name == "reference":
        return reference_field(expr)
    if name == "zero":
        return np.zeros((N_LANDMARKS, 2))
    raise ValueError(f"unknown prior {name!r}; expected 'reference' or 'zero'")


def residual_keys(pairs: Sequence[PairField], min_pairs: int) -> list[str]:
    """Pair keys with enough direct pairs to carry their own residual field."""
    counts = Counter(p.key for p in pairs)
    return sorted(k for k, n in counts.items() if n >= min_pairs)


@dataclass
class AdditiveFields:
    """Fitted F_e (e != neutral) and residuals R_k; `predict(s, t)` = F_t - F_s + R_{s>t}."""

    expr: dict[str, np.ndarray]
    residual: dict[str, np.ndarray]

    def shape(self, e: str) -> np.ndarray:
        return np.zeros((N_LANDMARKS, 2)) if e == NEUTRAL else self.expr[e]

    def predict(self, source: str, target: str) -> np.ndarray:
        out = self.shape(target) - self.shape(source)
        r = self.residual.get(field_key(target, source))
        return out + r if r is not None else out


def fit_additive(pairs: Sequence[PairField], setting: Setting, keys: Sequence[str]) -> AdditiveFields:
    """Closed-form ridge solution for all landmark coordinates at once (one small linear system)."""
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
    ridge = np.array([setting.lam] * len(_EMOTIONS) + [setting.mu] * len(keys)) + _EPS
    theta0 = np.zeros((len(names), 2 * N_LANDMARKS))
    for e in _EMOTIONS:
        theta0[col[e]] = _prior(setting.prior, e).reshape(-1)
    theta = np.linalg.solve(a.T @ a + np.diag(ridge), a.T @ d + ridge[:, None] * theta0)
    return AdditiveFields({e: theta[col[e]].reshape(N_LANDMARKS, 2) for e in _EMOTIONS},
                          {k: theta[col[k]].reshape(N_LANDMARKS, 2) for k in keys})


def landmark_error(pred: np.ndarray, measured: np.ndarray) -> float:
    """RMS over landmarks of the displacement error, in inter-ocular units."""
    return float(np.sqrt(np.mean(np.sum((pred - measured) ** 2, axis=1))))


@dataclass
class Validation:
    folds: Folds
    seed: int
    table: list[dict[str, Any]]  # one row per setting: prior, lambda, mu, loss
    best: Setting
    loss: float
    baselines: dict[str, float]  # the same held-out pairs under the reference editor and no edit


def cross_validate(pairs: Sequence[PairField], k: int = 5, seed: int = 0, min_pairs: int = 2,
                   lambdas: Sequence[float] = DEFAULT_LAMBDAS, mus: Sequence[float] = DEFAULT_MUS,
                   priors: Sequence[str] = DEFAULT_PRIORS) -> Validation:
    """Held-out landmark error of every (prior, lam, mu); the lowest wins (ties: the stronger
    shrinkage, listed first by the sort key, since it is the simpler model)."""
    folds = assign_folds([p.target for p in pairs], [p.identity for p in pairs], k, seed)
    splits = [([p for p, f in zip(pairs, folds.fold) if f != j], [p for p, f in zip(pairs, folds.fold) if f == j])
              for j in range(folds.k)]
    splits = [(tr, te) for tr, te in splits if tr and te]
    settings = [Setting(pr, float(la), float(mu)) for pr, la, mu in product(priors, lambdas, mus)]
    table = []
    for s in settings:
        errs = []
        for train, held in splits:
            model = fit_additive(train, s, residual_keys(train, min_pairs))
            errs.extend(landmark_error(model.predict(p.source_expression, p.target), p.field) for p in held)
        table.append({**s.as_dict(), "loss": float(np.mean(errs))})
    held_out = [p for _, te in splits for p in te]
    baselines = {
        "reference_editor": float(np.mean([landmark_error(reference_field(p.target), p.field) for p in held_out])),
        "no_edit": float(np.mean([landmark_error(np.zeros_like(p.field), p.field) for p in held_out])),
    }
    best_row = min(table, key=lambda r: (round(r["loss"], 12), -r["lambda"], -r["mu"], r["prior"] != "reference"))
    best = Setting(best_row["prior"], best_row["lambda"], best_row["mu"])
    return Validation(folds, seed, table, best, best_row["loss"], baselines)


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
               priors: Sequence[str] = DEFAULT_PRIORS, columns: dict[str, str] | None = None,
               allow_outside: bool = False, overwrite: bool = False, progress: bool = True,
               console: Console | None = None) -> WarpTrainResult:
    """Fit warp fields on the pairs of `data` and write a checkpoint folder to `out`."""
    from fedbench import __version__

    console = console or Console(stderr=True)
    out = Path(out)
    if (out / "checkpoint.json").exists() and not overwrite:
        raise FileExistsError(f"{out} already holds a warp checkpoint; pass --overwrite to replace it")
    manifest = data if isinstance(data, Manifest) else load_training_manifest(data, columns, allow_outside)
    t0 = time.perf_counter()
    measured = measure_pairs(manifest.triplets, progress=progress, console=console)
    for reason, n in sorted(measured.skipped.items()):
        rows = [r for r in measured.skipped_rows if r["reason"] == reason]
        shown = ", ".join(f"row {r['row']} ({r['id']})" for r in rows[:5]) + (" ..." if len(rows) > 5 else "")
        console.print(f"[yellow]skipped[/] {n} pair(s) of {manifest.path.name}: {reason}: {shown}")
    pairs = measured.pairs
    if len(pairs) < 2:
        raise ValueError(f"{manifest.path}: {len(pairs)} usable training pair(s) of {len(manifest)} rows "
                         f"(skipped: {dict(measured.skipped)}); need at least 2")
    validation = cross_validate(pairs, folds, seed, min_pairs, lambdas, mus, priors)
    model = fit_additive(pairs, validation.best, residual_keys(pairs, min_pairs))
    fitted, stats = fields_from_model(model, pairs)
    meta: dict[str, Any] = {
        "fitted": True,
        "trainer": TRAINER, "trainer_version": TRAINER_VERSION, "fedbench": __version__,
        "units": "inter-ocular distance, face frame (x towards the image right, y down)",
        "model": "additive: field(s>t) = F_t - F_s (+ residual for keys with >= min_pairs pairs); F_neutral = 0",
        "data": {"path": str(manifest.path), "sha256": sha256_of(manifest.path), "rows": len(manifest),
                 "pairs": len(pairs), "assumed_neutral_source": sum(p.assumed_neutral for p in pairs),
                 "skipped": dict(sorted(measured.skipped.items())), "skipped_rows": measured.skipped_rows},
        "key_stats": stats,
        "regularisation": {**validation.best.as_dict(), "min_pairs": min_pairs,
                           "lambda_unit": "pseudo-pairs of the prior", "mu_unit": "pseudo-pairs of a zero residual"},
        "validation": {"metric": "landmark displacement RMS error (inter-ocular units), held-out pairs",
                       "mode": validation.folds.mode, "reason": validation.folds.reason, "folds": validation.folds.k,
                       "seed": seed, "loss": validation.loss, "baselines": validation.baselines,
                       "grid": validation.table},
        "stable_points": list(STABLE_POINTS),
        "seconds": round(time.perf_counter() - t0, 2),
    }
    warp_fields = WarpFields(fitted, meta)
    warp_fields.save(out)
    console.print(f"warp fields: {len(pairs)} pairs, {len(fitted)} keys; chosen prior={validation.best.prior} "
                  f"lambda={validation.best.lam:g} mu={validation.best.mu:g}; held-out landmark error "
                  f"{validation.loss:.4f} (reference editor {validation.baselines['reference_editor']:.4f}, "
                  f"no edit {validation.baselines['no_edit']:.4f}; {validation.folds.k} folds by "
                  f"{validation.folds.mode})")
    return WarpTrainResult(out, warp_fields, validation, measured, meta)

