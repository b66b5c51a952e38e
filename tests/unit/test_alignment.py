import numpy as np
import pytest

from fedbench.faces.blendshapes import BLENDSHAPE_NAMES
from fedbench.labels import EXPRESSIONS
from fedbench.metrics.alignment import action_alignment, alignment, emotion_alignment, required_actions
from fedbench.metrics.lexicon import parse_actions

IDX = {n: i for i, n in enumerate(BLENDSHAPE_NAMES)}


def probs(cls: str, p: float) -> np.ndarray:
    out = np.full(7, (1 - p) / 6)
    out[EXPRESSIONS.index(cls)] = p
    return out


def bs(**values: float) -> np.ndarray:
    out = np.zeros(52)
    for k, v in values.items():
        out[IDX[k]] = v
    return out


def test_emotion_alignment_absolute_and_relative_to_ground_truth():
    assert emotion_alignment(probs("happy", 0.6), "happy") == pytest.approx(0.6)
    assert emotion_alignment(probs("happy", 0.3), "happy", gt_probs=probs("happy", 0.6)) == pytest.approx(0.5)
    assert emotion_alignment(probs("happy", 0.9), "happy", gt_probs=probs("happy", 0.6)) == 1.0


def test_named_actions_are_scored_by_direction_only():
    actions = parse_actions("Make her smile")
    src = bs()
    assert action_alignment(src, bs(mouthSmileLeft=0.05, mouthSmileRight=0.05), actions) == pytest.approx(1.0)
    assert action_alignment(src, bs(mouthSmileLeft=0.9, mouthSmileRight=0.9), actions) == 1.0  # no reward for more
    assert action_alignment(src, bs(mouthSmileLeft=0.025, mouthSmileRight=0.025), actions) == pytest.approx(0.5)
    assert action_alignment(bs(mouthSmileLeft=0.5, mouthSmileRight=0.5), src, actions) == 0.0  # wrong way


def test_without_named_actions_the_ground_truth_moves_define_them():
    src = bs(jawOpen=0.05)
    gt = bs(jawOpen=0.5, mouthSmileLeft=0.02)
    actions, origin = required_actions("Make the expression surprise.", src, gt)
    assert origin == "ground_truth"
    assert [a.blendshapes for a in actions] == [(IDX["jawOpen"],)]
    assert actions[0].sign == 1
    closing, _ = required_actions("Make the expression neutral.", gt, src)
    assert closing[0].sign == -1
    assert required_actions("relax", src, src)[0] == []
    assert action_alignment(src, gt, []) is None


def test_relative_action_step_and_unperformed_actions():
    actions = parse_actions("raise the eyebrows and drop the jaw")
    src = bs()
    gt = bs(jawOpen=0.02)  # G opens the jaw a little and does not raise the brows at all
    # v1.1: brows are not scored (G does not perform them), jaw counts fully at G's own move
    assert action_alignment(src, bs(jawOpen=0.02), actions, gt_bs=gt) == pytest.approx(1.0)
    assert action_alignment(src, bs(jawOpen=0.01), actions, gt_bs=gt) == pytest.approx(0.5)
    # v1.0: every named action, fixed 0.05 step
    assert action_alignment(src, bs(jawOpen=0.02), actions) == pytest.approx((0 + 0 + 0.4) / 3)
    assert action_alignment(src, bs(jawOpen=0.02), actions, gt_bs=bs()) is None


def test_alignment_combines_levels():
    assert alignment(0.4, 0.8) == pytest.approx(0.6)
    assert alignment(0.4, None) == 0.4


@pytest.mark.parametrize(
    "instruction, expected",
    [
        ("lower the lip corners, raise the inner corners of the eyebrows and let the face fall",
         {"mouth_frown", "brow_inner_up"}),
        ("lower and draw the eyebrows together, narrow the eyes and press the lips",
         {"brow_down", "eye_squint", "mouth_press"}),
        ("raise and pull the eyebrows together, widen the eyes and stretch the lips sideways",
         {"brow_inner_up", "brow_outer_up", "eye_wide", "mouth_stretch"}),
        ("raise the eyebrows high, widen the eyes and drop the jaw so the mouth opens",
         {"brow_inner_up", "brow_outer_up", "eye_wide", "jaw_open"}),
        ("Change the expression to disgust: wrinkle the nose, raise the upper lip and lower the lip corners.",
         {"nose_sneer", "upper_lip_up", "mouth_frown"}),
        ("smile broadly with the lip corners pulled up and the cheeks raised", {"mouth_smile", "cheek_squint"}),
        ("Change the expression to happy.", set()),
    ],
)
def test_lexicon(instruction, expected):
    assert {a.name for a in parse_actions(instruction)} == expected


def test_lexicon_negation_flips_the_sign():
    (a,) = parse_actions("Stop smiling")
    assert a.name == "mouth_smile" and a.sign == -1
