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
    assert np.abs(ours - ref).max() < 1e-6


def test_ssim_of_identical_images_is_one():
    a = np.random.default_rng(3).integers(0, 256, (32, 32)).astype(np.uint8)
    assert np.allclose(ssim_map(a, a), 1.0)


def test_ssim_needs_equal_shapes():
    with pytest.raises(ValueError):
        ssim_map(np.zeros((4, 4)), np.zeros((4, 5)))
