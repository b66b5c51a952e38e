import math

import numpy as np
import pytest

from fedbench.metrics.reg import DEGENERATE_FACTOR, expression_gain, expression_vector, reg_score


def test_reg_is_one_at_the_ground_truth_and_symmetric_in_log_gain():
    assert reg_score(1.0) == 1.0
    assert reg_score(2.0) == pytest.approx(reg_score(0.5))
    assert reg_score(2.0) == pytest.approx(math.exp(-(math.log(2) ** 2) / 0.5))
    assert reg_score(1.5) > reg_score(2.0) > reg_score(3.0)


@pytest.mark.parametrize("g", [0.0, -0.3, -1.0, float("nan")])
def test_reg_is_zero_for_no_or_negative_gain(g):
    assert reg_score(g) == 0.0


def _vec(n, value):
    return np.full(n, value, dtype=np.float64)


def test_gain_is_projection_on_the_ground_truth_change():
    s = np.zeros(59)
    gt = np.zeros(59)
    gt[:3] = [1.0, 0.0, 0.5]
    lazy = expression_gain(s, s, gt)
    assert lazy.gain == 0.0 and not lazy.degenerate
    oracle = expression_gain(s, gt, gt)
    assert oracle.gain == pytest.approx(1.0) and oracle.off_axis == pytest.approx(0.0)
    double = expression_gain(s, 2 * gt, gt)
    assert double.gain == pytest.approx(2.0)
    opposite = expression_gain(s, -gt, gt)
    assert opposite.gain == pytest.approx(-1.0)
    assert reg_score(opposite.gain) == 0.0
    off = np.zeros(59)
    off[10] = 1.0
    sideways = expression_gain(s, gt + off, gt)
    assert sideways.gain == pytest.approx(1.0)
    assert sideways.off_axis == pytest.approx(1.0 / np.linalg.norm(gt))


def test_tiny_ground_truth_change_is_degenerate():
    s = np.zeros(59)
    limit = DEGENERATE_FACTOR * math.sqrt(59)
    gt = np.zeros(59)
    gt[0] = limit * 0.99
    res = expression_gain(s, gt, gt)
    assert res.degenerate and res.gain is None and res.off_axis is None
    gt[0] = limit * 1.01
    assert not expression_gain(s, gt, gt).degenerate


def test_expression_vector_concatenates_blendshapes_and_probabilities():
    e = expression_vector(_vec(52, 0.1), _vec(7, 1 / 7))
    assert e.shape == (59,)
    assert e[0] == pytest.approx(0.1) and e[-1] == pytest.approx(1 / 7)
