import cv2
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



def _written_out_ssim(a, b, data_range=255.0):
    """The formula as it stood before the prepared split (float32, one expression per term)."""
    offset = data_range / 2
    x = a.astype(np.float32) - np.float32(offset)
    y = b.astype(np.float32) - np.float32(offset)

    def mean(img):
        return cv2.boxFilter(img, -1, (7, 7), normalize=True, borderType=cv2.BORDER_REFLECT)

    cov_norm = 49 / 48
    ux, uy = mean(x), mean(y)
    vx = cov_norm * (mean(x * x) - ux * ux)
    vy = cov_norm * (mean(y * y) - uy * uy)
    vxy = cov_norm * (mean(x * y) - ux * uy)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mx, my = ux + offset, uy + offset
    num = (2 * mx * my + c1) * (2 * vxy + c2)
    den = (mx * mx + my * my + c1) * (vx + vy + c2)
    return (num / den).astype(np.float64)


def test_prepared_statistics_give_the_same_bits_and_are_read_only():
    """`prepare` + `ssim_map_prepared` (in-place steps, S's side reused) equal the written-out
    formula bit for bit: scored numbers must not move by a single ulp."""
    from fedbench.metrics.ssim import prepare, ssim_map_prepared

    rng = np.random.default_rng(3)
    a = rng.integers(0, 256, (61, 47), dtype=np.uint8)
    stats = prepare(a)
    for b in (rng.integers(0, 256, (61, 47), dtype=np.uint8), a, cv2.GaussianBlur(a, (5, 5), 0)):
        fast = ssim_map_prepared(stats, b)
        assert fast.dtype == np.float32
        assert np.array_equal(fast.astype(np.float64), _written_out_ssim(a, b))
        assert np.array_equal(ssim_map(a, b), _written_out_ssim(a, b))
    first = ssim_map_prepared(stats, cv2.GaussianBlur(a, (3, 3), 0))
    kept = first.copy()
    ssim_map_prepared(stats, 255 - a)  # the per-thread scratch buffers are reused: the map handed back is not
    assert np.array_equal(first, kept)
    with pytest.raises(ValueError):
        stats.x[0, 0] = 1.0
