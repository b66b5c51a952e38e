"""Test-retest copies (metrics/processing.retest_copies): seeded by the image's own bytes, so the same
image always gets the same copies (their perceptions are cache hits) and another image other ones."""

import cv2
import numpy as np
from skimage import data as skdata

from fedbench.data.images import decode_image
from fedbench.metrics import processing


def _png(rgb: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok
    return buf.tobytes()


def test_copies_are_deterministic_distinct_and_decodable():
    face = skdata.astronaut()  # a real, public-domain portrait
    data = _png(face)
    a = processing.retest_copies(data, face, 3)
    assert a == processing.retest_copies(data, face, 3)  # byte-identical: cached like any image
    assert len(set(a)) == 3  # three different processings
    assert processing.retest_copies(data, face, 2) == a[:2]  # copy i does not depend on how many are made
    for blob in a:
        rgb = decode_image(blob, 4096).rgb
        assert rgb.ndim == 3 and 0.45 * face.shape[0] <= rgb.shape[0] <= face.shape[0]
        assert not (rgb.shape == face.shape and np.array_equal(rgb, face))  # processing changed the pixels


def test_copies_are_seeded_by_content():
    face = skdata.astronaut()
    other = face.copy()
    other[0, 0] ^= 1  # one bit of one pixel: other bytes, so another processing
    chain = lambda data: processing.random_chain(processing.content_rng(data, 0))  # noqa: E731
    assert chain(_png(face)) == chain(_png(face))
    assert chain(_png(face)) != chain(_png(other))
