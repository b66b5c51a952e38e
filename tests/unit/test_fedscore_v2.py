"""Components that FED-Score 1.2 and 2.0 introduce, on constructed features, and each status rule."""

import math

import numpy as np
import pytest

from fedbench.faces.blendshapes import BLENDSHAPE_NAMES
from fedbench.faces.perception import PerceptionConfig
from fedbench.metrics import core, noise
from fedbench.metrics.fedscore import COMPONENTS, ImageOutcome, score_triplet
from fedbench.metrics.fidelity import relative_background
from fedbench.metrics.spec import get_spec
from fedbench.store.features import signature_hash
from test_score_triplet import RGB, G, S, face, feats  # the constructed faces of the row tests

V2 = get_spec("2.0")
MEMBERS = ("fer-cnn", "facex-cnn", "blendshape-prototype")


def _with_members(f):
    f.members = np.stack([f.emotion, f.emotion, np.full(7, 1 / 7)])
    return f


def _feats(f) -> ImageOutcome:
    out = feats(_with_members(f))
    out.features.member_names = list(MEMBERS)
    return out


def test_relative_background_1_2():
    assert relative_background(0.8, 0.9) == pytest.approx(0.8 / 0.9)
    assert relative_background(0.95, 0.9) == 1.0  # kept better than G did: capped
    assert relative_background(0.3, 0.2) == pytest.approx(0.3 / 0.5)  # G redrew everything: floor 0.5
    assert relative_background(None, 0.9) is None and relative_background(0.7, None) == 0.7


def test_background_colour_term_only_in_versions_that_compare_colour():
    assert core.background_value(V2, 0.99, 20.0) == pytest.approx(0.99 * V2.bg_chroma_tolerance / 20.0)
    assert core.background_value(V2, 0.99, 3.0) == pytest.approx(0.99)  # processing-size colour change
    assert core.background_value(get_spec("1.2"), 0.99, 20.0) == 0.99


def test_reg_gated_combination_keeps_a_small_reg_small():
    a = f = 0.9
    assert core.combine(get_spec("1.2"), a, f, 0.16) > 45  # the 1.2 cube root lifts it
    assert core.combine(V2, a, f, 0.16) == pytest.approx(100 * 0.16 * 0.9)
    assert core.combine(V2, 1.0, 1.0, 1.0) == pytest.approx(100.0) and core.combine(V2, a, f, 0.0) == 0.0
    assert core.combine(V2, a, f, None) is None


def test_whitening_ignores_gaze_neutral_and_the_double_counted_probabilities():
    w = core._whitening(V2)
    for i, d in enumerate(noise.DIMS):
        if d == "bs:_neutral" or d.startswith("bs:eyeLook") or d.startswith("p:"):
            assert w[i] == 0.0, d
        else:
            assert w[i] > 0.0, d
    assert w.max() <= 1 / V2.sigma_floor + 1e-9


def test_whitened_gain_and_degenerate_rule():
    s = _with_members(face("neutral"))
    small = _with_members(face("neutral"))  # G within the noise: a few noise-sized blendshape moves
    scale = noise.load().scale_of(noise.BLENDSHAPE_DIMS)
    small.blendshapes = (s.blendshapes + 0.5 * scale).astype(np.float32)
    assert core.reference(V2, "happy", "smile", s, small, MEMBERS).change.degenerate
    big = _with_members(face("happy", smile=0.8))
    ref = core.reference(V2, "happy", "smile", s, big, MEMBERS)
    assert not ref.change.degenerate
    half = _with_members(face("neutral"))
    half.blendshapes = ((s.blendshapes + big.blendshapes) / 2).astype(np.float32)
    half.emotion = half.members[0] = half.members[1] = (s.emotion + big.emotion) / 2
    g_half = core.expression_change(V2, s, half, big, MEMBERS).gain
    assert g_half == pytest.approx(0.5, abs=1e-6)
    gaze = _with_members(face("neutral"))
    gaze.blendshapes = s.blendshapes.copy()
    gaze.blendshapes[BLENDSHAPE_NAMES.index("eyeLookUpLeft")] = 0.9  # looking up is no expression
    assert core.expression_change(V2, s, gaze, big, MEMBERS).gain == pytest.approx(0.0, abs=1e-9)


