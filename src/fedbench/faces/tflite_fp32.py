"""An fp32 copy of a weight-quantised .tflite model, for runtimes without TFLite's hybrid kernels.

facex ships "dynamic-range" quantised: int8 weights (stored in UINT8 tensors, two's complement)
that TFLite's hybrid kernels use with activations quantised on the fly, plus DEQUANTIZE ops feeding
the depthwise convolutions. Writing every weight out as int8 * scale in float32 gives the same
network at full precision; OpenVINO then runs it about three times faster than LiteRT runs the
original. (OpenVINO's own TFLite frontend reads those UINT8 weights as unsigned and produces one
class for every input, which is why the original file is not handed to it.)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fedbench.models.store import derived_file

_WEIGHT_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")


def _names(enum: type) -> dict[int, str]:
    return {v: k for k, v in vars(enum).items() if not k.startswith("_")}


def fp32_tflite(src: Path) -> Path:
    """Write (once, next to `src`) and return the fp32 copy of a weight-quantised model."""
    return derived_file(src, f"{src.stem}_fp32", ".tflite", lambda: _to_fp32(src))


def _to_fp32(src: Path) -> bytes:
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(bytearray(src.read_bytes()), 0)
    op_names = _names(schema.BuiltinOperator)
    types = _names(schema.TensorType)
    codes = [max(c.builtinCode, c.deprecatedBuiltinCode) for c in model.operatorCodes]

    def raw(tensor) -> np.ndarray:
        return np.frombuffer(bytes(bytearray(model.buffers[tensor.buffer].data)), dtype=np.uint8)

    def as_float(tensor) -> np.ndarray:
        q = tensor.quantization
        scale = np.asarray(q.scale, dtype=np.float32)
        shape = [1] * len(tensor.shape)
        if scale.size > 1:
            shape[q.quantizedDimension] = -1
        kind = types[tensor.type]
        if kind in ("INT8", "UINT8") and not np.any(q.zeroPoint):
            values = raw(tensor).view(np.int8).astype(np.float32)  # symmetric int8 weights
        elif kind == "UINT8":
            values = raw(tensor).astype(np.float32) - np.asarray(q.zeroPoint, np.float32).reshape(shape)
        else:
            raise ValueError(f"{src.name}: cannot dequantise a {kind} tensor")
        return (values.reshape(tensor.shape) * scale.reshape(shape)).astype(np.float32)

    def store(tensor, values: np.ndarray) -> None:
        buf = schema.BufferT()
        buf.data = np.frombuffer(values.tobytes(), dtype=np.uint8)
        model.buffers.append(buf)
        tensor.buffer = len(model.buffers) - 1
        tensor.type = schema.TensorType.FLOAT32
        tensor.quantization = None

    graph = model.subgraphs[0]
    kept = []
    for op in graph.operators:
        name = op_names[codes[op.opcodeIndex]]
        if name == "DEQUANTIZE":
            source = graph.tensors[op.inputs[0]]
            if model.buffers[source.buffer].data is not None:
                store(graph.tensors[op.outputs[0]], as_float(source))
                continue  # the op is gone; its output now holds the weights
        elif name in _WEIGHT_OPS:
            for i in op.inputs[1:]:
                t = graph.tensors[i] if i >= 0 else None
                if t is not None and types[t.type] in ("INT8", "UINT8") and model.buffers[t.buffer].data is not None:
                    store(t, as_float(t))
        kept.append(op)
    graph.operators = kept
    builder = flatbuffers.Builder(0)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())
