"""Each FED-Score version scores with the perception it was defined with (recogniser, identity precision),
unless the caller picks one."""

from __future__ import annotations

from fedbench.faces.perception import PerceptionConfig
from fedbench.metrics.spec import get_spec


def test_legacy_versions_use_the_members_mean():
    for v in ("1.0", "1.1", "1.2"):
        c = get_spec(v).perception()
        assert c.emotion_head == "mean"
        assert c.emotion_members == ["fer-cnn", "facex-cnn", "blendshape-prototype"]
        assert c.identity_precision == "fp32"  # the published SFace, as 1.x was measured


def test_2_0_uses_the_default_perception():
    c = get_spec("2.0").perception()
    assert c == PerceptionConfig()
    assert c.emotion_head == "fusion-v2" and "faceapi-cnn" in c.emotion_members and c.identity_precision == "int8"


def test_other_settings_survive_and_a_chosen_recogniser_is_kept():
    c = get_spec("1.2").perception(PerceptionConfig(runtime="reference", max_side=512))
    assert (c.runtime, c.max_side, c.emotion_head) == ("reference", 512, "mean")
    mine = PerceptionConfig(emotion_head="fusion-v1")
    assert get_spec("1.2").perception(mine) is mine
    assert get_spec("1.2").perception(get_spec("1.2").perception()).signature() == get_spec("1.2").perception().signature()
