"""Robust image decoding: one function turns any file a user may hand us into RGB uint8, or a reason.

OpenCV's decoder is the fast path (JPEG, PNG, WebP; EXIF orientation applied, 16-bit and CMYK
converted). Pillow decodes what OpenCV cannot (AVIF, odd modes). Truncated files are refused instead
of being scored from half an image.

Transparency: an image with an alpha channel (RGBA / LA PNG, WebP with alpha, a palette with a
transparent colour) is composited over WHITE (255, 255, 255) before anything looks at it, as a
browser or an image viewer on a white page shows it; the RGB values hidden under transparent pixels
are never used. GIF (palette, animation) is refused as an unsupported format rather than scored from
its first frame. Reasons never quote an object's address, so the same file gives the same text.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image, ImageOps

MIN_SIDE = 32  # below this there is no face to analyse
MAX_PIXELS = 120_000_000  # refuse decompression bombs before decoding
ALPHA_BACKGROUND = (255, 255, 255)  # transparent pixels are shown over white (documented above)
UNSUPPORTED_FORMATS = {"GIF": "GIF is a palette / animation format; save the image as PNG, JPEG, WebP or AVIF"}
_ADDRESS = re.compile(r"<[\w.]+ object at 0x[0-9a-fA-F]+>")


class ImageReadError(ValueError):
    """The bytes do not decode to a usable image; the message says why."""


@dataclass(frozen=True)
class DecodedImage:
    rgb: np.ndarray  # H x W x 3 uint8, at most `max_side` on the long side


def _plain(exc: BaseException) -> str:
    """An exception as text without object addresses (Pillow names its BytesIO): reasons stay reproducible."""
    return f"{type(exc).__name__}: {_ADDRESS.sub('the data', str(exc))}"


def _header(data: bytes) -> tuple[int, int, str, bool]:
    """(width, height, format, has alpha) from the header, without decoding the pixels."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            alpha = im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info
            return im.size[0], im.size[1], (im.format or "").upper(), alpha
    except Exception as exc:  # Pillow raises many types for garbage input
        raise ImageReadError(f"not a readable image ({_plain(exc)})") from None


def _looks_truncated(data: bytes, fmt: str) -> bool:
    tail = data[-4096:]
    if fmt == "JPEG":
        # The end-of-image marker must follow the image's scan data; it need not end the file
        # (phones append a video to "motion photos"). Walk the header segments by their lengths,
        # so an EXIF thumbnail's own markers are skipped, to the first start-of-scan.
        scan = _first_scan_offset(data)
        return scan < 0 or data.find(b"\xff\xd9", scan) < 0
    if fmt == "PNG":
        return b"IEND" not in tail
    if fmt == "WEBP":
        return len(data) < 12 or int.from_bytes(data[4:8], "little") + 8 > len(data)
    return False


def _first_scan_offset(data: bytes) -> int:
    """Offset of the main image's first SOS segment in a JPEG, or -1."""
    pos = 2  # after SOI
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return -1
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0xDA:
            return pos
        if 0xD0 <= marker <= 0xD9 or marker == 0x01:  # markers without a length
            pos += 2
            continue
        pos += 2 + int.from_bytes(data[pos + 2 : pos + 4], "big")
    return -1


def _decode_with_pillow(data: bytes, alpha: bool = False) -> np.ndarray:
    try:
        with Image.open(io.BytesIO(data)) as im:
            im = ImageOps.exif_transpose(im)
            if alpha:  # composite over the stated background: hidden RGB under transparency is never used
                rgba = im.convert("RGBA")
                background = Image.new("RGBA", rgba.size, (*ALPHA_BACKGROUND, 255))
                return np.asarray(Image.alpha_composite(background, rgba).convert("RGB"))
            if im.mode in ("I;16", "I;16B", "I;16L", "I"):
                arr = np.asarray(im, dtype=np.float64)
                scale = 257.0 if arr.max() > 255 else 1.0
                grey = np.clip(arr / scale, 0, 255).astype(np.uint8)
                return np.repeat(grey[..., None], 3, axis=2)
            return np.asarray(im.convert("RGB"))
    except Exception as exc:
        raise ImageReadError(f"could not decode ({_plain(exc)})") from None


def decode_image(data: bytes, max_side: int = 1024) -> DecodedImage:
    """Decode bytes to RGB uint8 with the long side capped at `max_side` (area interpolation)."""
    if not data:
        raise ImageReadError("empty file")
    width, height, fmt, alpha = _header(data)
    if fmt in UNSUPPORTED_FORMATS:
        raise ImageReadError(f"unsupported format {fmt}: {UNSUPPORTED_FORMATS[fmt]}")
    if width * height > MAX_PIXELS:
        raise ImageReadError(f"{width}x{height} px is above the {MAX_PIXELS} pixel limit")
    if min(width, height) < MIN_SIDE:
        raise ImageReadError(f"{width}x{height} px is below the {MIN_SIDE} px minimum side")
    if _looks_truncated(data, fmt):
        raise ImageReadError(f"truncated {fmt} file")
    bgr = None
    if fmt in ("JPEG", "PNG", "WEBP") and not alpha:
        flags = cv2.IMREAD_COLOR
        # Let libjpeg scale down in the DCT when the image is far larger than needed.
        long_side = max(width, height)
        if fmt == "JPEG":
            for factor, flag in ((8, cv2.IMREAD_REDUCED_COLOR_8), (4, cv2.IMREAD_REDUCED_COLOR_4),
                                 (2, cv2.IMREAD_REDUCED_COLOR_2)):
                if long_side // factor >= max_side:
                    flags = flag
                    break
        bgr = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    if bgr is not None:
        if bgr.ndim == 2:
            bgr = cv2.cvtColor(bgr, cv2.COLOR_GRAY2BGR)
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    else:
        rgb = _decode_with_pillow(data, alpha)
    if rgb.dtype != np.uint8:
        rgb = (rgb / 257).astype(np.uint8)
    h, w = rgb.shape[:2]
    scale = max_side / max(h, w)
    if scale < 1.0:
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
    return DecodedImage(rgb=np.ascontiguousarray(rgb))


def grey_view(rgb: np.ndarray, long_side: int = 512, size: tuple[int, int] | None = None) -> np.ndarray:
    """Grey copy at `long_side` px on the long side (or an exact (w, h)), as the background SSIM uses."""
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    h, w = grey.shape
    if size is None:
        scale = long_side / max(h, w)
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
    if (w, h) == size:
        return grey
    interp = cv2.INTER_AREA if size[0] < w else cv2.INTER_LINEAR
    return cv2.resize(grey, size, interpolation=interp)
