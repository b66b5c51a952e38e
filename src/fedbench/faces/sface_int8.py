"""SFace at int8: a post-training quantised copy of the fp32 identity network, built in numpy.

The fp32 graph (`identity.sface_float_model`) is rewritten in two exact steps and one rounding step:

1. every BatchNormalization that follows a Conv is folded into that Conv's weights and bias
   (float64 arithmetic, cast to float32 once, so every machine writes the same bytes);
2. every Conv / Gemm weight becomes int8, symmetric, one scale per output channel (max |w| / 127);
3. every Conv / Gemm input (the activations) goes through QuantizeLinear -> DequantizeLinear with a
   symmetric int8 scale from a shipped calibration table (`data/sface_int8_ranges.json`: one |x|
   range per tensor, measured on face crops by `benchmarks/quantise_sface.py`).

That is the standard ONNX QDQ form, which OpenVINO runs with int8 kernels (about 3x faster than fp32
on one thread). Everything here is deterministic numpy on the verified fp32 weights and the shipped
table, so the file's sha256 is pinned in the model store (`SFACE_INT8`) and checked after the build.
No calibration runs at scoring time.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np

RANGES_FILE = "sface_int8_ranges.json"
QUANTISED_OPS = ("Conv", "Gemm")
INT8_MAX = 127.0


@lru_cache(maxsize=1)
def ranges_table() -> dict:
    """The shipped calibration table: {"ranges": {tensor: max |x|}, ...provenance}."""
    return json.loads(resources.files("fedbench.faces").joinpath("data", RANGES_FILE).read_text(encoding="utf-8"))


def fold_batchnorm(model: "onnx.ModelProto") -> "onnx.ModelProto":  # noqa: F821 - onnx imported lazily
    """Fold each Conv -> BatchNormalization pair (the Conv's output read by nothing else) into one Conv.
    `model` is left as it is (its nodes are copied before they are rewired)."""
    import onnx
    from onnx import helper, numpy_helper

    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    graph = copy.graph
    inits = {t.name: t for t in graph.initializer}
    readers: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            readers[name] = readers.get(name, 0) + 1
    producer = {out: node for node in graph.node for out in node.output}
    replaced: dict[str, onnx.TensorProto] = {}
    drop: set[int] = set()
    rename: dict[str, str] = {}  # conv output -> the BN output it now writes
    for node in graph.node:
        if node.op_type != "BatchNormalization":
            continue
        conv = producer.get(node.input[0])
        if conv is None or conv.op_type != "Conv" or readers.get(node.input[0], 0) != 1:
            continue
        if conv.input[1] not in inits or not all(i in inits for i in node.input[1:5]):
            continue
        eps = next((a.f for a in node.attribute if a.name == "epsilon"), 1e-5)
        gamma, beta, mean, var = (numpy_helper.to_array(inits[i]).astype(np.float64) for i in node.input[1:5])
        w = numpy_helper.to_array(inits[conv.input[1]]).astype(np.float64)
        b = (numpy_helper.to_array(inits[conv.input[2]]).astype(np.float64) if len(conv.input) > 2
             else np.zeros(w.shape[0]))
        s = gamma / np.sqrt(var + eps)
        w_name, b_name = conv.input[1] + "_bnfold", conv.output[0] + "_bnfold_bias"
        replaced[w_name] = numpy_helper.from_array((w * s[:, None, None, None]).astype(np.float32), w_name)
        replaced[b_name] = numpy_helper.from_array(((b - mean) * s + beta).astype(np.float32), b_name)
        conv.input[:] = [conv.input[0], w_name, b_name]
        rename[conv.output[0]] = node.output[0]
        drop.add(id(node))
    for node in graph.node:
        if node.op_type == "Conv" and node.output[0] in rename:
            node.output[0] = rename[node.output[0]]
    nodes = [n for n in graph.node if id(n) not in drop]
    used = {i for n in nodes for i in n.input}
    new_inits = [t for t in graph.initializer if t.name in used] + [t for k, t in replaced.items() if k in used]
    out = helper.make_model(helper.make_graph(nodes, graph.name, list(graph.input), list(graph.output),
                                              initializer=new_inits), opset_imports=model.opset_import)
    out.ir_version = model.ir_version
    return out


def activation_inputs(model: "onnx.ModelProto") -> list[str]:  # noqa: F821
    """The tensors that get an int8 scale: the data input of every Conv and Gemm, in graph order."""
    inits = {t.name for t in model.graph.initializer}
    names: list[str] = []
    for node in model.graph.node:
        if node.op_type in QUANTISED_OPS and node.input[0] not in inits and node.input[0] not in names:
            names.append(node.input[0])
    return names


def _weight_axis(node: "onnx.NodeProto") -> int:  # noqa: F821
    """Output-channel axis of a Conv / Gemm weight (Gemm with transB=1 stores [N, K])."""
    if node.op_type == "Conv":
        return 0
    trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
    return 0 if trans_b else 1


def quantise_qdq(model: "onnx.ModelProto", ranges: dict[str, float]) -> "onnx.ModelProto":  # noqa: F821
    """The QDQ int8 graph of a BN-folded fp32 model: per-channel weights, per-tensor activations."""
    import onnx
    from onnx import helper, numpy_helper

    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    missing = [n for n in activation_inputs(model) if n not in ranges]
    if missing:
        raise ValueError(f"the calibration table has no range for {', '.join(missing)}")
    new_inits: list[onnx.TensorProto] = []
    nodes: list[onnx.NodeProto] = []
    done: dict[str, str] = {}
    for node in graph.node:
        if node.op_type not in QUANTISED_OPS:
            nodes.append(node)
            continue
        act = node.input[0]
        if act not in done:  # one Q/DQ pair per tensor, shared by all its readers
            scale = np.array(np.float64(ranges[act]) / INT8_MAX, dtype=np.float32)
            s_name, z_name = f"{act}_act_scale", f"{act}_act_zero"
            new_inits += [numpy_helper.from_array(scale, s_name),
                          numpy_helper.from_array(np.array(0, dtype=np.int8), z_name)]
            nodes += [helper.make_node("QuantizeLinear", [act, s_name, z_name], [f"{act}_q"], f"{act}_quantize"),
                      helper.make_node("DequantizeLinear", [f"{act}_q", s_name, z_name], [f"{act}_dq"],
                                       f"{act}_dequantize")]
            done[act] = f"{act}_dq"
        w_name = node.input[1]
        w = numpy_helper.to_array(inits[w_name]).astype(np.float64)
        axis = _weight_axis(node)
        other = tuple(i for i in range(w.ndim) if i != axis)
        absmax = np.max(np.abs(w), axis=other)
        scale = np.where(absmax > 0, absmax / INT8_MAX, 1.0).astype(np.float32)
        shape = [1] * w.ndim
        shape[axis] = -1
        q = np.clip(np.rint(w / scale.astype(np.float64).reshape(shape)), -INT8_MAX, INT8_MAX).astype(np.int8)
        new_inits += [numpy_helper.from_array(q, f"{w_name}_q"),
                      numpy_helper.from_array(scale, f"{w_name}_scale"),
                      numpy_helper.from_array(np.zeros(scale.shape, np.int8), f"{w_name}_zero")]
        nodes.append(helper.make_node("DequantizeLinear", [f"{w_name}_q", f"{w_name}_scale", f"{w_name}_zero"],
                                      [f"{w_name}_dq"], f"{w_name}_dequantize", axis=axis))
        new = onnx.NodeProto()
        new.CopyFrom(node)
        new.input[0], new.input[1] = done[act], f"{w_name}_dq"
        nodes.append(new)
    used = {i for n in nodes for i in n.input}
    kept = [t for t in graph.initializer if t.name in used] + [t for t in new_inits if t.name in used]
    out = helper.make_model(helper.make_graph(nodes, graph.name, list(graph.input), list(graph.output),
                                              initializer=kept), opset_imports=[helper.make_opsetid("", 13)])
    out.ir_version = model.ir_version
    onnx.checker.check_model(out)
    return out


def build_sface_int8(fp32: Path, ranges: dict[str, float] | None = None) -> bytes:
    """The int8 SFace file's bytes, from the fp32 file and the shipped table (or `ranges`)."""
    import onnx

    folded = fold_batchnorm(onnx.load(str(fp32)))
    return quantise_qdq(folded, ranges if ranges is not None else ranges_table()["ranges"]).SerializeToString()


def calibration_stats(fp32: Path, batches: Iterable[np.ndarray], percentiles: Iterable[float] = ()
                      ) -> dict[str, dict[str, float]]:
    """`calibration_stats_of` the BN-folded graph of the fp32 file (what `build_sface_int8` quantises)."""
    import onnx

    return calibration_stats_of(fold_batchnorm(onnx.load(str(fp32))), batches, percentiles)


def calibration_stats_of(folded: "onnx.ModelProto", batches: Iterable[np.ndarray],  # noqa: F821
                         percentiles: Iterable[float] = ()) -> dict[str, dict[str, float]]:
    """Per activation tensor of `folded`: the max |x|, the mean of each sample's max |x|, and the
    requested percentiles of |x|, over `batches` (for SFace: NCHW float32, RGB 0..255). Runs the fp32
    graph on OpenVINO with every quantised tensor as an extra output (development time only: the
    table it feeds is shipped)."""
    import openvino as ov
    from onnx import ModelProto, helper

    model = ModelProto()
    model.CopyFrom(folded)
    names = activation_inputs(model)
    model.graph.output.extend([helper.make_empty_tensor_value_info(n) for n in names])
    core = ov.Core()
    compiled = core.compile_model(core.read_model(model.SerializeToString(), b""), "CPU",
                                  {"INFERENCE_PRECISION_HINT": "f32"})
    request = compiled.create_infer_request()
    outputs = {n: next(i for i, o in enumerate(compiled.outputs) if n in o.get_names()) for n in names}
    sample_max: dict[str, list[float]] = {n: [] for n in names}
    values: dict[str, list[np.ndarray]] = {n: [] for n in names}
    percentiles = list(percentiles)
    for x in batches:
        request.infer({0: np.ascontiguousarray(x, dtype=np.float32)})
        for n in names:
            a = np.abs(np.asarray(request.get_output_tensor(outputs[n]).data, dtype=np.float32)).ravel()
            sample_max[n].append(float(a.max()))
            if percentiles:
                values[n].append(a[:: max(1, a.size // 4096)])  # a fixed stride keeps memory small
    stats: dict[str, dict[str, float]] = {}
    for n in names:
        s = {"max": float(np.max(sample_max[n])), "mean_max": float(np.mean(sample_max[n]))}
        if percentiles:
            allv = np.concatenate(values[n])
            s.update({f"p{p:g}": float(np.percentile(allv, p)) for p in percentiles})
        stats[n] = s
    return stats
