"""The emotion fusion head: its fitting arithmetic, and the shipped artifact refits bit for bit."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fedbench.faces import fusion
from fedbench.faces.emotion import BlendshapePrototype, EmotionEnsemble
from fedbench.labels import EXPRESSIONS

REPO = Path(__file__).resolve().parents[2]
TABLE = REPO / "benchmarks/data/fusion_head_v1_features.npz"


def _table() -> dict[str, np.ndarray]:
    with np.load(TABLE, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def test_shipped_head_refits_bit_for_bit_from_its_feature_table():
    t = _table()
    body = json.loads(fusion.head_text("fusion-v1"))
    weights = fusion.fit_head(t["x"], t["offset"], t["label"][t["found"]], body["cross_validation"]["ridge"])
    shipped = fusion.load_head("fusion-v1").weights
    assert np.array_equal(weights.W, shipped.W)
    assert np.array_equal(weights.b, shipped.b)
    assert np.array_equal(weights.mean, shipped.mean) and np.array_equal(weights.scale, shipped.scale)
    assert weights.a == shipped.a
    assert body["fitted_on"]["faces"] == int(t["found"].sum())
    assert body["cnn_members"] == list(fusion.load_head("fusion-v1").cnn_members)


def test_head_artifact_records_cross_validated_figures_for_every_class():
    body = json.loads(fusion.head_text("fusion-v1"))
    cv = body["cross_validation"]
    assert set(cv["per_class"]) == set(EXPRESSIONS)
    for c in cv["per_class"].values():
        assert 0.0 <= c["accuracy"] <= 1.0 and 0.0 <= c["calibration_error"] <= 1.0
    # the chosen ridge: the strongest within 0.005 of the grid's best grouped-CV balanced accuracy
    top = max(g["balanced_accuracy"] for g in body["ridge_grid"])
    assert cv["ridge"] == max(g["ridge"] for g in body["ridge_grid"] if g["balanced_accuracy"] >= top - 0.005)


def test_group_folds_keep_each_person_in_one_fold():
    groups = np.array(["a", "a", "b", "c", "c", "c", "d", "e"])
    folds = fusion.group_folds(groups, 3, seed=1)
    for g in set(groups.tolist()):
        assert len(set(folds[groups == g].tolist())) == 1
    assert np.array_equal(folds, fusion.group_folds(groups, 3, seed=1))


def test_balanced_weights_give_each_class_equal_total():
    y = np.array([0, 0, 0, 0, 1, 2, 2])
    w = fusion.balanced_weights(y)
    totals = np.bincount(y, weights=w)
    assert np.allclose(totals[totals > 0], totals[0])


def test_strong_ridge_returns_the_members_prior():
    """With W and b pinned to 0 the head is the members' mean at a fitted temperature: the regularisation
    pulls toward what they know."""
    rng = np.random.default_rng(0)
    prior = rng.dirichlet(np.ones(7), size=200)
    y = np.array([rng.choice(7, p=p) for p in prior])
    x = rng.normal(size=(200, 5))
    w = fusion.fit_head(x, np.log(prior), y, ridge=1e6, bias_ridge=1e6)
    assert np.abs(w.W).max() < 1e-6 and np.abs(w.b).max() < 1e-6
    assert 0.7 < w.a < 1.3  # labels drawn from the prior: about its own temperature
    assert np.allclose(w.predict(x, np.log(prior)), fusion.softmax(w.a * np.log(prior)))


def test_head_learns_a_signal_the_prior_lacks():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 7, size=700)
    x = np.eye(7)[y] * 2.0 + rng.normal(scale=0.5, size=(700, 7))
    flat = np.log(np.full((700, 7), 1 / 7))
    w = fusion.fit_head(x, flat, y, ridge=1e-3)
    assert (w.predict(x, flat).argmax(axis=1) == y).mean() > 0.9


def test_calibration_error_is_small_for_calibrated_forecasts_and_large_for_overconfident_ones():
    rng = np.random.default_rng(2)
    prob = rng.dirichlet(np.ones(7) * 0.5, size=4000)
    y = np.array([rng.choice(7, p=p) for p in prob])
    assert fusion.expected_calibration_error(prob, y) < 0.05
    sharp = np.eye(7)[prob.argmax(axis=1)] * 0.999 + 0.001 / 7
    assert fusion.expected_calibration_error(sharp, y) > 0.2
    assert fusion.classwise_calibration_error(prob, y, 0) < 0.05


def test_geometry_is_invariant_to_the_face_s_position_roll_and_scale():
    rng = np.random.default_rng(3)
    pts = rng.uniform(100, 300, size=(478, 2))
    theta = 0.3
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    moved = (pts @ rot.T) * 1.7 + [40.0, -25.0]
    assert np.allclose(fusion.geometry_features(pts), fusion.geometry_features(moved))
    assert len(fusion.geometry_features(pts)) == len(fusion.GEOMETRY_NAMES)


def test_config_names_the_members_the_head_needs():
    from fedbench.faces.perception import FUSION_V1_MEMBERS, PerceptionConfig

    assert tuple(fusion.load_head("fusion-v1").cnn_members) == FUSION_V1_MEMBERS
    with pytest.raises(ValueError, match="faceapi-cnn"):
        PerceptionConfig(emotion_members=["fer-cnn", "facex-cnn"])
    assert PerceptionConfig(emotion_members=["fer-cnn"], emotion_head="mean").emotion_head == "mean"


def test_ensemble_refuses_a_head_whose_members_are_missing():
    with pytest.raises(ValueError, match="fer-cnn"):
        EmotionEnsemble([BlendshapePrototype()], head=fusion.load_head("fusion-v1"))


MIRROR_TABLE = REPO / "benchmarks/data/fusion_head_mirror_features.npz"


def _load(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def test_fusion_v2_refits_bit_for_bit_from_the_face_and_mirror_tables():
    """fusion-v2's training set, assembled here independently of the fit script: every dev face with a
    found face, then the mirror image of each of those whose mirror was found too (same label), weighted
    ~ n_class ** -power."""
    t, m = _load(TABLE), _load(MIRROR_TABLE)
    assert np.array_equal(t["image"], m["image"]) and str(t["signature"]) == str(m["signature"])
    body = json.loads(fusion.head_text("fusion-v2"))
    rows_m = np.cumsum(m["found"]) - 1
    both = t["found"] & m["found"]
    x = np.concatenate([t["x"], m["x"][rows_m[both]]])
    off = np.concatenate([t["offset"], m["offset"][rows_m[both]]])
    y = np.concatenate([t["label"][t["found"]], t["label"][both]])
    assert body["fitted_on"]["mirror_images"] == int(both.sum())
    w = fusion.class_weights(y, body["training"]["class_weight_power"])
    weights = fusion.fit_head(x, off, y, body["cross_validation"]["ridge"], sample_weight=w)
    shipped = fusion.load_head("fusion-v2")
    assert shipped.version == "fusion-v2" and shipped.sha256 != fusion.load_head("fusion-v1").sha256
    assert np.array_equal(weights.W, shipped.weights.W) and np.array_equal(weights.b, shipped.weights.b)
    assert np.array_equal(weights.mean, shipped.weights.mean) and weights.a == shipped.weights.a


def test_class_weights_power_one_is_balanced_and_above_one_favours_rare_classes():
    y = np.array([0, 0, 0, 0, 1, 2, 2])
    assert np.array_equal(fusion.class_weights(y, 1.0), fusion.balanced_weights(y))
    w = fusion.class_weights(y, 1.5)
    totals = np.bincount(y, weights=w)
    assert np.isclose(w.sum(), len(y)) and totals[1] > totals[2] > totals[0]


def test_unknown_head_is_refused():
    with pytest.raises(ValueError, match="fusion-v9"):
        fusion.head_text("fusion-v9")


def test_each_head_keys_the_feature_cache_with_its_own_sha256():
    from fedbench.faces.perception import PerceptionConfig

    v1, v2 = (json.loads(PerceptionConfig(emotion_head=h).signature()) for h in ("fusion-v1", "fusion-v2"))
    assert v1["emotion_head_sha256"] == fusion.load_head("fusion-v1").sha256
    assert v2["emotion_head_sha256"] == fusion.load_head("fusion-v2").sha256 != v1["emotion_head_sha256"]
    assert tuple(fusion.load_head("fusion-v2").cnn_members) == tuple(fusion.load_head("fusion-v1").cnn_members)


def test_weighted_calibration_error_reweights_the_bins():
    rng = np.random.default_rng(4)
    prob = rng.dirichlet(np.ones(7) * 0.5, size=3000)
    y = np.array([rng.choice(7, p=p) for p in prob])
    ones = np.ones(len(y))
    assert fusion.expected_calibration_error(prob, y, weight=ones) == pytest.approx(fusion.expected_calibration_error(prob, y))
    assert fusion.classwise_calibration_error(prob, y, 2, weight=ones) == pytest.approx(
        fusion.classwise_calibration_error(prob, y, 2))
    # forecasts calibrated for the natural frequencies: a class weighted up is then under-forecast
    always = np.tile(np.bincount(y, minlength=7) / len(y), (len(y), 1))
    w = np.where(y == 0, 10.0, 1.0)
    assert fusion.classwise_calibration_error(always, y, 0) < 0.01
    assert fusion.classwise_calibration_error(always, y, 0, weight=w) > 0.3


def test_provenance_names_the_head_in_use():
    from fedbench.faces.perception import PerceptionConfig
    from fedbench.scoring.provenance import backbones_used

    for version in fusion.HEAD_FILES:
        head = backbones_used(PerceptionConfig(emotion_head=version))["models"]["fusion-head"]
        assert head["sha256"] == fusion.load_head(version).sha256
        assert head["source"].endswith(fusion.HEAD_FILES[version])
    assert "fusion-head" not in backbones_used(PerceptionConfig(emotion_head="mean"))["models"]
