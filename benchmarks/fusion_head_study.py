"""Variants of the emotion fusion head, each measured by identity-grouped cross-validation on the dev faces.

    .venv/bin/python benchmarks/fusion_head_study.py [--variants v1,mirror,...] \
        [--json benchmarks/results/fusion_head_study.json] [--markdown]

Data: the feature tables `benchmarks/data/fusion_head_v1_features.npz` (each dev face as perceived) and
`benchmarks/data/fusion_head_mirror_features.npz` (each dev face flipped left-right, perceived afresh;
`fit_fusion_head.py --mirror-table` writes it). Only the faces-in-the-wild dev half is used.

Every variant is scored exactly as fusion-v1 was chosen (`fit_fusion_head.cross_validate`): 5 folds
grouped by identity (a person and the mirror images of their faces are always on the same side), seeds
0, 1, 2, a face without a found face counted wrong in its class, every test fold made of original faces
only (a mirror image is training data, never a test item). For each variant the ridge is chosen over the
same grid by the same rule as fusion-v1's (the strongest within 0.005 of the best balanced accuracy), so
every variant carries the same selection optimism. Per seed and per class: accuracy; top-label ECE and
each class's one-vs-rest ECE of the probabilities (A_emo divides them, so they must stay calibrated).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fit_fusion_head as ffh  # noqa: E402  (the benchmark scripts are not a package)

from fedbench.faces import fusion  # noqa: E402
from fedbench.faces.blendshapes import BLENDSHAPE_NAMES  # noqa: E402
from fedbench.labels import EXPRESSIONS  # noqa: E402

K = len(EXPRESSIONS)
N_CNN = 3 * K  # the head's inputs: 3 x 7 log-probabilities, then 52 sqrt blendshapes, then geometry
BS0 = N_CNN
GEO0 = BS0 + len(BLENDSHAPE_NAMES)
Transform = Callable[[np.ndarray], np.ndarray]


def _pairs(names: tuple[str, ...], offset: int) -> list[tuple[int, int]]:
    return [(offset + i, offset + names.index(n[:-4] + "Right")) for i, n in enumerate(names)
            if n.endswith("Left") and n[:-4] + "Right" in names]


BS_PAIRS = _pairs(BLENDSHAPE_NAMES, BS0)
GEO_PAIRS = [(GEO0 + fusion.GEOMETRY_NAMES.index(a), GEO0 + fusion.GEOMETRY_NAMES.index(b))
             for a, b in (("brow_raise_left", "brow_raise_right"), ("eye_open_left", "eye_open_right"))]


def symmetrised(x: np.ndarray) -> np.ndarray:
    """Each left/right pair (blendshapes, brow and eye geometry) as its mean and its absolute difference:
    features a mirror image leaves unchanged (up to perception noise)."""
    pairs = BS_PAIRS + GEO_PAIRS
    paired = {i for p in pairs for i in p}
    keep = [i for i in range(x.shape[1]) if i not in paired]
    means = [(x[:, a] + x[:, b]) / 2 for a, b in pairs]
    diffs = [np.abs(x[:, a] - x[:, b]) for a, b in pairs]
    return np.column_stack([x[:, keep]] + means + diffs)


DISGUST_BS = ("noseSneer", "mouthUpperUp", "browDown", "cheekSquint")


def with_disgust_interactions(x: np.ndarray) -> np.ndarray:
    """Adds products of the disgust actions (both sides' mean, in sqrt space): nose wrinkle x upper-lip
    raise, nose wrinkle x brow lowering, upper-lip raise x cheek raise, and the upper-lip-to-nose
    distance x upper-lip raise."""
    def both(stem: str) -> np.ndarray:
        a, b = BLENDSHAPE_NAMES.index(stem + "Left"), BLENDSHAPE_NAMES.index(stem + "Right")
        return (x[:, BS0 + a] + x[:, BS0 + b]) / 2
    s, u, d, c = (both(n) for n in DISGUST_BS)
    lip = x[:, GEO0 + fusion.GEOMETRY_NAMES.index("upper_lip_to_nose")]
    return np.column_stack([x, s * u, s * d, u * c, lip * u])


@dataclass(frozen=True)
class Variant:
    name: str
    what: str
    transform: Transform = lambda x: x
    mirror: bool = False  # add every training face's mirror image to the training folds
    class_power: float = 1.0  # sample weight per class ~ n_c ** -power (1: balanced, as v1)
    class_ridge: dict[str, float] = field(default_factory=dict)  # ridge multiplier per class column
    ridges: tuple[float, ...] = ffh.RIDGES
    rule: bool = False  # per-class decision offsets, nested-CV tuned (see `evaluate`)
    rule_classes: tuple[str, ...] = EXPRESSIONS[1:]  # the classes whose offset the rule may move
    model: str = "logistic"  # or "boosted": BoostedTrees, with `ridges` read as its numbers of rounds


VARIANTS = {v.name: v for v in (
    Variant("v1", "fusion-v1 as shipped (no mirror, balanced weights)"),
    Variant("mirror", "v1 + every training face's mirror image", mirror=True),
    Variant("sym", "left/right pairs as mean and |difference|", transform=symmetrised),
    Variant("sym+mirror", "sym + mirror images", transform=symmetrised, mirror=True),
    Variant("disgust-x", "v1 + 4 disgust interaction features", transform=with_disgust_interactions),
    Variant("disgust-x+mirror", "disgust-x + mirror images", transform=with_disgust_interactions, mirror=True),
    Variant("w1.25", "class weights ~ n^-1.25 (rare classes above balanced)", class_power=1.25),
    Variant("w1.5", "class weights ~ n^-1.5", class_power=1.5),
    Variant("w1.25+mirror", "w1.25 + mirror images", class_power=1.25, mirror=True),
    Variant("w1.5+mirror", "w1.5 + mirror images", class_power=1.5, mirror=True),
    Variant("ridge-dis/4", "disgust's column at a quarter of the ridge", class_ridge={"disgust": 0.25}),
    Variant("ridge-dis/4+mirror", "ridge-dis/4 + mirror images", class_ridge={"disgust": 0.25}, mirror=True),
    Variant("v1+rule", "v1 at its ridge + per-class decision offsets (nested CV)", ridges=(0.02,), rule=True),
    Variant("mirror+rule", "mirror at its ridge + per-class decision offsets (nested CV)", mirror=True,
            ridges=(0.01,), rule=True),
    Variant("mirror+rule-disgust", "mirror at its ridge + a decision offset for disgust only (nested CV)",
            mirror=True, ridges=(0.01,), rule=True, rule_classes=("disgust",)),
    Variant("boosted", "gradient-boosted depth-2 trees from the members' prior (ridge column: rounds)",
            model="boosted", ridges=(50, 100, 200)),
)}


def load(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def rows_by_image(t: dict[str, np.ndarray]) -> np.ndarray:
    """Row of `x` for each labelled image, -1 where no face was found."""
    rows = np.full(len(t["found"]), -1)
    rows[t["found"]] = np.arange(int(t["found"].sum()))
    return rows


class BoostedTrees:
    """Multinomial gradient boosting (Newton steps, depth-2 trees on 16 quantile bins per feature, numpy
    only), started from the members' prior log-probabilities as logistic head starts from them: each round
    adds one small tree per class to the logits. Deterministic: no subsampling."""

    def __init__(self, rounds: int, rate: float = 0.05, depth: int = 2, l2: float = 1.0, min_weight: float = 5.0):
        self.rounds, self.rate, self.depth, self.l2, self.min_weight = rounds, rate, depth, l2, min_weight

    def _bin(self, x: np.ndarray) -> np.ndarray:
        return np.stack([np.searchsorted(self.edges[j], x[:, j]) for j in range(x.shape[1])], axis=1)

    def fit(self, x: np.ndarray, offset: np.ndarray, y: np.ndarray, w: np.ndarray) -> "BoostedTrees":
        self.edges = [np.unique(np.quantile(x[:, j], np.linspace(0, 1, 17)[1:-1])) for j in range(x.shape[1])]
        b = self._bin(x)
        n, p = b.shape
        flat = b + 17 * np.arange(p)[None, :]
        onehot = np.eye(K)[y]
        z = offset.copy()
        self.trees: list[list[tuple]] = []
        w = w / w.mean()
        for _ in range(self.rounds):
            prob = fusion.softmax(z)
            g, h = w[:, None] * (prob - onehot), w[:, None] * np.clip(prob * (1 - prob), 1e-6, None)
            round_trees = []
            for c in range(K):
                tree = self._grow(flat, b, g[:, c], h[:, c], np.arange(n), self.depth)
                z[:, c] += self.rate * self._apply(tree, b)
                round_trees.append(tree)
            self.trees.append(round_trees)
        return self

    def _grow(self, flat: np.ndarray, b: np.ndarray, g: np.ndarray, h: np.ndarray, idx: np.ndarray, depth: int):
        G, H = g[idx].sum(), h[idx].sum()
        leaf = ("leaf", -G / (H + self.l2))
        if depth == 0 or H < 2 * self.min_weight:
            return leaf
        p = b.shape[1]
        hg = np.bincount(flat[idx].ravel(), np.repeat(g[idx], p), minlength=17 * p).reshape(p, 17).cumsum(axis=1)
        hh = np.bincount(flat[idx].ravel(), np.repeat(h[idx], p), minlength=17 * p).reshape(p, 17).cumsum(axis=1)
        ok = (hh >= self.min_weight) & (H - hh >= self.min_weight)
        gain = np.where(ok, hg ** 2 / (hh + self.l2) + (G - hg) ** 2 / (H - hh + self.l2), -np.inf)
        j, t = np.unravel_index(int(np.argmax(gain)), gain.shape)
        if not np.isfinite(gain[j, t]) or gain[j, t] <= G ** 2 / (H + self.l2) + 1e-12:
            return leaf
        left = idx[b[idx, j] <= t]
        right = idx[b[idx, j] > t]
        return ("split", j, t, self._grow(flat, b, g, h, left, depth - 1), self._grow(flat, b, g, h, right, depth - 1))

    def _apply(self, tree, b: np.ndarray) -> np.ndarray:
        if tree[0] == "leaf":
            return np.full(len(b), tree[1])
        _, j, t, lo, hi = tree
        return np.where(b[:, j] <= t, self._apply(lo, b), self._apply(hi, b))

    def predict(self, x: np.ndarray, offset: np.ndarray) -> np.ndarray:
        b = self._bin(x)
        z = offset.copy()
        for round_trees in self.trees:
            for c, tree in enumerate(round_trees):
                z[:, c] += self.rate * self._apply(tree, b)
        return fusion.softmax(z)


@dataclass
class Data:
    """The head's inputs for one variant: original faces (rows by image) and, if used, their mirrors."""

    y: np.ndarray  # label per labelled image
    groups: np.ndarray  # identity per labelled image
    ro: np.ndarray  # row in xo per image, -1: no face found
    xo: np.ndarray
    off_o: np.ndarray
    rm: np.ndarray | None = None  # the same for the mirror images
    xm: np.ndarray | None = None
    off_m: np.ndarray | None = None


def prepare(v: Variant, orig: dict[str, np.ndarray], mirror: dict[str, np.ndarray] | None) -> Data:
    d = Data(orig["label"], orig["group"], rows_by_image(orig), v.transform(orig["x"]), orig["offset"])
    if v.mirror:
        if mirror is None or not np.array_equal(mirror["image"], orig["image"]):
            raise SystemExit(f"variant {v.name} needs the mirror table of the same images "
                             "(benchmarks/fit_fusion_head.py --mirror-table)")
        d.rm, d.xm, d.off_m = rows_by_image(mirror), v.transform(mirror["x"]), mirror["offset"]
    return d


def fit_on(v: Variant, d: Data, images: np.ndarray, ridge: float) -> fusion.HeadWeights | BoostedTrees:
    """The head fitted on these images (each with a found face), plus their mirror images if the variant
    uses them: a mirror image only ever joins its own original's side of a split."""
    x, off, y = d.xo[d.ro[images]], d.off_o[d.ro[images]], d.y[images]
    if d.rm is not None:
        m = images[d.rm[images] >= 0]
        x, off, y = (np.concatenate([x, d.xm[d.rm[m]]]), np.concatenate([off, d.off_m[d.rm[m]]]),
                     np.concatenate([y, d.y[m]]))
    if v.model == "boosted":
        return BoostedTrees(rounds=int(ridge)).fit(x, off, y, fusion.class_weights(y, v.class_power))
    cr = None if not v.class_ridge else np.array([v.class_ridge.get(c, 1.0) for c in EXPRESSIONS])
    return fusion.fit_head(x, off, y, ridge, sample_weight=fusion.class_weights(y, v.class_power), class_ridge=cr)


def out_of_fold(v: Variant, d: Data, images: np.ndarray, folds: np.ndarray, ridge: float) -> np.ndarray:
    """Probabilities of `images` (found faces), each from the head fitted on the other folds."""
    prob = np.zeros((len(images), K))
    for k in np.unique(folds):
        w = fit_on(v, d, images[folds != k], ridge)
        te = images[folds == k]
        prob[folds == k] = w.predict(d.xo[d.ro[te]], d.off_o[d.ro[te]])
    return prob


RULE_GRID = np.linspace(-1.5, 1.5, 31)
RULE_FLOOR = 0.40  # the per-class minimum the rule aims at
RULE_MIN_N = 20  # classes with fewer training faces are left out of the minimum (fear: 7 in all)


def rule_objective(prob: np.ndarray, y: np.ndarray, delta: np.ndarray) -> float:
    """Balanced accuracy of argmax(log p + delta), minus each shortfall below RULE_FLOOR of a class
    with at least RULE_MIN_N faces."""
    pred = (np.log(np.clip(prob, 1e-300, None)) + delta).argmax(axis=1)
    counts = np.bincount(y, minlength=K)
    recall = np.array([np.mean(pred[y == c] == c) if counts[c] else 0.0 for c in range(K)])
    present = counts > 0
    short = np.clip(RULE_FLOOR - recall, 0.0, None)[counts >= RULE_MIN_N].sum()
    return float(recall[present].mean() - short)


def choose_rule(prob: np.ndarray, y: np.ndarray, classes: tuple[str, ...] = EXPRESSIONS[1:]) -> np.ndarray:
    """Per-class log-offsets of `classes` (the rest fixed at 0) by coordinate ascent on `rule_objective`;
    ties keep the smaller offset (closer to the probabilities' own argmax)."""
    delta = np.zeros(K)
    for _ in range(3):
        for c in (EXPRESSIONS.index(n) for n in classes):
            best, best_v = delta[c], rule_objective(prob, y, delta)
            for g in sorted(RULE_GRID, key=abs):
                trial = delta.copy()
                trial[c] = g
                val = rule_objective(prob, y, trial)
                if val > best_v + 1e-12:
                    best, best_v = g, val
            delta[c] = best
    return delta


def evaluate(v: Variant, orig: dict[str, np.ndarray], mirror: dict[str, np.ndarray] | None, ridge: float,
             seeds: tuple[int, ...] = ffh.SEEDS, rule: bool = False) -> dict:
    """Identity-grouped CV of one variant at one ridge; figures per seed and their mean. `rule`: the
    decision offsets are chosen by an inner grouped CV inside each outer training fold (nested, so the
    test fold never informs them); both the argmax of the offset logits and the probabilities with the
    offsets applied (softmax(log p + delta)) are scored."""
    d = prepare(v, orig, mirror)
    totals = np.bincount(d.y, minlength=K)
    found = np.flatnonzero(d.ro >= 0)
    y = d.y[found]
    per_seed = []
    for seed in seeds:
        folds = fusion.group_folds(d.groups[found], ffh.FOLDS, seed)  # exactly as fusion-v1's CV
        prob = out_of_fold(v, d, found, folds, ridge)
        offsets = []
        if rule:
            for k in range(ffh.FOLDS):
                tr = found[folds != k]
                inner = fusion.group_folds(d.groups[tr], ffh.FOLDS - 1, seed)
                delta = choose_rule(out_of_fold(v, d, tr, inner, ridge), d.y[tr], v.rule_classes)
                offsets.append(delta.tolist())
                prob[folds == k] = fusion.softmax(np.log(np.clip(prob[folds == k], 1e-300, None)) + delta)
        pred = prob.argmax(axis=1)
        correct = np.array([np.sum((pred == c) & (y == c)) for c in range(K)])
        acc = correct / totals
        per_seed.append({
            "seed": seed, "balanced_accuracy": float(acc.mean()), "per_class": acc.tolist(),
            "ece": fusion.expected_calibration_error(prob, y),
            "class_ece": [fusion.classwise_calibration_error(prob, y, c) for c in range(K)],
            # the same under a uniform class prior (faces weighted so every class totals the same), the
            # prior the heads' class weights aim their probabilities at
            "ece_uniform": fusion.expected_calibration_error(prob, y, weight=fusion.balanced_weights(y)),
            "class_ece_uniform": [fusion.classwise_calibration_error(prob, y, c, weight=fusion.balanced_weights(y))
                                  for c in range(K)],
            # mean forecast of each class under that prior (calibrated: 1/7 each)
            "mean_forecast_uniform": (fusion.balanced_weights(y) @ prob / len(y)).tolist(),
        } | ({"rule_offsets_per_fold": offsets} if rule else {}))
    mean = lambda key: np.mean([s[key] for s in per_seed], axis=0)  # noqa: E731
    return {"ridge": ridge, "balanced_accuracy": float(mean("balanced_accuracy")),
            "per_class": mean("per_class").tolist(), "ece": float(mean("ece")),
            "class_ece": mean("class_ece").tolist(), "per_seed": per_seed}


def study(v: Variant, orig: dict[str, np.ndarray], mirror: dict[str, np.ndarray] | None) -> dict:
    grid = [evaluate(v, orig, mirror, r, rule=v.rule) for r in v.ridges]
    top = max(g["balanced_accuracy"] for g in grid)
    best = max((g for g in grid if g["balanced_accuracy"] >= top - ffh.TIE), key=lambda g: g["ridge"])
    return {"variant": v.name, "what": v.what, "chosen": best,
            "grid": [{k: g[k] for k in ("ridge", "balanced_accuracy", "ece")} | {"disgust": g["per_class"][5]}
                     for g in grid]}


def row(r: dict) -> str:
    c = r["chosen"]
    seeds = "/".join(f"{s['balanced_accuracy']:.3f}" for s in c["per_seed"])
    dis = "/".join(f"{s['per_class'][EXPRESSIONS.index('disgust')]:.2f}" for s in c["per_seed"])
    return (f"| {r['variant']} | {c['ridge']:g} | {c['balanced_accuracy']:.3f} | {seeds} | "
            + " | ".join(f"{a:.2f}" for a in c["per_class"]) + f" | {dis} | {c['ece']:.3f} | "
            + f"{max(c['class_ece']):.3f} |")


HEADER = ("| variant | ridge | balanced | per seed 0/1/2 | " + " | ".join(EXPRESSIONS)
          + " | disgust per seed | ECE | worst class ECE |\n|" + "---|" * (K + 7))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--table", type=Path, default=ffh.TABLE)
    ap.add_argument("--mirror-table", type=Path, default=ffh.MIRROR_TABLE)
    ap.add_argument("--json", type=Path, default=None, help="results file (merged with what it holds)")
    ap.add_argument("--markdown", action="store_true", help="print the table of every variant in --json")
    args = ap.parse_args()
    orig = load(args.table)
    mirror = load(args.mirror_table) if args.mirror_table.exists() else None
    results = []
    names = [n for n in args.variants.split(",") if n]
    if names:
        print(HEADER, flush=True)
    for name in names:
        results.append(study(VARIANTS[name], orig, mirror))
        print(row(results[-1]), flush=True)
    if args.json:  # merged by variant name, so runs of different --variants build one file
        known = {r["variant"]: r for r in json.loads(args.json.read_text())} if args.json.exists() else {}
        known.update({r["variant"]: r for r in results})
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps([known[n] for n in VARIANTS if n in known], indent=1) + "\n")
    if args.markdown:
        every = json.loads(args.json.read_text()) if args.json else results
        print(("\n" if names else "") + HEADER)
        for r in every:
            print(row(r))
        print("\n| variant | " + " | ".join(f"ECE {c}" for c in EXPRESSIONS) + " | top-label ECE per seed |\n|"
              + "---|" * (K + 2))
        for r in every:
            c = r["chosen"]
            print(f"| {r['variant']} | " + " | ".join(f"{e:.3f}" for e in c["class_ece"]) + " | "
                  + "/".join(f"{s['ece']:.3f}" for s in c["per_seed"]) + " |")
        uniform = [r for r in every if "ece_uniform" in r["chosen"]["per_seed"][0]]
        if uniform:  # calibration with every class weighted to the same total (a uniform class prior)
            print("\n| variant (uniform class prior) | " + " | ".join(f"ECE {c}" for c in EXPRESSIONS)
                  + " | top-label ECE per seed | mean forecast " + "/".join(EXPRESSIONS) + f" (calibrated: {1 / K:.3f})"
                  + " |\n|" + "---|" * (K + 3))
            for r in uniform:
                seeds = r["chosen"]["per_seed"]
                per_class = np.mean([s["class_ece_uniform"] for s in seeds], axis=0)
                forecast = (np.mean([s["mean_forecast_uniform"] for s in seeds], axis=0)
                            if "mean_forecast_uniform" in seeds[0] else None)
                print(f"| {r['variant']} | " + " | ".join(f"{e:.3f}" for e in per_class) + " | "
                      + "/".join(f"{s['ece_uniform']:.3f}" for s in seeds) + " | "
                      + ("/".join(f"{f:.3f}" for f in forecast) if forecast is not None else "") + " |")


if __name__ == "__main__":
    main()
