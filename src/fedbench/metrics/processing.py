"""Processing that leaves a face's expression unchanged: JPEG re-encode, resize, a small crop or shift,
a mild gamma or colour change. Seeded, so the noise model (metrics/noise.py) and the processed meta
probes apply exactly the same kinds of change, and a test can repeat one.

The ranges are what real editors do to an image without meaning to (a diffusion editor re-encodes,
rescales and shifts by a few percent); they are the "nothing about the face changed" baseline.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import cv2
import numpy as np

OPS = ("jpeg", "resize", "crop", "shift", "gamma", "colour")
JPEG_QUALITY = (70, 95)
RESIZE = (0.5, 0.9)
CROP_SHIFT = (0.01, 0.04)  # share of the side
GAMMA = (0.85, 1.15)
COLOUR_GAIN = 0.05  # per channel gain in 1 +- this
SATURATION = (0.9, 1.1)


@dataclass(frozen=True)
class Step:
    op: str
    value: float  # quality, scale, share of the side, gamma, or saturation
    extra: tuple[float, ...] = ()  # crop/shift direction, colour gains

    def describe(self) -> str:
        return f"{self.op} {self.value:.3g}"


def jpeg(rgb: np.ndarray, quality: int) -> np.ndarray:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def resize(rgb: np.ndarray, scale: float) -> np.ndarray:
    h, w = rgb.shape[:2]
    return cv2.resize(rgb, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)


def crop(rgb: np.ndarray, share: float, fx: float, fy: float) -> np.ndarray:
    """Cut `share` of each side's length (split between the two ends by fx, fy in [0, 1]), resize back:
    a zoom of 1 / (1 - share) with the content moved by up to `share`."""
    h, w = rgb.shape[:2]
    cw, ch = round(w * share), round(h * share)
    x0, y0 = round(cw * fx), round(ch * fy)
    out = rgb[y0:h - (ch - y0), x0:w - (cw - x0)]
    return cv2.resize(out, (w, h), interpolation=cv2.INTER_LINEAR)


def shift(rgb: np.ndarray, share: float, angle: float) -> np.ndarray:
    """Translate by `share` of the long side in direction `angle` (radians); the border is reflected."""
    h, w = rgb.shape[:2]
    d = share * max(h, w)
    m = np.float32([[1, 0, d * np.cos(angle)], [0, 1, d * np.sin(angle)]])
    return cv2.warpAffine(rgb, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def gamma(rgb: np.ndarray, g: float) -> np.ndarray:
    lut = np.clip(255.0 * (np.arange(256) / 255.0) ** g + 0.5, 0, 255).astype(np.uint8)
    return cv2.LUT(rgb, lut)


def colour(rgb: np.ndarray, saturation: float, gains: tuple[float, float, float]) -> np.ndarray:
    x = rgb.astype(np.float32) * np.asarray(gains, np.float32)
    grey = x.mean(axis=2, keepdims=True)
    return np.clip(grey + saturation * (x - grey) + 0.5, 0, 255).astype(np.uint8)


def draw(rng: np.random.Generator, op: str) -> Step:
    if op == "jpeg":
        return Step(op, float(rng.integers(JPEG_QUALITY[0], JPEG_QUALITY[1] + 1)))
    if op == "resize":
        return Step(op, float(rng.uniform(*RESIZE)))
    if op == "crop":
        return Step(op, float(rng.uniform(*CROP_SHIFT)), (float(rng.uniform()), float(rng.uniform())))
    if op == "shift":
        return Step(op, float(rng.uniform(*CROP_SHIFT)), (float(rng.uniform(0, 2 * np.pi)),))
    if op == "gamma":
        return Step(op, float(rng.uniform(*GAMMA)))
    if op == "colour":
        return Step(op, float(rng.uniform(*SATURATION)), tuple(float(g) for g in rng.uniform(1 - COLOUR_GAIN,
                                                                                           1 + COLOUR_GAIN, 3)))
    raise ValueError(f"unknown processing {op!r}; known: {', '.join(OPS)}")


def apply(rgb: np.ndarray, step: Step) -> np.ndarray:
    if step.op == "jpeg":
        return jpeg(rgb, int(step.value))
    if step.op == "resize":
        return resize(rgb, step.value)
    if step.op == "crop":
        return crop(rgb, step.value, *step.extra)
    if step.op == "shift":
        return shift(rgb, step.value, *step.extra)
    if step.op == "gamma":
        return gamma(rgb, step.value)
    if step.op == "colour":
        return colour(rgb, step.value, step.extra)  # type: ignore[arg-type]
    raise ValueError(f"unknown processing {step.op!r}; known: {', '.join(OPS)}")


def random_chain(rng: np.random.Generator, min_ops: int = 2, max_ops: int = 3) -> list[Step]:
    """A random processing chain: geometry first (resize, crop or shift), then tone, then a JPEG re-encode
    last, as an editor's output pipeline would."""
    geometric = [draw(rng, str(rng.choice(["resize", "crop", "shift"])))]
    n_tone = int(rng.integers(max(0, min_ops - 2), max_ops - 1))  # 0..max_ops-2 tone steps
    tone = [draw(rng, str(op)) for op in rng.choice(["gamma", "colour"], size=n_tone, replace=False)]
    return [*geometric, *tone, draw(rng, "jpeg")]


def process(rgb: np.ndarray, steps: list[Step]) -> np.ndarray:
    for step in steps:
        rgb = apply(rgb, step)
    return rgb


def content_rng(data: bytes, k: int) -> np.random.Generator:
    """The generator of an image's k-th test-retest copy, seeded by the image's bytes: the same image
    always gets the same copies (so their perceptions are found in the feature cache), and two images
    never share a processing by construction."""
    return np.random.default_rng([k, int(hashlib.sha256(data).hexdigest()[:12], 16)])


def retest_copies(data: bytes, rgb: np.ndarray, k: int) -> list[bytes]:
    """k processed copies of a decoded image (`data` its file bytes, which seed them), each as PNG
    bytes, lossless and deterministic: what a perception service perceives and caches like any image."""
    out = []
    for i in range(k):
        img = process(rgb, random_chain(content_rng(data, i)))
        ok, buf = cv2.imencode(".png", cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 1])
        if not ok:
            raise ValueError(f"PNG encoding of processed copy {i} failed")
        out.append(buf.tobytes())
    return out