def test_processing_allowance_forgives_a_small_identity_and_quality_loss():
    drop, q = core.processing_allowance(V2)
    assert 0 < drop < 0.1 and 0.5 < q < 1
    assert core.processing_allowance(get_spec("1.2")) == (0.0, 1.0)


@pytest.mark.parametrize("version", ["1.2", "2.0"])
@pytest.mark.parametrize("generation, status, zero", [
    (("refused", "content policy"), "refused", False),
    (("generation_failed", "timeout"), "generation_failed", True),
])
def test_generation_statuses(version, generation, status, zero):
    s, g = _feats(face("neutral")), _feats(face("happy", smile=0.8))
    r = score_triplet("x", "happy", "Make her smile", s, g, ImageOutcome(None, "missing"), RGB, RGB, 0.363,
                      version, generation)
    assert r["status"] == r["edit_status"] == status and r["reason"] == generation[1]
    assert all((r[c] == 0.0) if zero else (r[c] is None) for c in COMPONENTS)


def test_v2_rows_report_the_registration_and_1_2_rows_keep_their_layout():
    s, g = _feats(face("neutral")), _feats(face("happy", smile=0.8))
    r2 = score_triplet("x", "happy", "Make her smile", s, g, g, RGB, RGB, 0.363, "2.0", bg_gt=1.0, bg_chroma_gt=0.0)
    assert r2["status"] == "ok" and r2["fed"] == pytest.approx(100.0) and "bg_shift" in r2
    r12 = score_triplet("x", "happy", "Make her smile", S, G, G, RGB, RGB, 0.363, "1.2", bg_gt=1.0)
    assert "bg_shift" not in r12


def test_shipped_noise_model_matches_the_default_perception():
    """Fails when perception changes without the noise model being regenerated (its command is in the file)."""
    m = noise.load()
    assert m.dims == noise.DIMS and m.n >= 200 and m.meta["command"].startswith("PYTHONPATH=src")
    assert m.signature == signature_hash(PerceptionConfig().signature()), (
        f"perception changed since the noise model was measured: rerun `{m.meta['command']}`")
    assert np.all(m.std >= 0) and math.isfinite(float(m.std.sum()))


def test_manifest_actions_are_the_required_actions():
    s, g = _feats(face("neutral")), _feats(face("happy", smile=0.8))
    lazy_on_smile = _feats(face("neutral"))
    base = score_triplet("x", "happy", "Make her happy", s, g, lazy_on_smile, RGB, RGB, 0.363, "1.2", bg_gt=1.0)
    assert base["action_source"] == "ground_truth"  # the instruction names no action
    r = score_triplet("x", "happy", "Make her happy", s, g, g, RGB, RGB, 0.363, "1.2", bg_gt=1.0,
                      actions=["mouth_smile"])
    assert r["action_source"] == "manifest" and r["actions"] == ["mouth_smile"] and r["a_act"] == 1.0
    phrase = score_triplet("x", "happy", "Make her happy", s, g, g, RGB, RGB, 0.363, "1.2", bg_gt=1.0,
                           actions=["smile"])
    assert phrase["actions"] == ["mouth_smile"]
    with pytest.raises(ValueError, match="no known facial action"):
        score_triplet("x", "happy", "Make her happy", s, g, g, RGB, RGB, 0.363, "1.2", actions=["wiggle the ears"])


def test_scoring_refuses_unknown_manifest_actions_before_any_work(tmp_path):
    from PIL import Image

    from fedbench.data.manifest import ManifestError
    from fedbench.scoring.runner import score

    for name in ("s.png", "g.png"):
        Image.new("RGB", (64, 64)).save(tmp_path / name)
    rows = [{"id": "a", "source": "s.png", "ground_truth": "g.png", "target": "happy", "instruction": "smile",
             "actions": ["mouth_smile"]},
            {"id": "b", "source": "s.png", "ground_truth": "g.png", "target": "happy", "instruction": "smile",
             "actions": ["wiggle the ears"]}]
    (tmp_path / "m.jsonl").write_text("".join(__import__("json").dumps(r) + "\n" for r in rows))
    (tmp_path / "edits").mkdir()
    with pytest.raises(ManifestError, match=r"row 2 \(id 'b'\).*wiggle the ears"):
        score(tmp_path / "m.jsonl", tmp_path / "edits", None, cache_path=tmp_path / "c.sqlite")
