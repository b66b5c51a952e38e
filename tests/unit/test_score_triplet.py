"""score_triplet on constructed features: statuses, nulls and the zero rule for failed edits."""

import numpy as np
import pytest

from fedbench.faces.perception import FaceFeatures, ImageFeatures
from fedbench.labels import EXPRESSIONS
from fedbench.metrics.fedscore import COMPONENTS, ImageOutcome, fed_score, score_triplet

RNG = np.random.default_rng(0)
LANDMARKS = np.column_stack([RNG.uniform(0.35, 0.65, 478), RNG.uniform(0.3, 0.7, 478), np.zeros(478)]).astype(np.float32)
IDENTITY = np.eye(128, dtype=np.float32)[0]


def face(expr: str, p: float = 0.8, smile: float = 0.0) -> FaceFeatures:
    probs = np.full(7, (1 - p) / 6)
    probs[EXPRESSIONS.index(expr)] = p
    bs = np.zeros(52, np.float32)
    bs[44] = bs[45] = smile  # mouthSmileLeft / Right
    return FaceFeatures(landmarks=LANDMARKS, blendshapes=bs, box=np.array([0.35, 0.3, 0.65, 0.7], np.float32),
                        emotion=probs, members=probs[None], embedding=IDENTITY, quality=100.0)


def feats(*faces: FaceFeatures) -> ImageOutcome:
    status = "no_face" if not faces else ("ok" if len(faces) == 1 else "multi_face")
    return ImageOutcome(ImageFeatures(status=status, size=(64, 64), faces=list(faces), member_names=["m"]))


RGB = np.full((64, 64, 3), 128, np.uint8)
S, G = feats(face("neutral", smile=0.0)), feats(face("happy", smile=0.8))


def run(edit: ImageOutcome, source=S, gt=G):
    return score_triplet("x", "happy", "Make her smile", source, gt, edit, RGB, RGB, 0.363)


def test_fed_is_null_without_reg_and_zero_for_a_lazy_edit():
    assert fed_score(0.9, 0.9, None) is None
    assert fed_score(0.9, 0.9, 0.0) == 0.0
    assert fed_score(1.0, 1.0, 1.0) == pytest.approx(100.0)


def test_oracle_row():
    r = run(G)
    assert r["status"] == "ok" and r["edit_status"] == "ok"
    assert r["reg"] == 1.0 and r["gain"] == 1.0 and r["alignment"] == 1.0 and r["id_score"] == 1.0
    assert r["fed"] == pytest.approx(100.0)
    assert r["top_emotion_edit"] == "happy" and r["actions"] == ["mouth_smile"]


def test_lazy_row():
    r = run(S)
    assert r["status"] == "ok" and r["gain"] == 0.0 and r["reg"] == 0.0 and r["fed"] == 0.0


@pytest.mark.parametrize("edit, status", [
    (ImageOutcome(None, "missing"), "missing_edit"),
    (ImageOutcome(None, "x.png: truncated PNG file"), "unreadable_edit"),
    (feats(), "no_face_edit"),
])
def test_failed_edits_score_zero_with_a_reason(edit, status):
    r = run(edit)
    assert r["status"] == r["edit_status"] == status and r["reason"]
    assert all(r[c] == 0.0 for c in COMPONENTS)


@pytest.mark.parametrize("source, gt, status", [
    (ImageOutcome(None, "bad bytes"), G, "unreadable_source"),
    (feats(), G, "no_face_source"),
    (S, ImageOutcome(None, "bad bytes"), "unreadable_ground_truth"),
    (S, feats(), "no_face_ground_truth"),
])
def test_dataset_errors_leave_components_null(source, gt, status):
    r = run(G, source=source, gt=gt)
    assert r["status"] == status and r["reason"]
    assert all(r[c] is None for c in COMPONENTS)


def test_degenerate_ground_truth_keeps_reg_and_fed_null():
    r = run(S, gt=S)
    assert r["status"] == "degenerate_gt" and r["reg"] is None and r["fed"] is None and r["gain"] is None
    missing = run(ImageOutcome(None, "missing"), gt=S)
    assert missing["status"] == "degenerate_gt" and missing["edit_status"] == "missing_edit"
    assert missing["fed"] is None and missing["alignment"] == 0.0


def test_multi_face_edit_uses_the_face_over_the_source():
    stranger = face("happy", smile=0.8)
    stranger.box = np.array([0.0, 0.0, 0.2, 0.2], np.float32)
    stranger.embedding = np.eye(128, dtype=np.float32)[1]
    r = run(feats(stranger, face("happy", smile=0.8)))
    assert r["faces_edit"] == 2 and r["id_score"] == 1.0


def test_unknown_version_is_refused():
    with pytest.raises(ValueError, match="supported"):
        score_triplet("x", "happy", "smile", S, G, G, RGB, RGB, 0.363, version="9")
