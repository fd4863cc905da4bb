"""Rate and distortion metrics: the one place where ncodec computes bits per pixel, PSNR and
MS-SSIM. Every tool, test and codec imports these, so all reported numbers mean the same thing.

Conventions (those of ``../shared/anchors/ANCHORS.md``):

* **bpp** = whole file / bitstream bytes x 8 / pixels, headers and container included; for a
  video, pixels = width x height x frames (luma pixels: chroma planes do not count).
* **PSNR** (RGB) = 8-bit, peak 255, MSE over all pixels and channels of one image; a set is
  summarised by the mean of per-image PSNRs.
* **YUV PSNR** = one PSNR per plane (Y, U, V) and the weighted ``(6 Y + U + V) / 8`` of the
  three plane PSNRs (the JVET/MPEG "6:1:1" weighting), per frame.
* **MS-SSIM** = ``pytorch_msssim.ms_ssim`` on RGB float in [0, 255], ``data_range=255``.
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ["bpp", "mse", "psnr", "psnr_yuv", "ms_ssim", "ms_ssim_db", "MS_SSIM_MIN_SIDE"]

#: the smallest side pytorch_msssim accepts with its default 11x11 window and 5 scales
MS_SSIM_MIN_SIDE = 161


def bpp(num_bytes: int, num_pixels: int) -> float:
    """Bits per pixel: ``num_bytes * 8 / num_pixels``.

    ``num_bytes`` is the size of the whole file or bitstream (headers, container, everything a
    decoder needs); ``num_pixels`` is width x height (x frames for a video). Raises
    ``ValueError`` for a non-positive pixel count or negative byte count.
    """
    if num_pixels <= 0:
        raise ValueError(f"bpp needs a positive pixel count, got {num_pixels}")
    if num_bytes < 0:
        raise ValueError(f"bpp needs a non-negative byte count, got {num_bytes}")
    return num_bytes * 8.0 / num_pixels


def _pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
    if a.size == 0:
        raise ValueError("empty image")
    return a.astype(np.float64), b.astype(np.float64)


def mse(a: np.ndarray, b: np.ndarray) -> float:
    """Mean squared error over all elements (pixels and channels) of two same-shape arrays."""
    a, b = _pair(a, b)
    return float(np.mean((a - b) ** 2))


def psnr(a: np.ndarray, b: np.ndarray, peak: float = 255.0) -> float:
    """PSNR in dB of ``b`` against ``a`` (MSE over all channels); ``inf`` when identical."""
    m = mse(a, b)
    return math.inf if m == 0 else 10.0 * math.log10(peak * peak / m)


def psnr_yuv(ref: tuple[np.ndarray, np.ndarray, np.ndarray],
             dec: tuple[np.ndarray, np.ndarray, np.ndarray], peak: float = 255.0) -> dict[str, float]:
    """PSNRs of one frame given as ``(Y, U, V)`` planes (any subsampling, 8-bit by default).

    Returns ``{"y", "u", "v", "yuv"}`` with ``yuv = (6 y + u + v) / 8``; an identical plane has
    ``inf`` PSNR and makes ``yuv`` infinite too.
    """
    y, u, v = (psnr(r, d, peak) for r, d in zip(ref, dec))
    return {"y": y, "u": u, "v": v, "yuv": (6.0 * y + u + v) / 8.0}


def ms_ssim(a: np.ndarray, b: np.ndarray) -> float:
    """MS-SSIM of two HxWx3 (or HxW) 8-bit images, ``pytorch_msssim`` with ``data_range=255``.

    Returns ``nan`` when a side is below :data:`MS_SSIM_MIN_SIDE` (the metric is undefined
    there with its standard window and five scales).
    """
    import torch
    from pytorch_msssim import ms_ssim as _ms_ssim

    a, b = _pair(a, b)
    if a.ndim == 2:
        a, b = a[..., None], b[..., None]
    if min(a.shape[:2]) < MS_SSIM_MIN_SIDE:
        return math.nan
    ta = torch.from_numpy(a.astype(np.float32)).permute(2, 0, 1)[None]
    tb = torch.from_numpy(b.astype(np.float32)).permute(2, 0, 1)[None]
    with torch.no_grad():
        return float(_ms_ssim(ta, tb, data_range=255, size_average=True))


def ms_ssim_db(value: float) -> float:
    """MS-SSIM on a dB scale, ``-10 log10(1 - value)`` (``inf`` at 1), as RD plots use it."""
    return math.inf if value >= 1.0 else -10.0 * math.log10(1.0 - value)
