import numpy as np
import pytest
from skimage.metrics import structural_similarity

from fedbench.metrics.ssim import ssim_map


@pytest.mark.parametrize("seed", [0, 1])
def test_ssim_map_matches_scikit_image(seed):
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 256, (64, 80)).astype(np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-40, 40, a.shape), 0, 255).astype(np.uint8)
    _, ref = structural_similarity(a, b, data_range=255, full=True)
    ours = ssim_map(a, b)
    assert np.abs(ours - ref).max() < 1e-4


def test_ssim_of_identical_images_is_one():
    a = np.random.default_rng(3).integers(0, 256, (32, 32)).astype(np.uint8)
    assert np.allclose(ssim_map(a, a), 1.0)


def test_ssim_needs_equal_shapes():
    with pytest.raises(ValueError):
        ssim_map(np.zeros((4, 4)), np.zeros((4, 5)))


def test_face_mask_matches_a_morphological_dilation():
    import cv2

    from fedbench.faces.masks import face_mask

    rng = np.random.default_rng(5)
    lm = np.column_stack([rng.uniform(0.3, 0.7, 478), rng.uniform(0.25, 0.75, 478), np.zeros(478)])
    ours = face_mask(lm, (256, 200), dilation=0.1)
    pts = np.round(lm[:, :2] * [256, 200]).astype(np.int32)
    ref = np.zeros((200, 256), np.uint8)
    cv2.fillConvexPoly(ref, cv2.convexHull(pts), 1)
    r = int(round(0.1 * (pts[:, 0].max() - pts[:, 0].min())))
    ref = cv2.dilate(ref, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))).astype(bool)
    assert (ours != ref).mean() < 0.01  # pixel-level rounding at the rim only
