"""The face-api member: the ONNX conversion run on OpenVINO reproduces the original tfjs net, and the
member reads real faces through the perception path.

tests/data/faceapi_parity.npz holds real face crops and the probabilities the original code
(@vladmandic/face-api 1.7.15 on tfjs 4.22.0, CPU) gave for them, recorded once with
tests/tools/record_faceapi_parity.py (needs Node; dev-only). The weights come from the npm
registry through the model store (`fedbench models pull faceapi-expression`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fedbench.data.images import decode_image
from fedbench.faces.faceapi import LABELS, FaceApiCNN, faceapi_onnx
from fedbench.faces.perception import PerceptionConfig, Perceiver
from fedbench.labels import EXPRESSIONS

pytestmark = pytest.mark.integration

PARITY = Path(__file__).resolve().parents[1] / "data" / "faceapi_parity.npz"


@pytest.fixture(scope="module")
def member() -> FaceApiCNN:
    return FaceApiCNN()


@pytest.fixture(scope="module")
def recorded() -> dict[str, np.ndarray]:
    with np.load(PARITY, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def test_openvino_conversion_matches_the_original_tfjs_outputs(member, recorded):
    crops = [recorded[f"crop_{i}"] for i in range(len(recorded["probs"]))]
    # the fixture is worth something: real crops of several shapes, tfjs confident in varied classes
    assert len(crops) >= 5 and len({c.shape for c in crops}) == len(crops)
    assert len(set(np.argmax(recorded["probs"], axis=1))) >= 4
    ours = np.stack([member.predict_crop(c) for c in crops])
    diff = np.abs(ours - recorded["probs"])
    assert diff.max() < 1e-3, {str(n): float(d) for n, d in zip(recorded["names"], diff.max(axis=1))}


def test_labels_follow_face_api_order(recorded):
    # face-api's FACE_EXPRESSION_LABELS, as the tfjs code reported them when the fixture was recorded
    short = {"fearful": "fear", "disgusted": "disgust", "surprised": "surprise"}
    assert tuple(short.get(str(l), str(l)) for l in recorded["labels"]) == LABELS
    assert set(LABELS) == set(EXPRESSIONS)


def test_onnx_file_is_derived_once_and_named_by_the_weights(member):
    path = faceapi_onnx()
    assert path.name.startswith("face_expression_model_op13_") and path.suffix == ".onnx"
    mtime = path.stat().st_mtime_ns
    assert faceapi_onnx() == path and path.stat().st_mtime_ns == mtime


def test_member_in_the_perception_path_reads_clear_portraits(pixelsmile):
    perceiver = Perceiver(PerceptionConfig(emotion_members=["faceapi-cnn"], emotion_head="mean"))
    try:
        for image, label in (("blend/happy.jpg", "happy"), ("blend/surprised.jpg", "surprise"),
                             ("slider/sad/27.avif", "sad")):
            feats = perceiver.perceive(decode_image((pixelsmile / image).read_bytes()).rgb)
            assert feats.member_names == ["faceapi-cnn"]
            probs = feats.faces[0].members[0]
            assert probs.sum() == pytest.approx(1.0, abs=1e-5)
            assert EXPRESSIONS[int(np.argmax(probs))] == label, (image, probs.round(3).tolist())
    finally:
        perceiver.close()
