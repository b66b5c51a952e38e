"""face-api conversion pieces that need no weights: tfjs weight decoding, face-api's input handling."""

import json

import numpy as np
import pytest

from fedbench.faces.faceapi import FaceApiWeightsError, _same_pads, face_crop, load_tfjs_weights, to_net_input


def _write(tmp_path, specs, payload: bytes):
    (tmp_path / "m.json").write_text(json.dumps([{"paths": ["w.bin"], "weights": specs}]))
    (tmp_path / "w.bin").write_bytes(payload)
    return tmp_path / "m.json", tmp_path / "w.bin"


def test_tfjs_weights_are_dequantised_in_manifest_order(tmp_path):
    specs = [
        {"name": "a", "shape": [2, 2], "dtype": "float32", "quantization": {"dtype": "uint8", "scale": 0.5, "min": -1.0}},
        {"name": "b", "shape": [3], "dtype": "float32"},
    ]
    bias = np.array([0.25, -7.0, 3.5], dtype="<f4")
    manifest, weights = _write(tmp_path, specs, bytes([0, 1, 2, 255]) + bias.tobytes())
    out = load_tfjs_weights(manifest, weights)
    np.testing.assert_array_equal(out["a"], np.array([[-1.0, -0.5], [0.0, 126.5]], dtype=np.float32))
    np.testing.assert_array_equal(out["b"], bias)


def test_tfjs_weights_that_do_not_fill_the_file_are_refused(tmp_path):
    specs = [{"name": "b", "shape": [2], "dtype": "float32"}]
    manifest, weights = _write(tmp_path, specs, np.zeros(3, "<f4").tobytes())
    with pytest.raises(FaceApiWeightsError, match="covers 8 bytes of 12"):
        load_tfjs_weights(manifest, weights)
    specs = [{"name": "q", "shape": [2], "dtype": "float32", "quantization": {"dtype": "float16"}}]
    manifest, weights = _write(tmp_path, specs, b"\0" * 4)
    with pytest.raises(FaceApiWeightsError, match="q: unsupported quantization"):
        load_tfjs_weights(manifest, weights)


def test_same_padding_puts_the_odd_pixel_at_the_end():
    assert _same_pads(112, 3, 2) == [0, 1]  # TF 'same': 56 outputs need one extra row, after
    assert _same_pads(7, 3, 1) == [1, 1]
    assert _same_pads(7, 3, 2) == [1, 1]


def test_net_input_pads_to_a_centred_black_square_like_face_api():
    # 112 wide, 109 tall: 3 rows to add; face-api appends round(1.5) = 2 and prepends 1
    crop = np.full((109, 112, 3), 200, dtype=np.uint8)
    x = to_net_input(crop)
    assert x.shape == (1, 112, 112, 3) and x.dtype == np.float32
    assert (x[0, :1] == 0).all() and (x[0, -2:] == 0).all() and (x[0, 1:-2] == 200).all()
    tall = np.full((112, 110, 3), 50, dtype=np.uint8)
    y = to_net_input(tall)[0]
    assert (y[:, :1] == 0).all() and (y[:, -1:] == 0).all() and (y[:, 1:-1] == 50).all()


def test_net_input_resizes_without_half_pixel_centres():
    # tfjs resizeBilinear(alignCorners=false, halfPixelCenters=false): output i samples input i * in/out
    ramp = np.tile(np.arange(224, dtype=np.float64)[None, :, None], (224, 1, 3)).astype(np.uint8)
    x = to_net_input(ramp)[0, 0, :, 0]
    np.testing.assert_allclose(x, np.minimum(np.arange(112) * 2, 223))
    up = to_net_input(np.tile(np.array([0, 100], dtype=np.uint8)[None, :, None], (2, 1, 3)))[0, 0, :, 0]
    # two input pixels onto 112: the first 56 outputs blend 0 -> 100, the rest clamp to the last pixel
    np.testing.assert_allclose(up[:56], np.arange(56) / 56 * 100, atol=1e-4)
    assert (up[56:] == 100).all()


def test_face_crop_pads_by_the_margin_and_clips_at_the_border():
    img = np.arange(100 * 80 * 3, dtype=np.int64).reshape(100, 80, 3).astype(np.uint8)
    box = np.array([20.0, 30.0, 60.0, 70.0])  # 40 x 40
    assert face_crop(img, box, 0.0).shape == (40, 40, 3)
    assert face_crop(img, box, 0.5).shape == (60, 60, 3)  # 10 px more each side
    edge = face_crop(img, np.array([-10.0, 80.0, 30.0, 120.0]), 0.2)  # falls off the left and bottom
    assert edge.shape == (24, 34, 3)
    np.testing.assert_array_equal(edge, img[76:100, 0:34])
    with pytest.raises(ValueError, match="no pixels inside a 80x100 image"):
        face_crop(img, np.array([90.0, 10.0, 120.0, 40.0]), 0.0)
