import io

import numpy as np
import pytest
from PIL import Image

from fedbench.data.images import ImageReadError, decode_image, grey_view


def jpeg(size=(96, 64), **kw) -> bytes:
    rgb = np.random.default_rng(0).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", quality=90, **kw)
    return buf.getvalue()


def test_complete_jpeg_with_appended_data_decodes():
    data = jpeg() + b"\xff\xda" + bytes(5000)  # a "motion photo": extra bytes after the image
    assert decode_image(data).rgb.shape == (64, 96, 3)


def test_truncated_jpeg_is_refused_even_with_an_exif_thumbnail():
    exif = Image.Exif()
    exif[0x010F] = "camera"
    data = jpeg(exif=exif.tobytes())
    with pytest.raises(ImageReadError, match="truncated"):
        decode_image(data[: len(data) // 2])


@pytest.mark.parametrize("data, message", [(b"", "empty"), (b"not an image", "not a readable image")])
def test_garbage_is_refused_with_a_reason(data, message):
    with pytest.raises(ImageReadError, match=message):
        decode_image(data)


def test_long_side_is_capped_and_grey_view_sized():
    big = jpeg(size=(2400, 1200))
    rgb = decode_image(big, max_side=1024).rgb
    assert max(rgb.shape[:2]) == 1024
    assert grey_view(rgb, 512).shape == (256, 512)
    assert grey_view(rgb, size=(100, 50)).shape == (50, 100)


def _png(rgba: np.ndarray, **kw) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgba).save(buf, "PNG", **kw)
    return buf.getvalue()


def test_alpha_is_composited_over_white():
    rgba = np.zeros((40, 40, 4), np.uint8)
    rgba[..., 0] = 200  # red hidden under transparency must not show
    rgba[:20, :, 3] = 0  # top half fully transparent
    rgba[20:, :, 3] = 255  # bottom half opaque red
    rgb = decode_image(_png(rgba)).rgb
    assert (rgb[:20] == 255).all()
    assert (rgb[20:] == (200, 0, 0)).all()
    half = rgba.copy()
    half[..., 3] = 128
    mid = decode_image(_png(half)).rgb
    assert np.allclose(mid[..., 0], 200 * 128 / 255 + 255 * 127 / 255, atol=1.5)


def test_gif_is_an_unsupported_format():
    buf = io.BytesIO()
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(buf, "GIF")
    with pytest.raises(ImageReadError, match="unsupported format GIF"):
        decode_image(buf.getvalue())


def test_reasons_quote_no_object_address():
    messages = set()
    for _ in range(2):
        with pytest.raises(ImageReadError) as info:
            decode_image(b"\x89PNG not really")
        messages.add(str(info.value))
    (message,) = messages
    assert "0x" not in message and "object at" not in message
