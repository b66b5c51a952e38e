"""OpenVINO's compiled-network cache: same outputs bit for bit, an entry per network, and an off switch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from fedbench.faces import runtime
from fedbench.models import store


def _tiny_onnx(path: Path) -> Path:
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.normal(size=(8, 3, 3, 3)).astype(np.float32), "w")
    graph = helper.make_graph([helper.make_node("Conv", ["x", "w"], ["y"])], "tiny",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 14, 14])], initializer=[w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_cached_compilation_gives_the_same_bits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FEDBENCH_CACHE_DIR", str(tmp_path / "cache"))
    model = _tiny_onnx(tmp_path / "tiny.onnx")
    x = np.random.default_rng(1).normal(size=(1, 3, 16, 16)).astype(np.float32)
    monkeypatch.setenv(runtime.OPENVINO_CACHE_ENV, "0")
    assert runtime.openvino_cache_dir() is None
    plain = runtime.OpenVinoNetwork(model)(x)
    monkeypatch.delenv(runtime.OPENVINO_CACHE_ENV)
    cache = runtime.openvino_cache_dir()
    assert cache == tmp_path / "cache" / "models" / "openvino-cache"
    first = runtime.OpenVinoNetwork(model)(x)  # compiles and writes the entry
    assert len(list(cache.iterdir())) == 1
    second = runtime.OpenVinoNetwork(model)(x)  # loads the entry
    assert len(list(cache.iterdir())) == 1
    assert plain.tobytes() == first.tobytes() == second.tobytes()


def test_sha256_is_remembered_only_for_an_unchanged_file(tmp_path: Path) -> None:
    f = tmp_path / "weights.bin"
    f.write_bytes(b"one")
    first = store.sha256_of(f)
    f.write_bytes(b"two, longer")  # another size (and mtime): hashed afresh
    assert store.sha256_of(f) != first
    import hashlib

    assert store.sha256_of(f) == hashlib.sha256(b"two, longer").hexdigest()
