"""Both fusion heads on real faces: the chosen head is the one perception applies, keyed apart in the cache."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from fedbench.faces import fusion
from fedbench.faces.perception import PerceptionConfig
from fedbench.faces.service import PerceptionService

pytestmark = pytest.mark.integration


def test_fusion_v2_is_applied_to_real_faces_and_cached_apart_from_v1(faces_in_the_wild: Path, tmp_path: Path):
    rows = list(csv.DictReader(open(faces_in_the_wild / "labels.csv", encoding="utf-8")))
    picked = [next(r for r in rows if r["label"] == c) for c in ("disgust", "neutral")]
    cache = tmp_path / "features.sqlite"
    v1_head, v2_head = fusion.load_head("fusion-v1"), fusion.load_head("fusion-v2")
    with PerceptionService(PerceptionConfig(emotion_head="fusion-v2"), cache) as v2, \
            PerceptionService(PerceptionConfig(emotion_head="fusion-v1"), cache) as v1:
        for r in picked:
            data = (faces_in_the_wild / r["image"]).read_bytes()
            assert v1.key(data) != v2.key(data)  # a head's output never comes from the other's cache rows
            f = v2.perceive(data).features
            assert f is not None and f.faces, r["image"]
            face = f.faces[0]
            px = face.landmarks[:, :2].astype(np.float64) * np.array(f.size, dtype=np.float64)
            members = dict(zip(f.member_names, face.members))
            expected = v2_head.predict(members, face.blendshapes, px)
            assert np.allclose(face.emotion, expected, atol=1e-4), r["image"]
            assert abs(float(np.sum(face.emotion)) - 1.0) < 1e-4
            assert not np.allclose(v1_head.predict(members, face.blendshapes, px), expected, atol=1e-3)
        assert v2.perceived == len(picked) and v1.perceived == 0
