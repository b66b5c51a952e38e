"""The warp-field fit on synthetic landmark pairs: Procrustes removes a known head motion, the ridge
model recovers known fields (also for a source>target pair it never saw), cross-validation picks
the shrinkage the data calls for (also a per-class scale of the reference), and validation folds hold
out whole people or source images."""

from __future__ import annotations


import numpy as np
import pytest

from fedbench.editors.warp import N_LANDMARKS, displacement, reference_field, to_face_frame
from fedbench.train.data import assign_folds
from fedbench.train.warp_fit import (STABLE_POINTS, PairField, Setting, cross_validate, fields_from_model,
                                     fit_additive, fit_scales, landmark_error, landmark_reg, pair_field, remove_head_motion, residual_keys,
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
            out.append(PairField(f"{s}-{t}-{i}", s, t, f"person-{i}-{s}", d))
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
    pairs = [PairField(p.id, p.source_expression, p.target, p.identity, p.field + extra) if p.key == "happy>sad" else p
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
    v = cross_validate(clean, k=5, seed=0, objective="rmse")
    assert v.best.lam <= 0.5 and v.loss < 0.2 * v.baselines["reference_editor"]
    # pure noise around the reference fields: heavy shrinkage towards the reference wins
    ref = {e: reference_field(e) for e in EMOTIONS}
    noisy = _pairs(rng, ref, keys, per_key=2, noise=0.2)
    v = cross_validate(noisy, k=5, seed=0, objective="rmse")
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


def test_folds_hold_out_whole_people_else_whole_source_images_never_single_pairs() -> None:
    targets = [e for e in EMOTIONS for _ in range(4)]
    people = [f"p{i % 8}" for i in range(24)]
    sources = [f"img{i % 5}.png" for i in range(24)]
    folds = assign_folds(targets, people, sources, k=4, seed=0)
    assert folds.mode == "identity" and folds.k == 4
    for person in set(people):  # nobody on both sides of a fold
        assert len({f for f, p in zip(folds.fold, people) if p == person}) == 1
    # one person dominating is still held out whole (the old code fell back to pairs here)
    skewed = ["big"] * 16 + people[16:]
    folds = assign_folds(targets, skewed, sources, k=4, seed=0)
    assert len({f for f, p in zip(folds.fold, skewed) if p == "big"}) == 1
    # no identity: the source image is the group; mixed rows use whichever they have
    folds = assign_folds(targets, [None] * 24, sources, k=4, seed=0)
    assert folds.mode == "source image" and folds.k == 4
    for src in set(sources):
        assert len({f for f, s in zip(folds.fold, sources) if s == src}) == 1
    mixed = ["p0"] * 6 + [None] * 18
    folds = assign_folds(targets, mixed, sources, k=10, seed=0)
    assert folds.mode == "identity, else source image"
    assert folds.k == 6  # p0 and the five source images: fewer groups than folds -> leave one group out
    assert assign_folds(targets, [None] * 24, sources, k=4, seed=0).fold == assign_folds(
        targets, [None] * 24, sources, k=4, seed=0).fold
    # one person only: no other face exists; other photos of that person are held out, and the mode says so
    folds = assign_folds(targets, ["one"] * 24, sources, k=4, seed=0)
    assert folds.mode == "source image (one person only)" and folds.k == 4
    for src in set(sources):
        assert len({f for f, s in zip(folds.fold, sources) if s == src}) == 1
    with pytest.raises(ValueError, match="at least 2 people"):  # one person, one photo: nothing to hold out
        assign_folds(targets, ["one"] * 24, ["a.png"] * 24, k=4, seed=0)
    with pytest.raises(ValueError, match="at least 2"):
        assign_folds(["happy"], [None], ["a.png"], k=5, seed=0)


def test_residuals_need_pairs_from_several_people() -> None:
    f = np.zeros((N_LANDMARKS, 2))
    one_person = [PairField(f"s-{i}", "neutral", "happy", "slider", f) for i in range(3)]
    assert residual_keys(one_person, 2) == []  # three intensities of one face are one face
    two = one_person + [PairField("x", "neutral", "happy", "other", f)]
    assert residual_keys(two, 2) == ["neutral>happy"]


def test_scaled_prior_recovers_per_class_scales_across_people() -> None:
    rng = np.random.default_rng(6)
    true_scale = {e: 0.5 + 0.25 * i for i, e in enumerate(EMOTIONS)}
    truth = {e: true_scale[e] * reference_field(e) for e in EMOTIONS}
    keys = [("neutral", e) for e in EMOTIONS] + [("happy", "sad"), ("fear", "angry")]
    pairs = _pairs(rng, truth, keys, per_key=10, noise=0.01)
    model = fit_additive(pairs, Setting("scaled", 1e6, 1e6), [])
    for e in EMOTIONS:  # off by at most the pull of its one pseudo-pair at a = 1 among >= 10 pairs
        assert abs(model.scales[e] - true_scale[e]) < 0.05, (e, model.scales[e])
        assert landmark_error(model.shape(e), truth[e]) < 0.01
    # a class the data never shows keeps the reference scale (its kappa pseudo-pair)
    only_happy = [p for p in pairs if p.key == "neutral>happy"]
    assert fit_scales(only_happy, Setting("scaled", 1e6, 1e6), [])["sad"] == pytest.approx(1.0, abs=1e-6)
    # cross-validation finds it: the scaled prior beats the plain reference
    v = cross_validate(_pairs(rng, truth, keys, per_key=2, noise=0.05), k=4, seed=0, objective="rmse")
    assert v.best.prior == "scaled", v.best
    best_ref = min(r["loss"] for r in v.table if r["prior"] == "reference")
    assert v.loss < best_ref < v.baselines["reference_editor"]


def test_landmark_reg_is_feds_gain_curve_on_landmark_moves() -> None:
    rng = np.random.default_rng(7)
    f = smooth_field(rng)
    assert landmark_reg(f, f) == pytest.approx(1.0)
    assert landmark_reg(0.5 * f, f) == pytest.approx(landmark_reg(2.0 * f, f))  # halving = doubling
    assert landmark_reg(0.5 * f, f) == pytest.approx(np.exp(-np.log(0.5) ** 2 / 0.5))
    assert landmark_reg(np.zeros_like(f), f) == 0.0 and landmark_reg(-f, f) == 0.0  # no edit, wrong way
    # with the REG objective no edit is the worst answer (the RMSE objective can prefer it)
    keys = [("neutral", e) for e in EMOTIONS] + [("happy", "sad")]
    truth = {e: smooth_field(rng) for e in EMOTIONS}
    v = cross_validate(_pairs(rng, truth, keys, per_key=3, noise=0.005), k=4, seed=0)
    assert v.objective == "reg" and v.baselines["no_edit"] == 1.0 and v.loss < 0.1
