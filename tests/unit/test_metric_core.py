"""The metric core: versions are spec objects, the registry drives the summaries, and the
reference-free mode (the build engine's verify stage) measures every component against S."""

import dataclasses

import numpy as np
import pytest

from fedbench.metrics import components, core
from fedbench.metrics.aggregate import DIMENSIONS, summarise
from fedbench.metrics.spec import SPECS, SUPPORTED_VERSIONS, get_spec
from test_score_triplet import face  # the constructed faces of the row tests


def test_specs_are_frozen_and_name_their_relative_components():
    assert set(SUPPORTED_VERSIONS) >= {"1.0", "1.1", "1.2"}
    assert not get_spec("1.0").relative_to_gt
    assert get_spec("1.1").relative("a_emo") and not get_spec("1.1").relative("bg")
    assert get_spec("1.2").uses_gt_background
    with pytest.raises(dataclasses.FrozenInstanceError):
        get_spec("1.2").reg_width = 1.0  # type: ignore[misc]
    with pytest.raises(ValueError, match="supported"):
        get_spec("0.9")
    assert all(get_spec(s) is s for s in SPECS.values())


def test_summary_dimensions_and_intervals_follow_the_registry():
    assert DIMENSIONS == components.NAMES
    row = {"id": "a", "target": "happy", "status": "ok", "edit_status": "ok", "gain": 1.0,
           **{c: 0.5 for c in components.NAMES}}
    s = summarise([row], n_bootstrap=10)
    assert set(s["overall"]) == set(components.NAMES)
    assert all((s["overall"][c]["ci95"] is not None) == (c in components.HEADLINE) for c in components.NAMES)
    with pytest.raises(KeyError, match="known"):
        components.component("nope")


def test_reference_free_assessment_is_absolute():
    """Without G (verify): A_emo is p_t(E) and A_act uses only named actions with the fixed step."""
    spec = get_spec("1.2")
    s, cand = face("neutral", smile=0.0), face("happy", p=0.6, smile=0.02)
    ref = core.reference(spec, "happy", "Make her smile", s, None)
    out = core.assess(spec, ref, s, cand, None, core.PairMeasures(bg_edit=0.9), 0.363)
    assert out["a_emo"] == pytest.approx(0.6)
    assert out["a_act"] == pytest.approx(0.02 / spec.action_step)  # relative to G it would be 1
    assert out["bg"] == pytest.approx(0.9) and out["reg"] is None and out["fed"] is None
    with_g = core.assess(spec, core.reference(spec, "happy", "Make her smile", s, cand), s, cand, cand,
                         core.PairMeasures(bg_edit=0.9, bg_gt=0.9), 0.363)
    assert with_g["a_emo"] == with_g["a_act"] == with_g["bg"] == 1.0 and with_g["reg"] == 1.0


def test_degenerate_reference_has_no_reg():
    spec = get_spec("1.2")
    s = face("neutral")
    ref = core.reference(spec, "happy", "smile", s, s)
    assert ref.change.degenerate
    out = core.assess(spec, ref, s, face("happy", smile=0.8), s, core.PairMeasures(), 0.363)
    assert out["reg"] is None and out["fed"] is None and out["degenerate"]
    assert np.isfinite(out["alignment"])
