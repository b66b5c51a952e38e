"""face-api's expression net as an emotion member, converted from its tfjs weights to ONNX.

The net (`@vladmandic/face-api` 1.7.15, MIT; the original face-api.js FaceExpressionNet) is a
FaceFeatureExtractor - four dense blocks of a stride-2 convolution then three depthwise-separable
convolutions with dense residual sums, 112 -> 56 -> 28 -> 14 -> 7 pixels, 32/64/128/256 channels -
then a 7x7 average pool, one fully connected layer onto seven classes and a softmax. Its input is
RGB 0..255 minus the mean (122.782, 117.001, 104.298), divided by 255.

The weights ship uint8-quantised (value = min + scale * q per tensor, tfjs' scheme). They are
dequantised here in numpy and written once as an ONNX graph (`store.derived_file`, named by the
weights' sha256), which OpenVINO runs at fp32: no TensorFlow and no Node at scoring time. A test
holds the result to outputs recorded from the original tfjs code (tests/tools/faceapi_reference).

The crop follows face-api: a landmark box padded by a fraction of its width and height, clipped
at the image border, padded to a square with black (centred) and resized to 112 with tfjs'
bilinear resize (no half-pixel centres).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fedbench.faces.emotion import FaceView, _reorder
from fedbench.faces.runtime import OpenVinoNetwork
from fedbench.models.store import artifact_path, derived_file

INPUT_SIZE = 112
MEAN_RGB = (122.782, 117.001, 104.298)
LABELS: tuple[str, ...] = ("neutral", "happy", "sad", "angry", "fear", "disgust", "surprise")
BLOCK_CHANNELS = (32, 64, 128, 256)
ONNX_OPSET = 13


class FaceApiWeightsError(ValueError):
    """The tfjs weight files do not hold the expected network."""


def load_tfjs_weights(manifest_path: Path, bin_path: Path) -> dict[str, np.ndarray]:
    """Every weight of a tfjs weights manifest, dequantised to float32, by name.

    tfjs writes the tensors back to back in manifest order; a uint8-quantised tensor takes one
    byte per value and is restored as `q * scale + min` (tfjs' io.decodeWeights).
    """
    groups = json.loads(Path(manifest_path).read_text(encoding="utf-8"))
    data = Path(bin_path).read_bytes()
    offset = 0
    weights: dict[str, np.ndarray] = {}
    for group in groups:
        for spec in group["weights"]:
            name, shape = spec["name"], tuple(spec["shape"])
            count = math.prod(shape)
            quant = spec.get("quantization")
            if quant is not None:
                if quant.get("dtype") != "uint8" or "min" not in quant:
                    raise FaceApiWeightsError(f"{manifest_path}: {name}: unsupported quantization {quant}")
                q = np.frombuffer(data, dtype=np.uint8, count=count, offset=offset)
                values = (q.astype(np.float64) * quant["scale"] + quant["min"]).astype(np.float32)
                offset += count
            elif spec["dtype"] == "float32":
                values = np.frombuffer(data, dtype="<f4", count=count, offset=offset).copy()
                offset += 4 * count
            else:
                raise FaceApiWeightsError(f"{manifest_path}: {name}: unsupported dtype {spec['dtype']}")
            weights[name] = values.reshape(shape)
    if offset != len(data):
        raise FaceApiWeightsError(f"{bin_path}: manifest covers {offset} bytes of {len(data)}")
    return weights


def _same_pads(size: int, kernel: int, stride: int) -> list[int]:
    """TF 'same' padding for one axis as (begin, end): the odd pixel goes at the end."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return [total // 2, total - total // 2]


def build_onnx(weights: dict[str, np.ndarray]) -> bytes:
    """The expression net as an ONNX model: input `x` (1, 112, 112, 3) RGB 0..255, output 7 softmax."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes: list[onnx.NodeProto] = []
    inits: list[onnx.TensorProto] = []

    def const(name: str, value: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(np.ascontiguousarray(value, dtype=np.float32), name))
        return name

    def w(name: str) -> np.ndarray:
        try:
            return weights[name]
        except KeyError:
            raise FaceApiWeightsError(f"face-api weights lack {name}") from None

    def conv(x: str, out: str, kernel: np.ndarray, bias: str | None, stride: int, size: int, group: int = 1) -> str:
        k = kernel.shape[-1]
        ph, pw = _same_pads(size, k, stride), _same_pads(size, k, stride)
        inputs = [x, const(out + "/W", kernel)] + ([bias] if bias else [])
        nodes.append(helper.make_node("Conv", inputs, [out], strides=[stride, stride], group=group,
                                      kernel_shape=[k, k], pads=[ph[0], pw[0], ph[1], pw[1]]))
        return out

    def separable(x: str, prefix: str, stride: int, size: int) -> str:
        dw = w(f"{prefix}/depthwise_filter")  # kh, kw, in, 1
        pw = w(f"{prefix}/pointwise_filter")  # 1, 1, in, out
        d = conv(x, prefix + "/dw", dw.transpose(2, 3, 0, 1), None, stride, size, group=dw.shape[2])
        bias = const(prefix + "/b", w(f"{prefix}/bias"))
        return conv(d, prefix + "/pw", pw.transpose(3, 2, 0, 1), bias, 1, -(-size // stride))

    def op(kind: str, inputs: list[str], out: str, **attrs) -> str:
        nodes.append(helper.make_node(kind, inputs, [out], **attrs))
        return out

    # normalise in-graph, so the ONNX file is the whole face-api forward pass
    mean = const("mean_rgb", np.array(MEAN_RGB).reshape(1, 1, 1, 3))
    inv = const("inv_255", np.array(1.0 / 255.0))
    x = op("Mul", [op("Sub", ["x", mean], "centred"), inv], "scaled")
    x = op("Transpose", [x], "nchw", perm=[0, 3, 1, 2])
    size = INPUT_SIZE
    for b in range(len(BLOCK_CHANNELS)):
        p = f"dense{b}"
        if b == 0:
            bias = const(p + "/conv0/b", w(p + "/conv0/bias"))
            out1 = conv(x, p + "/conv0/out", w(p + "/conv0/filters").transpose(3, 2, 0, 1), bias, 2, size)
        else:
            out1 = separable(x, p + "/conv0", 2, size)
        size = -(-size // 2)
        out1 = op("Relu", [out1], p + "/out1")
        out2 = separable(out1, p + "/conv1", 1, size)
        in3 = op("Relu", [op("Add", [out1, out2], p + "/s12")], p + "/in3")
        out3 = separable(in3, p + "/conv2", 1, size)
        s123 = op("Add", [out1, op("Add", [out2, out3], p + "/s23")], p + "/s123")
        in4 = op("Relu", [s123], p + "/in4")
        out4 = separable(in4, p + "/conv3", 1, size)
        s234 = op("Add", [out2, op("Add", [out3, out4], p + "/s34")], p + "/s234")
        x = op("Relu", [op("Add", [out1, s234], p + "/s1234")], p + "/out")
    x = op("AveragePool", [x], "pool", kernel_shape=[7, 7], strides=[2, 2])
    x = op("Flatten", [x], "features", axis=1)  # 1x1 spatial: NCHW and NHWC flatten agree
    logits = op("Add", [op("MatMul", [x, const("fc/W", w("fc/weights"))], "fc/mm"),
                        const("fc/b", w("fc/bias"))], "logits")
    op("Softmax", [logits], "probs", axis=1)
    graph = helper.make_graph(
        nodes, "faceapi_expression",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, INPUT_SIZE, INPUT_SIZE, 3])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, [1, len(LABELS)])],
        inits,
    )
    model = helper.make_model(graph, producer_name="fedbench", opset_imports=[helper.make_opsetid("", ONNX_OPSET)])
    onnx.checker.check_model(model)
    return model.SerializeToString()


def faceapi_onnx() -> Path:
    """The converted net (written once next to the verified weights, named by their sha256)."""
    manifest = artifact_path("faceapi-expression-manifest")
    weights = artifact_path("faceapi-expression")
    return derived_file(weights, f"face_expression_model_op{ONNX_OPSET}", ".onnx",
                        lambda: build_onnx(load_tfjs_weights(manifest, weights)))


def _bilinear_axis(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """tfjs resizeBilinear (alignCorners=false, halfPixelCenters=false) along one axis."""
    src = np.arange(n_out, dtype=np.float64) * (n_in / n_out)
    lo = np.minimum(np.floor(src).astype(np.intp), n_in - 1)
    hi = np.minimum(lo + 1, n_in - 1)
    return lo, hi, (src - lo)[:, None]


def _take(img: np.ndarray, index: np.ndarray, offset: int, axis: int) -> np.ndarray:
    """Slices `index` (positions in the zero-padded image) along `axis` of `img`, which starts at
    `offset` in it: positions in the padding read as 0, as they would from the padded array."""
    src = index - offset
    inside = (src >= 0) & (src < img.shape[axis])
    shape = list(img.shape)
    shape[axis] = len(index)
    out = np.zeros(shape, img.dtype)
    where = [slice(None)] * img.ndim
    where[axis] = inside
    out[tuple(where)] = np.take(img, src[inside], axis=axis)
    return out


def to_net_input(crop: np.ndarray) -> np.ndarray:
    """face-api's NetInput.toBatchTensor(112, centred): pad to a black square, bilinear to 112.

    The padding is never materialised and only the 2 x 112 rows and columns the resize reads are taken
    from the crop, as uint8; the float arithmetic is then the same, element for element, as resizing
    the padded image rows first (a padded 800 px face would cost a millisecond or more to build).
    Returns (1, 112, 112, 3) float32, RGB 0..255.
    """
    h, w = crop.shape[:2]
    side = max(h, w)
    diff = side - min(h, w)
    after = math.floor(diff * 0.5 + 0.5)  # JS Math.round; the remainder goes before
    top, left = (diff - after, 0) if h < w else (0, diff - after)
    if side == INPUT_SIZE and h == w:
        return crop[None].astype(np.float32)
    lo, hi, f = _bilinear_axis(side, INPUT_SIZE)
    f32 = f.astype(np.float32)
    fy, fx = f32[:, :, None], f32[None]
    r_lo, r_hi = _take(crop, lo, top, 0), _take(crop, hi, top, 0)  # uint8 rows the resize reads

    def rows_at(cols: np.ndarray) -> np.ndarray:  # the row-resized image at these padded columns
        return (_take(r_lo, cols, left, 1).astype(np.float32) * (1 - fy)
                + _take(r_hi, cols, left, 1).astype(np.float32) * fy)

    out = rows_at(lo) * (1 - fx) + rows_at(hi) * fx
    return out[None]


def face_crop(rgb: np.ndarray, box_px: np.ndarray, margin: float) -> np.ndarray:
    """face-api's face box: padded by `margin` times its width and height (half each side),
    then clipped at the image border (face-api's Box.pad and clipAtImageBorders)."""
    x0, y0, x1, y1 = (float(v) for v in box_px)
    bw, bh = x1 - x0, y1 - y0
    x0, x1 = x0 - margin * bw / 2, x1 + margin * bw / 2
    y0, y1 = y0 - margin * bh / 2, y1 + margin * bh / 2
    h, w = rgb.shape[:2]
    left, top = max(0, int(math.floor(x0))), max(0, int(math.floor(y0)))
    right, bottom = min(w, int(math.ceil(x1))), min(h, int(math.ceil(y1)))
    if right - left < 2 or bottom - top < 2:
        raise ValueError(f"face box {box_px.tolist()} leaves no pixels inside a {w}x{h} image")
    return rgb[top:bottom, left:right]


@dataclass
class FaceApiCNN:
    """face-api's expression net on the landmark box; labels neutral, happy, sad, angry, fearful,
    disgusted, surprised.

    `margin`: padding of the Face Landmarker box, a fraction of its width and height. face-api pads
    its 68-point box by 0.2; the Face Landmarker's box also spans the forehead, and on the dev faces
    in the wild 0.3-0.5 came out best (0.4 in the middle; benchmarks/member_accuracy.py). There
    is no second runtime: PerceptionConfig.runtime="reference" still runs this net on OpenVINO,
    whose outputs a test holds to the original tfjs code.
    """

    threads: int = 1
    margin: float = 0.4
    name: str = "faceapi-cnn"
    version: str = ""  # the weights' release and the crop margin, filled in below
    labels: tuple[str, ...] = LABELS

    def __post_init__(self) -> None:
        self.version = self.version or f"face-api-1.7.15+margin{self.margin:g}"
        self._net = OpenVinoNetwork(faceapi_onnx(), self.threads)

    def predict_crop(self, crop: np.ndarray) -> np.ndarray:
        """Probabilities in the net's own label order for an RGB crop of any size."""
        return self._net(to_net_input(crop)).ravel()

    def predict(self, view: FaceView) -> np.ndarray:
        return _reorder(self.predict_crop(face_crop(view.rgb, view.box_px, self.margin)), self.labels)
