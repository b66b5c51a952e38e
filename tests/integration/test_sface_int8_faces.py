"""The int8 SFace on real faces: built bit for bit to its pinned sha256, close to fp32, same decisions."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from fedbench.data.images import decode_image
from fedbench.faces.geometry import aligned_crop
from fedbench.faces.identity import SFace, sface_float_model, sface_int8_model
from fedbench.faces.landmarks import FaceLandmarker
from fedbench.faces.sface_int8 import build_sface_int8
from fedbench.models.store import SFACE_INT8_SHA256, artifact_path, sha256_of

C0 = 0.363


def test_the_int8_file_is_rebuilt_bit_for_bit_and_verified():
    fp32 = sface_float_model(artifact_path("sface"))
    data = build_sface_int8(fp32)
    assert hashlib.sha256(data).hexdigest() == SFACE_INT8_SHA256
    assert build_sface_int8(fp32) == data  # deterministic within a process as well
    assert sha256_of(sface_int8_model(artifact_path("sface"))) == SFACE_INT8_SHA256


@pytest.fixture(scope="module")
def crops(pixelsmile):
    landmarker = FaceLandmarker(max_faces=1)
    paths = sorted((pixelsmile / "blend").glob("*.jpg")) + sorted((pixelsmile / "slider").glob("*/00.avif"))
    out = []
    for path in paths:
        rgb = decode_image(path.read_bytes()).rgb
        (obs,) = landmarker.detect(rgb)
        out.append(aligned_crop(rgb, obs.landmarks[:, :2].astype(np.float64) * [rgb.shape[1], rgb.shape[0]], 112))
    landmarker.close()
    assert len(out) >= 12
    return np.stack(out)


def test_int8_embeddings_stay_close_to_fp32_on_real_faces(crops):
    e32 = np.stack([SFace(precision="fp32").embed_crop(c) for c in crops])
    int8 = SFace(precision="int8")
    e8 = np.stack([int8.embed_crop(c) for c in crops])
    assert not np.array_equal(e8, e32)  # it is the quantised network
    assert np.min(np.sum(e8 * e32, axis=1)) > 0.97  # each face's embedding barely turns
    c32, c8 = e32 @ e32.T, e8 @ e8.T
    iu = np.triu_indices(len(crops), 1)
    assert np.abs(c32[iu] - c8[iu]).max() < 0.1
    assert np.array_equal(c32[iu] >= C0, c8[iu] >= C0)  # no same / different-person decision flips here
