"""codec.metrics: the one bpp function, PSNR (RGB and YUV) and MS-SSIM."""
import math

import numpy as np
import pytest

from codec.metrics import MS_SSIM_MIN_SIDE, bpp, ms_ssim, ms_ssim_db, mse, psnr, psnr_yuv


def test_bpp_is_bytes_times_8_over_pixels():
    assert bpp(1000, 8000) == 1.0
    assert bpp(0, 10) == 0.0
    assert bpp(3, 768 * 512) == pytest.approx(24 / (768 * 512))


@pytest.mark.parametrize("nbytes,pixels", [(10, 0), (10, -5), (-1, 10)])
def test_bpp_rejects_nonsense(nbytes, pixels):
    with pytest.raises(ValueError):
        bpp(nbytes, pixels)


def test_psnr_known_values():
    a = np.zeros((8, 8, 3), np.uint8)
    assert psnr(a, a) == math.inf
    b = a.copy()
    b[..., 0] = 3  # one channel off by 3: MSE over all channels = 9 / 3 = 3
    assert mse(a, b) == pytest.approx(3.0)
    assert psnr(a, b) == pytest.approx(10 * math.log10(255**2 / 3))
    # no uint8 wrap-around: 0 vs 255 is an error of 255
    assert psnr(a, np.full_like(a, 255)) == pytest.approx(0.0)


def test_psnr_rejects_shape_mismatch():
    with pytest.raises(ValueError):
        psnr(np.zeros((4, 4, 3)), np.zeros((4, 5, 3)))


def test_psnr_yuv_is_611_weighted():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 256, (16, 16), dtype=np.uint8)
    u = rng.integers(0, 256, (8, 8), dtype=np.uint8)
    v = rng.integers(0, 256, (8, 8), dtype=np.uint8)
    dy = np.clip(y.astype(int) + 2, 0, 255).astype(np.uint8)
    du = np.clip(u.astype(int) - 5, 0, 255).astype(np.uint8)
    p = psnr_yuv((y, u, v), (dy, du, v))
    assert p["y"] == pytest.approx(psnr(y, dy))
    assert p["u"] == pytest.approx(psnr(u, du))
    assert p["v"] == math.inf
    p = psnr_yuv((y, u, v), (dy, du, du))
    assert p["yuv"] == pytest.approx((6 * p["y"] + p["u"] + p["v"]) / 8)


def test_ms_ssim_matches_pytorch_msssim_and_orders_quality():
    import torch
    from pytorch_msssim import ms_ssim as reference

    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (MS_SSIM_MIN_SIDE, 170, 3), dtype=np.uint8)
    assert ms_ssim(img, img) == pytest.approx(1.0, abs=1e-6)
    small = np.clip(img + rng.normal(0, 3, img.shape), 0, 255).astype(np.uint8)
    big = np.clip(img + rng.normal(0, 30, img.shape), 0, 255).astype(np.uint8)
    t = lambda a: torch.from_numpy(a.astype(np.float32)).permute(2, 0, 1)[None]  # noqa: E731
    assert ms_ssim(img, small) == pytest.approx(float(reference(t(img), t(small), data_range=255)))
    assert 1.0 > ms_ssim(img, small) > ms_ssim(img, big)


def test_ms_ssim_undefined_below_min_side():
    a = np.zeros((MS_SSIM_MIN_SIDE - 1, 300, 3), np.uint8)
    assert math.isnan(ms_ssim(a, a))


def test_ms_ssim_db():
    assert ms_ssim_db(0.9) == pytest.approx(10.0)
    assert ms_ssim_db(1.0) == math.inf
