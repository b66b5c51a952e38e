"""FED-Score 2.0's background on a real portrait with the real landmarker: a global shift or zoom of
a few percent that leaves the background intact is forgiven (and reported as the registration), while
a replaced, blurred or recoloured background still drops."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from fedbench.data.images import decode_image
from fedbench.faces.masks import face_mask
from fedbench.faces.perception import Perceiver
from fedbench.metrics import core, processing
from fedbench.metrics.fedscore import background_measure
from fedbench.metrics.spec import get_spec

pytestmark = pytest.mark.integration
V2 = get_spec("2.0")


@pytest.fixture(scope="module")
def portrait(pixelsmile):
    rgb = decode_image((pixelsmile / "blend" / "happy.jpg").read_bytes(), 1024).rgb
    p = Perceiver()
    try:
        face = p.perceive(rgb).faces[0]
    finally:
        p.close()
    return rgb, face


def _outside_face(rgb, face, changed):
    """`changed` outside the (dilated) face, the original inside: only the background changes."""
    h, w = rgb.shape[:2]
    inside = face_mask(face.landmarks, (w, h), dilation=0.15)[..., None]
    return np.where(inside, rgb, changed)


def _bg(rgb, face, edit, register=True):
    ssim, shift, chroma = background_measure(rgb, edit, face, face, register)
    return core.background_value(V2, ssim, chroma), shift


@pytest.mark.parametrize("name, make", [
    ("shift 3 %", lambda rgb: processing.shift(rgb, 0.03, 0.6)),
    ("zoom 3 %", lambda rgb: processing.crop(rgb, 0.03, 0.5, 0.5)),
])
def test_global_shift_or_zoom_is_registered_and_forgiven(portrait, name, make):
    rgb, face = portrait
    edit = make(rgb)
    plain, _ = background_measure(rgb, edit, face, face, register=False)[:2]
    bg, shift = _bg(rgb, face, edit)
    assert plain < 0.75, (name, plain)  # pixel-aligned SSIM calls it a changed background
    assert bg >= 0.97, (name, bg)
    assert 0.01 < shift <= 0.05, (name, shift)  # and the registration is reported


@pytest.mark.parametrize("name, make, most", [
    ("replaced", lambda rgb: np.ascontiguousarray(rgb[::-1, ::-1]), 0.6),
    ("blurred", lambda rgb: cv2.GaussianBlur(rgb, (0, 0), 5), 0.9),
    ("recoloured", lambda rgb: processing.colour(rgb, 0.6, (1.25, 1.0, 0.75)), 0.7),
])
def test_a_changed_background_still_drops(portrait, name, make, most):
    rgb, face = portrait
    edit = _outside_face(rgb, face, make(rgb))
    bg, _ = _bg(rgb, face, edit)
    assert bg < most, (name, bg)
    # ... also when the changed picture is shifted as well: registration does not excuse it
    bg_shifted, _ = _bg(rgb, face, processing.shift(edit, 0.02, 2.0))
    assert bg_shifted < most, (name, bg_shifted)


def test_processing_alone_keeps_the_background(portrait):
    rgb, face = portrait
    rng = np.random.default_rng(7)
    for _ in range(3):
        chain = processing.random_chain(rng)
        bg, _ = _bg(rgb, face, processing.process(rgb, chain))
        assert bg >= 0.9, [s.describe() for s in chain]


def test_a_source_prepared_once_gives_bit_identical_measures(portrait):
    """The worker reuses S's side (grey, mask, ECC view, SSIM statistics, Lab) for S,E and S,G:
    every number must equal the one-off measure's exactly, also when a smaller edit changes the
    compared size, and a SourceBackground built for another face is refused."""
    from fedbench.metrics.bgsource import SourceBackground

    rgb, face = portrait
    prepared = SourceBackground(rgb, face.landmarks)
    edits = [processing.shift(rgb, 0.03, 0.6), processing.crop(rgb, 0.03, 0.5, 0.5),
             cv2.GaussianBlur(rgb, (9, 9), 0), cv2.resize(rgb, (300, 300), interpolation=cv2.INTER_AREA)]
    for edit in edits:
        for register in (True, False):
            once = background_measure(rgb, edit, face, face, register)
            assert background_measure(rgb, edit, face, face, register, prepared) == once
    assert len(prepared._grey) == 2  # 512 px and the small copy's 300 px: one grey per compared size
    moved = face.landmarks.copy()
    moved[:, 0] += 0.01
    with pytest.raises(ValueError, match="another source"):
        background_measure(rgb, edits[0], face, face, True, SourceBackground(rgb, moved))
