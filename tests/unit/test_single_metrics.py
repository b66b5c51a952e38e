"""Single-metric baselines of the bias study, the bias table and the meta helpers (no models)."""

from __future__ import annotations

import numpy as np
import pytest

from fedbench.labels import EXPRESSIONS
from fedbench.meta.bias import bias_table
from fedbench.meta.human import RatingsError, agreement, krippendorff_alpha_interval, read_ratings
from fedbench.meta.probes import default_probes
from fedbench.meta.sequences import window_sizes
from fedbench.metrics import single


def _img(seed: int, shape=(64, 48, 3)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def test_identity_cosine_is_one_for_the_same_embedding_and_scale_free():
    a = np.random.default_rng(0).normal(size=128)
    assert single.identity_cosine(a, a) == pytest.approx(1.0)
    assert single.identity_cosine(a, 3 * a) == pytest.approx(1.0)
    assert single.identity_cosine(a, -a) == pytest.approx(-1.0)
    with pytest.raises(ValueError, match="all zeros"):
        single.identity_cosine(a, np.zeros(128))


def test_target_probability_reads_the_target_and_accepts_aliases():
    p = np.arange(1, 8, dtype=float) / 28
    assert single.target_probability(p, "surprise") == pytest.approx(p[EXPRESSIONS.index("surprise")])
    assert single.target_probability(p, "surprised") == single.target_probability(p, "surprise")
    with pytest.raises(ValueError, match="contempt"):
        single.target_probability(p, "contempt")
    with pytest.raises(ValueError, match="shape"):
        single.target_probability(p[:6], "happy")


def test_pixel_l1_similarity_is_one_for_a_copy_and_falls_with_distance():
    g = _img(1)
    assert single.pixel_l1_similarity(g, g) == 1.0
    near = np.clip(g.astype(int) + 10, 0, 255).astype(np.uint8)
    far = np.clip(g.astype(int) + 60, 0, 255).astype(np.uint8)
    assert 1.0 > single.pixel_l1_similarity(near, g) > single.pixel_l1_similarity(far, g)
    assert single.pixel_l1_similarity(np.zeros_like(g), np.full_like(g, 255)) == 0.0


def test_pixel_metrics_resize_the_edit_to_the_reference():
    g = _img(2, (200, 100, 3))
    e = np.repeat(np.repeat(g, 2, axis=0), 2, axis=1)  # the same picture at twice the size
    assert single.pixel_l1_similarity(e, g) > 0.99
    assert single.ssim_similarity(e, g) > 0.9


def test_ssim_similarity_is_one_for_a_copy_and_lower_for_noise():
    g = _img(3)
    assert single.ssim_similarity(g, g) == pytest.approx(1.0, abs=1e-6)
    noisy = np.clip(g.astype(int) + np.random.default_rng(4).normal(0, 40, g.shape), 0, 255).astype(np.uint8)
    assert single.ssim_similarity(noisy, g) < 0.9


def test_optional_metrics_are_absent_until_registered():
    names = {m.name: m for m in single.optional_metrics()}
    assert names["clip-t"].fn is None and names["dino"].fn is None
    single.register_optional_metric("unit-test-metric", lambda e, s, g, i: 0.5)
    try:
        registered = {m.name: m for m in single.optional_metrics()}["unit-test-metric"]
        assert registered.fn is not None and registered.fn(None, None, None, "") == 0.5
    finally:
        single._REGISTERED.pop("unit-test-metric")
    with pytest.raises(TypeError):
        single.register_optional_metric("x", 3)  # type: ignore[arg-type]


def test_bias_table_finds_a_metric_that_prefers_the_lazy_probe():
    probes = default_probes(blend_ks=(0.5, 1.0, 2.0), warp_strengths=())
    per_triplet = {}
    for t in range(4):
        per_triplet[f"t{t}"] = {
            "lazy": {"identity_cosine": 1.0, "fed": 0.0},
            "oracle": {"identity_cosine": 0.9, "fed": 99.0},
            "blend-0.5": {"identity_cosine": 0.95, "fed": 50.0},
            "blend-1": {"identity_cosine": 0.9, "fed": 99.0},  # the copy probe: never ranked
            "blend-2": {"identity_cosine": 0.8, "fed": 80.0},
        }
    table = bias_table(per_triplet, probes)
    assert table["metrics"]["identity_cosine"]["most_often_first"] == "lazy"
    assert table["metrics"]["identity_cosine"]["lazy_or_over_edit_above_oracle"] == 1.0
    assert table["metrics"]["fed"]["first_share"] == {"oracle": 1.0}
    assert table["biased_single_metrics"] == ["identity_cosine"]
    assert table["fed_lazy_or_over_edit_above_oracle"] == 0.0


def test_bias_table_splits_ties():
    probes = default_probes(blend_ks=(2.0,), warp_strengths=())
    per_triplet = {"t": {"lazy": {"m": 1.0}, "oracle": {"m": 1.0}, "blend-2": {"m": 0.0}}}
    assert bias_table(per_triplet, probes)["metrics"]["m"]["first_share"] == {"lazy": 0.5, "oracle": 0.5}


def test_sequence_windows_match_the_fixture_definition():
    assert window_sizes(26) == (5, 7)  # frames 1-5 and 20-26 of a 28-frame sequence
    assert window_sizes(3) == (1, 1)


def test_krippendorff_alpha_interval_matches_the_published_example():
    # Krippendorff (2011), "Computing Krippendorff's alpha-reliability": 4 coders, 12 units,
    # interval alpha 0.849.
    units = [[1, 1, 1], [2, 2, 3, 2], [3, 3, 3, 3], [3, 3, 3, 3], [2, 2, 2, 2], [1, 2, 3, 4],
             [4, 4, 4, 4], [1, 1, 2, 1], [2, 2, 2, 2], [5, 5, 5], [1, 1], [3]]
    assert krippendorff_alpha_interval(units) == pytest.approx(0.849, abs=1e-3)
    assert krippendorff_alpha_interval([[1, 1], [2, 2], [3, 3]]) == pytest.approx(1.0)
    assert krippendorff_alpha_interval([[1], [2]]) is None


def test_ratings_agreement_and_bad_rows(tmp_path):
    good = tmp_path / "r.csv"
    lines = ["sample,rater,fed,alignment"]
    for i in range(6):
        lines += [f"s{i},a,{i},{i}", f"s{i},b,{i + 0.5},"]
    good.write_text("\n".join(lines) + "\n")
    ratings = read_ratings(good, {f"s{i}" for i in range(6)})
    scores = {f"s{i}": {"fed": 10.0 * i, "alignment": 0.1 * (6 - i), "fidelity": None, "reg": None} for i in range(6)}
    res = agreement(ratings, scores, n_boot=200)
    assert res["fed"]["spearman"] == pytest.approx(1.0) and res["fed"]["kendall"] == pytest.approx(1.0)
    assert res["alignment"]["spearman"] == pytest.approx(-1.0)
    assert res["fed"]["mean_pairwise_spearman"] == pytest.approx(1.0)
    assert res["fed"]["krippendorff_alpha_interval"] > 0.9
    bad = tmp_path / "bad.csv"
    bad.write_text("sample,rater,fed\ns0,a,high\nzz,a,1\ns1,,2\n")
    with pytest.raises(RatingsError) as exc:
        read_ratings(bad, {"s0", "s1"})
    msg = str(exc.value)
    assert "bad.csv" in msg and "row 2" in msg and "row 3" in msg and "row 4" in msg
    with pytest.raises(RatingsError, match="expected columns"):
        (tmp_path / "h.csv").write_text("who,score\n")
        read_ratings(tmp_path / "h.csv")
