"""Identity embeddings: SFace (default, offline) or any ArcFace-style ONNX model the user points at."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Literal

import numpy as np

from fedbench.faces.geometry import aligned_crop
from fedbench.faces.runtime import OpenVinoNetwork, Runtime
from fedbench.models.store import SFACE_INT8_SHA256, artifact_path, derived_file, sha256_of

Precision = Literal["int8", "fp32"]


def _dequantize_block(q: np.ndarray, scale: np.ndarray, zero: np.ndarray, axis: int, block: int) -> np.ndarray:
    """ONNX DequantizeLinear with block_size: each scale covers `block` consecutive entries on `axis`."""
    n = q.shape[axis]
    scale_full = np.repeat(scale, block, axis=axis).take(range(n), axis=axis)
    zero_full = np.repeat(zero, block, axis=axis).take(range(n), axis=axis)
    return ((q.astype(np.int32) - zero_full.astype(np.int32)) * scale_full).astype(np.float32)


def sface_float_model(src: Path) -> Path:
    """Write (once) an fp32 copy of the block-quantised SFace graph that standard runtimes load.

    The published file feeds its convolutions from dangling graph inputs and dequantises weights on
    every call. Baking the dequantised weights (exactly the values DequantizeLinear yields) in as
    initialisers gives the same network that OpenCV runs, loadable by OpenVINO and onnxruntime.
    """
    return derived_file(src, "sface_fp32", ".onnx", lambda: _bake_sface(src))


def _bake_sface(src: Path) -> bytes:
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(src))
    graph = model.graph
    inits = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    produced: dict[str, np.ndarray] = {}
    weight_nodes = []
    for node in graph.node:
        if node.op_type == "DequantizeLinear" and all(i in inits for i in node.input):
            attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
            q, s, z = (inits[i] for i in node.input)
            produced[node.output[0]] = _dequantize_block(q, s, z, attrs.get("axis", 1), attrs.get("block_size", 1))
            weight_nodes.append(node)
    for node in graph.node:
        if node.op_type == "Reshape" and node.input[0] in produced and node.input[1] in inits:
            produced[node.output[0]] = produced[node.input[0]].reshape(inits[node.input[1]].astype(np.int64))
            weight_nodes.append(node)
    dropped = {id(n) for n in weight_nodes}
    nodes = [n for n in graph.node if id(n) not in dropped]
    used = {i for n in nodes for i in n.input}
    new_inits = [t for t in graph.initializer if t.name in used]
    new_inits += [numpy_helper.from_array(v, k) for k, v in produced.items() if k in used]
    # Keep only real inputs ("data"): the dangling weight inputs are what trips standard runtimes.
    inputs = [i for i in graph.input if i.name not in inits and i.name in used and i.name not in produced]
    new_graph = helper.make_graph(nodes, graph.name, inputs, list(graph.output), initializer=new_inits)
    out = helper.make_model(new_graph, opset_imports=model.opset_import)
    out.ir_version = model.ir_version
    onnx.checker.check_model(out)
    return out.SerializeToString()


def sface_int8_model(src: Path) -> Path:
    """Write (once) the int8 SFace (faces/sface_int8.py) built from the fp32 copy of `src` and the
    shipped calibration table; its sha256 is checked against the pinned SFACE_INT8_SHA256."""
    from fedbench.faces.sface_int8 import RANGES_FILE, build_sface_int8

    table = resources.files("fedbench.faces").joinpath("data", RANGES_FILE).read_bytes()
    stem = f"sface_int8_table{hashlib.sha256(table).hexdigest()[:8]}"  # a new table never reuses an old file
    # Named by the published file's digest (already known from its verification), so that a worker's
    # start-up neither hashes nor needs the 38 MB fp32 copy once the int8 file exists.
    return derived_file(src, stem, ".onnx", lambda: build_sface_int8(sface_float_model(src)),
                        sha256=SFACE_INT8_SHA256)


@dataclass
class SFace:
    """SFace (OpenCV Zoo), 128-d, on the 112x112 five-point aligned crop.

    precision (OpenVINO runtime only): "int8" runs the post-training quantised copy
    (faces/sface_int8.py, about 3x faster; identity cosines within about 0.01 of fp32 on average,
    benchmarks/quantise_sface.py), "fp32" the exact dequantised published weights.
    """

    runtime: Runtime = "openvino"
    threads: int = 1
    precision: Precision = "int8"
    name: str = "sface"
    version: str = "sface_2021dec_int8bq"
    threshold: float = 0.363  # OpenCV Zoo's cosine threshold for SFace

    def __post_init__(self) -> None:
        src = artifact_path("sface")
        if self.runtime == "openvino":
            model = sface_int8_model(src) if self.precision == "int8" else sface_float_model(src)
            self._net = OpenVinoNetwork(model, self.threads)
            self._cv = None
        else:
            import cv2

            self._cv = cv2.FaceRecognizerSF.create(str(src), "")

    def embed(self, rgb: np.ndarray, landmarks_px: np.ndarray) -> np.ndarray:
        return self.embed_crop(aligned_crop(rgb, landmarks_px, 112))

    def embed_crop(self, crop: np.ndarray) -> np.ndarray:
        """The unit embedding of an already aligned 112x112 RGB crop."""
        if self._cv is not None:
            feat = self._cv.feature(np.ascontiguousarray(crop[:, :, ::-1])).ravel()
        else:
            # OpenCV feeds SFace RGB (swapRB from BGR), raw 0..255, NCHW; the graph normalises.
            blob = crop.astype(np.float32).transpose(2, 0, 1)[None]
            feat = self._net(blob).ravel()
        norm = float(np.linalg.norm(feat))
        return (feat / norm).astype(np.float32) if norm > 0 else feat.astype(np.float32)


@dataclass
class OnnxArcFace:
    """A user-supplied ArcFace-style ONNX recogniser (112x112 RGB, (x-127.5)/127.5), e.g. insightface R50."""

    path: Path
    threshold: float = 0.28
    threads: int = 1
    name: str = "arcface-onnx"
    version: str = ""

    def __post_init__(self) -> None:
        self.version = f"arcface-{sha256_of(Path(self.path))[:12]}"
        self._net = OpenVinoNetwork(Path(self.path), self.threads)

    def embed(self, rgb: np.ndarray, landmarks_px: np.ndarray) -> np.ndarray:
        crop = aligned_crop(rgb, landmarks_px, 112).astype(np.float32)
        blob = ((crop - 127.5) / 127.5).transpose(2, 0, 1)[None]
        feat = self._net(blob).ravel()
        return (feat / max(float(np.linalg.norm(feat)), 1e-12)).astype(np.float32)
