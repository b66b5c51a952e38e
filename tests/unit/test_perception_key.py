"""The feature-cache key: it moves with every library version and model file that shapes the numbers,
and the padding a face needed survives the cache."""

from __future__ import annotations

import dataclasses
import io
import json
import typing

import numpy as np
import pytest

from fedbench.faces import perception
from fedbench.faces.landmarks import FaceObservation
from fedbench.faces.perception import (
    PERCEPTION_LIBRARIES, FaceFeatures, ImageFeatures, PerceptionConfig, unpad_observations,
)
from fedbench.models import store

MODEL_FREE_MEMBERS = {"blendshape-prototype"}  # emotion members that load no model file


@pytest.mark.parametrize("dist", ["mediapipe", "openvino", "opencv-contrib-python", "ai-edge-litert"])
def test_key_changes_when_a_library_version_changes(dist: str, monkeypatch: pytest.MonkeyPatch) -> None:
    config = PerceptionConfig()
    before = config.signature()
    assert config.signature() == before  # stable while nothing changes
    real = perception.dist_version
    monkeypatch.setattr(perception, "dist_version", lambda d: "999.0-test" if d == dist else real(d))
    after = config.signature()
    assert after != before
    assert json.loads(after)["libraries"][dist] == "999.0-test"


def test_key_holds_every_library_and_model_file_the_config_uses() -> None:
    parts = json.loads(PerceptionConfig().signature())
    assert set(parts["libraries"]) == set(PERCEPTION_LIBRARIES)
    assert parts["libraries"]["mediapipe"]  # installed: a real version string, not None
    assert parts["artifacts"] == {**{n: store.ARTIFACTS[n].sha256
                                     for n in ("face-landmarker", "sface", "fer-cnn", "facex-cnn", "faceapi-expression",
                                               "faceapi-expression-manifest")},
                                  "sface-int8": store.SFACE_INT8_SHA256}
    only_proto = json.loads(PerceptionConfig(emotion_members=["blendshape-prototype"], emotion_head="mean").signature())
    assert set(only_proto["artifacts"]) == {"face-landmarker", "sface", "sface-int8"}


def test_key_separates_int8_and_fp32_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    """The int8 SFace perceives other numbers than fp32: never one cache entry for both, and a
    re-pinned int8 file is perceived afresh. The reference runtime runs neither."""
    int8, fp32 = PerceptionConfig(), PerceptionConfig(identity_precision="fp32")
    assert int8.identity_precision == "int8" and int8.uses_sface_int8 and not fp32.uses_sface_int8
    assert int8.signature() != fp32.signature()
    assert "sface-int8" not in json.loads(fp32.signature())["artifacts"]
    assert not PerceptionConfig(runtime="reference").uses_sface_int8
    before = int8.signature()
    monkeypatch.setattr(store, "SFACE_INT8_SHA256", "0" * 64)
    assert int8.signature() != before


@pytest.mark.parametrize("artifact", ["face-landmarker", "sface", "fer-cnn", "facex-cnn", "faceapi-expression",
                                      "faceapi-expression-manifest"])
def test_key_changes_when_a_model_file_changes(artifact: str, monkeypatch: pytest.MonkeyPatch) -> None:
    config = PerceptionConfig()
    before = config.signature()
    changed = dataclasses.replace(store.ARTIFACTS[artifact], sha256="0" * 64)
    monkeypatch.setitem(store.ARTIFACTS, artifact, changed)
    assert config.signature() != before


def test_every_emotion_member_is_keyed_by_its_model_file() -> None:
    """A new member must register its file in the model store (or be listed here as model-free),
    or a changed model would be served from the cache of the old one."""
    members_type = PerceptionConfig.model_fields["emotion_members"].annotation
    (literal,) = typing.get_args(members_type)
    for member in typing.get_args(literal):
        files = perception.MEMBER_ARTIFACTS.get(member, ())
        assert all(f in store.ARTIFACTS for f in files) and (files or member in MODEL_FREE_MEMBERS), member


def test_key_changes_when_the_fusion_head_changes(monkeypatch: pytest.MonkeyPatch) -> None:
    from fedbench.faces import fusion

    head = PerceptionConfig().emotion_head
    before = PerceptionConfig().signature()
    assert json.loads(before)["emotion_head_sha256"] == fusion.load_head(head).sha256
    other = dataclasses.replace(fusion.load_head(head), sha256="0" * 64)
    monkeypatch.setattr(fusion, "load_head", lambda version: other)
    assert PerceptionConfig().signature() != before
    assert "emotion_head_sha256" not in json.loads(PerceptionConfig(emotion_head="mean").signature())


def _features(padding: int) -> ImageFeatures:
    rng = np.random.default_rng(0)
    face = FaceFeatures(landmarks=rng.random((478, 3), dtype=np.float32), blendshapes=rng.random(52, dtype=np.float32),
                        box=np.array([0.1, 0.1, 0.9, 0.9], np.float32), emotion=np.full(7, 1 / 7),
                        members=np.full((3, 7), 1 / 7), embedding=np.ones(128, np.float32) / np.sqrt(128),
                        quality=12.5)
    return ImageFeatures(status="ok", size=(200, 300), faces=[face], member_names=["a", "b", "c"], padding=padding)


def test_padding_survives_the_cache_round_trip() -> None:
    again = ImageFeatures.from_bytes(_features(75).to_bytes())
    assert again.padding == 75
    assert np.array_equal(again.faces[0].landmarks, _features(75).faces[0].landmarks)


def test_a_blob_written_before_padding_existed_reads_as_unpadded() -> None:
    blob = _features(0).to_bytes()
    with np.load(io.BytesIO(blob)) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(bytes(arrays["meta"]).decode())
    del meta["padding"]
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    assert ImageFeatures.from_bytes(buf.getvalue()).padding == 0


def test_landmarks_found_in_a_padded_frame_map_back_to_the_original() -> None:
    w, h, pad = 200, 100, 50
    original_px = np.array([[0.0, 0.0], [200.0, 100.0], [100.0, 50.0], [-10.0, 120.0]])
    padded_norm = (original_px + pad) / [w + 2 * pad, h + 2 * pad]
    z = np.array([[0.01], [0.02], [-0.03], [0.0]])
    obs = FaceObservation(landmarks=np.hstack([padded_norm, z]).astype(np.float32),
                          blendshapes=np.zeros(52, np.float32))
    (back,) = unpad_observations([obs], pad, w, h)
    assert np.allclose(back.landmarks[:, :2] * [w, h], original_px, atol=1e-3)
    assert np.allclose(back.landmarks[:, 2], z[:, 0] * (w + 2 * pad) / w, atol=1e-6)
    assert np.array_equal(back.blendshapes, obs.blendshapes)
