"""The perception backbones on real faces: runtimes agree, identity separates people, labels map right."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from fedbench.data.images import decode_image
from fedbench.faces.emotion import FaceView, FacexCNN
from fedbench.faces.geometry import bounding_box
from fedbench.faces.identity import SFace
from fedbench.faces.perception import ImageFeatures, Perceiver
from fedbench.faces.runtime import LiteRtNetwork
from fedbench.faces.tflite_fp32 import fp32_tflite
from fedbench.labels import EXPRESSIONS
from fedbench.models.store import artifact_path

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def perceiver() -> Perceiver:
    return Perceiver()


def _rgb(path):
    return decode_image(path.read_bytes()).rgb


def test_sface_openvino_matches_the_reference_runtime(pixelsmile, perceiver):
    reference, fp32 = SFace(runtime="reference"), SFace(precision="fp32")
    for name in ("happy", "surprised", "angry"):
        rgb = _rgb(pixelsmile / "blend" / f"{name}.jpg")
        face = perceiver.perceive(rgb).faces[0]
        px = face.landmarks[:, :2].astype(np.float64) * [rgb.shape[1], rgb.shape[0]]
        assert float(np.dot(fp32.embed(rgb, px), reference.embed(rgb, px))) > 0.9999


def test_identity_separates_people_and_keeps_one_person(pixelsmile, perceiver):
    blend = [perceiver.perceive(_rgb(pixelsmile / "blend" / f"{n}.jpg")).faces[0] for n in ("happy", "sad", "fear")]
    others = [perceiver.perceive(_rgb(pixelsmile / "slider" / n / "00.avif")).faces[0] for n in ("happy", "sad", "angry")]
    c0 = perceiver.identity_threshold
    for a in blend[1:]:
        assert float(np.dot(blend[0].embedding, a.embedding)) > c0
    for o in others:
        assert float(np.dot(blend[0].embedding, o.embedding)) < c0


def test_emotion_members_map_labels_onto_the_seven_classes(pixelsmile, perceiver):
    # Clear cases where both CNNs agree with the label: a wrong label order would break this.
    for image, label in (("blend/happy.jpg", "happy"), ("blend/surprised.jpg", "surprise")):
        feats = perceiver.perceive(_rgb(pixelsmile / image))
        face = feats.faces[0]
        assert EXPRESSIONS[int(np.argmax(face.emotion))] == label
        for name, probs in zip(feats.member_names, face.members):
            assert probs.sum() == pytest.approx(1.0, abs=1e-5)
            if name != "blendshape-prototype":
                assert EXPRESSIONS[int(np.argmax(probs))] == label, name


def test_features_survive_the_cache_round_trip(pixelsmile, perceiver):
    feats = perceiver.perceive(_rgb(pixelsmile / "blend" / "sad.jpg"))
    again = ImageFeatures.from_bytes(feats.to_bytes())
    assert again.status == feats.status == "ok"
    assert again.size == feats.size
    for a, b in zip(feats.faces, again.faces):
        assert np.array_equal(a.landmarks, b.landmarks) and np.array_equal(a.embedding, b.embedding)
        assert np.array_equal(a.emotion, b.emotion) and a.quality == b.quality


def test_facex_fp32_on_openvino_matches_litert(pixelsmile, perceiver):
    """The fp32 copy runs the same network: identical on both runtimes, and within the activation
    quantisation of LiteRT's hybrid kernels of the shipped file."""
    fast, reference = FacexCNN(runtime="openvino"), FacexCNN(runtime="reference")
    fp32_on_litert = LiteRtNetwork(fp32_tflite(artifact_path("facex-cnn")))
    x = np.random.default_rng(0).random((1, 200, 200, 3)).astype(np.float32)
    assert np.abs(fast._net(x) - fp32_on_litert(x)).max() < 1e-3
    for name in ("happy", "sad", "surprised", "fear", "angry", "disgust"):
        rgb = _rgb(pixelsmile / "blend" / f"{name}.jpg")
        face = perceiver.landmarker.detect(rgb)[0]
        h, w = rgb.shape[:2]
        view = FaceView(rgb, cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY),
                        bounding_box(face.landmarks).astype(np.float64) * [w, h, w, h], face.blendshapes)
        p_fast, p_ref = fast.predict(view), reference.predict(view)
        assert np.abs(p_fast - p_ref).max() < 0.1, (name, p_fast.round(3), p_ref.round(3))
