"""A JPEG far larger than the working size is decoded scaled down in the DCT (IMREAD_REDUCED_*):
the faces perceived on it agree with a full decode resized with INTER_AREA, within tolerance."""

from __future__ import annotations

import cv2
import numpy as np

from fedbench.data.images import decode_image
from fedbench.faces.geometry import box_iou


def test_reduced_jpeg_decode_finds_the_same_face(pixelsmile, tmp_path):
    from fedbench.faces.perception import Perceiver

    bgr = cv2.imread(str(pixelsmile / "blend" / "happy.jpg"))
    big = cv2.resize(bgr, (2304, 2304), interpolation=cv2.INTER_CUBIC)  # >= 2x the 1024 px working size
    ok, jpeg = cv2.imencode(".jpg", big, [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    data = jpeg.tobytes()
    reduced = decode_image(data, 1024).rgb  # the DCT halves it, then INTER_AREA to 1024
    full = cv2.resize(cv2.cvtColor(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB),
                      (1024, 1024), interpolation=cv2.INTER_AREA)
    assert reduced.shape == full.shape == (1024, 1024, 3)
    assert not np.array_equal(reduced, full)  # it did take the reduced path
    assert np.abs(reduced.astype(int) - full.astype(int)).mean() < 2.0

    perceiver = Perceiver()
    try:
        a, b = perceiver.perceive(reduced).faces[0], perceiver.perceive(full).faces[0]
    finally:
        perceiver.close()
    assert box_iou(a.box, b.box) > 0.95
    face_px = (a.box[2] - a.box[0]) * 1024
    assert np.abs(a.landmarks[:, :2] - b.landmarks[:, :2]).max() * 1024 < 0.03 * face_px
    assert float(np.dot(a.embedding, b.embedding)) > 0.97
    assert np.abs(a.emotion - b.emotion).max() < 0.1
