"""The int8 SFace builder (faces/sface_int8.py) on small graphs, and the sha256-checked derived file."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from fedbench.faces import sface_int8
from fedbench.models.store import ArtifactError, derived_file


def _conv_bn_model(rng: np.random.Generator) -> onnx.ModelProto:
    """x -> Conv(3->4, 3x3) -> BatchNormalization -> PRelu -> Flatten -> Gemm(transB=1) -> y."""
    w = rng.normal(size=(4, 3, 3, 3)).astype(np.float32)
    b = rng.normal(size=4).astype(np.float32)
    gamma, beta = rng.uniform(0.5, 2, 4).astype(np.float32), rng.normal(size=4).astype(np.float32)
    mean, var = rng.normal(size=4).astype(np.float32), rng.uniform(0.5, 2, 4).astype(np.float32)
    fc = rng.normal(size=(5, 4 * 6 * 6)).astype(np.float32)
    inits = [numpy_helper.from_array(a, n) for a, n in ((w, "w"), (b, "b"), (gamma, "g"), (beta, "be"), (mean, "m"),
                                                          (var, "v"), (np.full(4, 0.25, np.float32), "slope"),
                                                          (fc, "fc"), (np.zeros(5, np.float32), "fcb"))]
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], "conv"),
             helper.make_node("BatchNormalization", ["c", "g", "be", "m", "v"], ["bn"], "bn", epsilon=1e-5),
             helper.make_node("PRelu", ["bn", "slope"], ["r"], "relu"),
             helper.make_node("Flatten", ["r"], ["f"], "flat"),
             helper.make_node("Gemm", ["f", "fc", "fcb"], ["y"], "fc", transB=1)]
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 5])], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    import openvino as ov

    compiled = ov.Core().compile_model(ov.Core().read_model(model.SerializeToString(), b""), "CPU",
                                       {"INFERENCE_PRECISION_HINT": "f32"})
    return np.asarray(compiled({0: x})[0])


def test_batchnorm_folds_into_the_conv_without_changing_the_output() -> None:
    rng = np.random.default_rng(0)
    model = _conv_bn_model(rng)
    folded = sface_int8.fold_batchnorm(model)
    assert [n.op_type for n in folded.graph.node] == ["Conv", "PRelu", "Flatten", "Gemm"]
    x = rng.normal(size=(1, 3, 8, 8)).astype(np.float32)
    np.testing.assert_allclose(_run(folded, x), _run(model, x), rtol=1e-4, atol=1e-4)


def test_qdq_graph_has_int8_weights_and_stays_close_to_fp32() -> None:
    rng = np.random.default_rng(1)
    folded = sface_int8.fold_batchnorm(_conv_bn_model(rng))
    x = rng.normal(size=(1, 3, 8, 8)).astype(np.float32)
    assert sface_int8.activation_inputs(folded) == ["x", "f"]
    stats = sface_int8.calibration_stats_of(folded, [x])
    q = sface_int8.quantise_qdq(folded, {k: v["max"] for k, v in stats.items()})
    weights = {t.name: numpy_helper.to_array(t) for t in q.graph.initializer}
    assert weights["w_bnfold_q"].dtype == np.int8 and weights["fc_q"].dtype == np.int8
    assert weights["w_bnfold_scale"].shape == (4,) and weights["fc_scale"].shape == (5,)  # one per output channel
    assert np.abs(weights["w_bnfold_q"]).max() == 127  # the largest weight of a channel maps to +-127
    ops = [n.op_type for n in q.graph.node]
    assert ops.count("QuantizeLinear") == 2 and ops.count("DequantizeLinear") == 4
    ref, out = _run(folded, x), _run(q, x)
    assert not np.array_equal(ref, out)  # it did quantise
    assert np.abs(out - ref).max() < 0.05 * np.abs(ref).max()


def test_a_tensor_without_a_calibrated_range_is_refused() -> None:
    folded = sface_int8.fold_batchnorm(_conv_bn_model(np.random.default_rng(2)))
    with pytest.raises(ValueError, match="no range for f"):
        sface_int8.quantise_qdq(folded, {"x": 1.0})


def test_the_shipped_table_covers_every_quantised_tensor_with_a_positive_range() -> None:
    table = sface_int8.ranges_table()
    assert table["ranges"] and all(v > 0 for v in table["ranges"].values())
    assert "benchmarks/quantise_sface.py" in table["command"]


def test_derived_file_checks_its_sha256(tmp_path: Path) -> None:
    src = tmp_path / "model.bin"
    src.write_bytes(b"source")
    good = hashlib.sha256(b"derived").hexdigest()
    with pytest.raises(ArtifactError, match="expected " + "0" * 64):
        derived_file(src, "d", ".bin", lambda: b"derived", sha256="0" * 64)
    assert not list(tmp_path.glob("d_*"))  # nothing written, no temporary left
    path = derived_file(src, "d", ".bin", lambda: b"derived", sha256=good)
    assert path.read_bytes() == b"derived"
    path.write_bytes(b"tampered")  # a damaged cached copy is rebuilt, not used
    assert derived_file(src, "d", ".bin", lambda: b"derived", sha256=good).read_bytes() == b"derived"
