import numpy as np
import pytest

from fedbench.metrics.fidelity import background_score, fidelity, identity_score, quality_score

C0 = 0.363


def test_identity_is_one_when_the_edit_keeps_identity_as_well_as_the_ground_truth():
    assert identity_score(0.8, 0.8, C0) == 1.0
    assert identity_score(0.9, 0.8, C0) == 1.0  # clipped
    assert identity_score(C0, 0.8, C0) == 0.0
    assert identity_score(0.1, 0.8, C0) == 0.0  # another person
    assert identity_score((C0 + 0.8) / 2, 0.8, C0) == pytest.approx(0.5)


def test_identity_denominator_falls_back_when_the_ground_truth_drifts():
    # cos(G, S) <= c0 + 0.05: normalise by 1 - c0 instead of a near-zero denominator
    assert identity_score(0.40, 0.40, C0) == pytest.approx((0.40 - C0) / (1 - C0))
    assert identity_score(0.40, C0 + 0.05, C0) == pytest.approx((0.40 - C0) / (1 - C0))
    assert identity_score(0.40, C0 + 0.051, C0) == pytest.approx(min(1.0, (0.40 - C0) / 0.051))


def test_quality_against_source_and_against_ground_truth():
    assert quality_score(50.0, 100.0) == 0.5
    assert quality_score(200.0, 100.0) == 1.0
    assert quality_score(50.0, 100.0, q_gt=50.0) == 1.0  # v1.1: G itself is that sharp
    assert quality_score(25.0, 100.0, q_gt=50.0) == 0.5
    assert quality_score(10.0, 0.0) == 1.0


def test_background_is_mean_ssim_outside_the_face_and_none_without_background():
    ssim = np.full((10, 10), 0.5)
    ssim[:5] = 1.0
    bg = np.zeros((10, 10), bool)
    bg[:5] = True
    assert background_score(ssim, bg) == 1.0
    assert background_score(np.full((10, 10), -0.2), bg) == 0.0
    assert background_score(ssim, np.zeros((10, 10), bool)) is None


def test_fidelity_is_the_geometric_mean():
    assert fidelity(1.0, 1.0, 1.0) == 1.0
    assert fidelity(0.0, 1.0, 1.0) == 0.0
    assert fidelity(0.5, 0.5, 0.5) == pytest.approx(0.5)
    assert fidelity(0.25, None, 1.0) == pytest.approx(0.5)
