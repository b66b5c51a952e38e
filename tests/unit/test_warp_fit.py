"""The warp-field fit on synthetic landmark pairs: Procrustes removes a known head motion, the ridge
model recovers known fields (also for a source>target pair it never saw), cross-validation picks
the shrinkage the data calls for, and the splits are seeded and stratified."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from fedbench.data.manifest import Triplet
from fedbench.editors.warp import N_LANDMARKS, displacement, reference_field, to_face_frame
from fedbench.train.data import assign_folds, stratified_holdout
from fedbench.train.warp_fit import (STABLE_POINTS, PairField, Setting, cross_validate, fields_from_model,
                                     fit_additive, landmark_error, pair_field, remove_head_motion, residual_keys,
                                     similarity_transform)

EMOTIONS = ("happy", "sad", "surprise", "fear", "disgust", "angry")


def synthetic_face(rng: np.random.Generator) -> np.ndarray:
    """478 points in a 400 px face, eyes level at y=200 with the corners where MediaPipe puts them."""
    pts = rng.uniform([300, 150], [700, 650], size=(N_LANDMARKS, 2))
    pts[[33, 133, 362, 263]] = [[380, 200], [460, 200], [540, 200], [620, 200]]
    pts[[168, 6, 197, 195]] = [[500, 205], [500, 240], [500, 275], [500, 310]]
    return pts


def smooth_field(rng: np.random.Generator, scale: float = 0.1) -> np.ndarray:
    """A random expression field in face-frame units; stable points do not move."""
    f = rng.normal(0, scale, size=(N_LANDMARKS, 2))
    f[list(STABLE_POINTS)] = 0.0
    return f


def similarity(points: np.ndarray, scale: float, angle_deg: float, shift: tuple[float, float]) -> np.ndarray:
    a = np.deg2rad(angle_deg)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    return scale * points @ rot.T + np.asarray(shift)


def test_similarity_transform_recovers_scale_rotation_translation() -> None:
    rng = np.random.default_rng(0)
    src = rng.normal(size=(10, 2)) * 50
    dst = similarity(src, 1.3, 7.0, (12.0, -4.0))
    scale, rot, t = similarity_transform(src, dst)
    assert scale == pytest.approx(1.3)
    assert np.degrees(np.arctan2(rot[1, 0], rot[0, 0])) == pytest.approx(7.0)
    assert t == pytest.approx([12.0, -4.0])
    with pytest.raises(ValueError, match="coincide"):
        similarity_transform(np.ones((4, 2)), dst[:4])


def test_procrustes_removes_a_known_head_motion() -> None:
    rng = np.random.default_rng(1)
    source = synthetic_face(rng)
    true_field = smooth_field(rng)
    moved = source + displacement(source, true_field)  # the expression, in S's own frame
    # the ground truth's head also turned 6 degrees, got 20 % larger (another resolution) and moved
    gt = similarity(moved, 1.2, 6.0, (35.0, -20.0))
    np.testing.assert_allclose(remove_head_motion(source, gt), moved, atol=1e-9)
    np.testing.assert_allclose(pair_field(source, gt), true_field, atol=1e-9)
    # without the alignment, the head motion would dominate the "field"
    naive = to_face_frame(source, gt - source)
    assert landmark_error(naive, true_field) > 10 * landmark_error(pair_field(source, gt), true_field) + 0.1


def _pairs(rng: np.random.Generator, truth: dict[str, np.ndarray], keys: list[tuple[str, str]], per_key: int,
           noise: float) -> list[PairField]:
    shape = lambda e: np.zeros((N_LANDMARKS, 2)) if e == "neutral" else truth[e]  # noqa: E731
    out = []
    for s, t in keys:
        for i in range(per_key):
            d = shape(t) - shape(s) + rng.normal(0, noise, size=(N_LANDMARKS, 2))
            out.append(PairField(f"{s}-{t}-{i}", s, t, None, d))
    return out


def test_fit_recovers_known_fields_and_composes_an_unseen_pair() -> None:
    rng = np.random.default_rng(2)
    truth = {e: smooth_field(rng) for e in EMOTIONS}
    keys = [(s, t) for s in EMOTIONS for t in EMOTIONS if s != t and (s, t) != ("happy", "sad")]
    pairs = _pairs(rng, truth, keys, per_key=1, noise=0.01)
    model = fit_additive(pairs, Setting("zero", 0.0, 1e6), residual_keys(pairs, 2))
    unseen = truth["sad"] - truth["happy"]  # happy>sad is not in the training pairs
    err = landmark_error(model.predict("happy", "sad"), unseen)
    assert err < 0.01, err
    # the untrained editor's answer (the reference field, blind to the source) is far off
    assert landmark_error(reference_field("sad"), unseen) > 10 * err


def test_residual_field_fits_a_pair_that_breaks_additivity() -> None:
    rng = np.random.default_rng(3)
    truth = {e: smooth_field(rng) for e in EMOTIONS}
    keys = [(s, t) for s in EMOTIONS for t in EMOTIONS if s != t]
    pairs = _pairs(rng, truth, keys, per_key=3, noise=0.005)
    extra = smooth_field(rng, 0.05)  # happy>sad does something the additive model cannot explain
    pairs = [PairField(p.id, p.source_expression, p.target, None, p.field + extra) if p.key == "happy>sad" else p
             for p in pairs]
    with_res = fit_additive(pairs, Setting("zero", 0.0, 0.5), residual_keys(pairs, 2))
    without = fit_additive(pairs, Setting("zero", 0.0, 1e6), residual_keys(pairs, 2))
    target = truth["sad"] - truth["happy"] + extra
    assert landmark_error(with_res.predict("happy", "sad"), target) < 0.5 * landmark_error(
        without.predict("happy", "sad"), target)


def test_cross_validation_picks_the_shrinkage_the_data_calls_for() -> None:
    rng = np.random.default_rng(4)
    keys = [("neutral", e) for e in EMOTIONS] + [("happy", "sad"), ("sad", "happy"), ("fear", "angry")]
    # clean data far from the reference: little shrinkage wins, and beats the reference editor
    truth = {e: smooth_field(rng) for e in EMOTIONS}
    clean = _pairs(rng, truth, keys, per_key=3, noise=0.005)
    v = cross_validate(clean, k=5, seed=0)
    assert v.best.lam <= 0.5 and v.loss < 0.2 * v.baselines["reference_editor"]
    # pure noise around the reference fields: heavy shrinkage towards the reference wins
    ref = {e: reference_field(e) for e in EMOTIONS}
    noisy = _pairs(rng, ref, keys, per_key=2, noise=0.2)
    v = cross_validate(noisy, k=5, seed=0)
    assert v.best.prior == "reference" and v.best.lam >= 4, v.best
    assert v.loss <= min(r["loss"] for r in v.table) + 1e-12


def test_checkpoint_keys_follow_what_the_data_connects() -> None:
    rng = np.random.default_rng(5)
    truth = {e: smooth_field(rng) for e in EMOTIONS}
    pairs = _pairs(rng, truth, [("happy", "sad"), ("sad", "angry")], per_key=1, noise=0.0)
    fields, stats = fields_from_model(fit_additive(pairs, Setting("reference", 1.0, 1e6), []), pairs)
    assert set(fields) == {"happy>sad", "sad>happy", "happy>angry", "angry>happy", "sad>angry", "angry>sad"}
    assert stats["happy>sad"]["n_pairs"] == 1 and stats["happy>angry"]["n_pairs"] == 0
    # with neutral in the data, per-target keys (requests without a source expression) appear too
    pairs += _pairs(rng, truth, [("neutral", "happy")], per_key=1, noise=0.0)
    fields, _ = fields_from_model(fit_additive(pairs, Setting("reference", 1.0, 1e6), []), pairs)
    assert {"happy", "sad", "angry"} <= set(fields) and "fear" not in fields and "neutral>fear" not in fields


def _triplets(targets: list[str], identities: list[str | None]) -> list[Triplet]:
    return [Triplet(id=f"t{i}", source=Path("s.png"), instruction="", target=t, ground_truth=Path("g.png"),
                    identity=ident, row=i + 1) for i, (t, ident) in enumerate(zip(targets, identities))]


def test_stratified_holdout_is_seeded_and_per_class() -> None:
    items = _triplets([e for e in EMOTIONS for _ in range(5)], [None] * 30)
    rest, held = stratified_holdout(items, 2, seed=0)
    assert Counter(t.target for t in held) == {e: 2 for e in EMOTIONS} and len(rest) == 18
    assert [t.id for t in held] == [t.id for t in stratified_holdout(items, 2, seed=0)[1]]
    assert [t.id for t in held] != [t.id for t in stratified_holdout(items, 2, seed=1)[1]]
    # a class with too few rows keeps one for training
    rest, held = stratified_holdout(_triplets(["happy", "happy", "sad"], [None] * 3), 5, seed=0)
    assert Counter(t.target for t in rest) == {"happy": 1, "sad": 1}


def test_folds_hold_out_identities_when_there_are_enough() -> None:
    targets = [e for e in EMOTIONS for _ in range(4)]
    people = [f"p{i % 8}" for i in range(24)]
    folds = assign_folds(targets, people, k=4, seed=0)
    assert folds.mode == "identity"
    for person in set(people):  # nobody on both sides of a fold
        assert len({f for f, p in zip(folds.fold, people) if p == person}) == 1
    # one person: folds by pair, every fold used, stratified (each class spread over folds)
    folds = assign_folds(targets, ["one"] * 24, k=4, seed=0)
    assert folds.mode == "pair" and set(folds.fold) == {0, 1, 2, 3}
    for e in EMOTIONS:
        assert len({f for f, t in zip(folds.fold, targets) if t == e}) == 4
    assert assign_folds(targets, ["one"] * 24, k=4, seed=0).fold == folds.fold
    with pytest.raises(ValueError, match="at least 2"):
        assign_folds(["happy"], [None], k=5, seed=0)
