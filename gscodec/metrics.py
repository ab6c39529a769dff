"""Distortion metrics, the one home of each: PSNR (dB) and MS-SSIM.

* :func:`psnr_u8` and :func:`ms_ssim` score one decoded ``(H, W, 3)`` uint8
  image against its original (``gsi bench`` and the benchmarks); averaging over
  images is the caller's job (per-image PSNR averaged, as CompressAI does).
* :func:`psnr` (peak 1) takes float renders or 8-bit images as the fitter sees
  them; :func:`psnr_batch` is its ``(B, H, W, 3)`` torch form, the fitter's
  stopping and preset metric.

MS-SSIM is :func:`pytorch_msssim.ms_ssim` with its defaults (5 scales, 11-tap
Gaussian window, sigma 1.5, ``data_range=255``) on the RGB channels in float32,
averaged over channels. That implementation needs the shorter side to exceed
:data:`MS_SSIM_MIN_SIDE` (160 px: 4 halvings of an 11-px window) whatever the
``weights``, so smaller images get ``nan`` rather than a number from a
different (fewer-scale) metric that would not average with the others.

:func:`psnr_u8` needs numpy only; the others import torch when called.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from .extras import MissingDependencyError

if TYPE_CHECKING:
    import torch

MS_SSIM_MIN_SIDE = 161
"""Smallest shorter side (px) for which MS-SSIM is computed; smaller images give ``nan``."""




def _check(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape != b.shape or a.ndim != 3 or a.shape[2] != 3:
        raise ValueError(f"need two (H, W, 3) images of one size, got {a.shape} and {b.shape}")


def psnr_u8(decoded: np.ndarray, original: np.ndarray) -> float:
    """PSNR in dB of ``decoded`` against ``original`` (uint8 RGB, peak 255, MSE over all channels); ``inf`` if equal."""
    _check(decoded, original)
    mse = float(np.mean((decoded.astype(np.float64) - original.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(255.0**2 / mse)


def psnr(a: Any, b: Any) -> float:
    """PSNR in dB (peak 1.0) of ``a`` against ``b``; both ``(H, W, 3)`` floats in [0, 1] or uint8.

    ``a`` (a render) is clamped to [0, 1]; ``inf`` for identical images.
    """
    import torch

    from .fit.targets import as_target  # lazily: the fitter imports this module

    ta = a.detach().float().cpu() if isinstance(a, torch.Tensor) and a.is_floating_point() else as_target(a)
    tb = as_target(b)
    mse = float(((ta.clamp(0, 1) - tb) ** 2).double().mean())
    return math.inf if mse == 0 else 10.0 * math.log10(1.0 / mse)


def psnr_batch(render: "torch.Tensor", targets: "torch.Tensor") -> "torch.Tensor":
    """``(B,)`` float64 PSNR (peak 1) of the clamped ``(B, H, W, 3)`` renders against the targets."""
    import torch

    mse = ((render.clamp(0, 1) - targets) ** 2).double().mean((1, 2, 3))
    return 10.0 * torch.log10(1.0 / mse)


def ms_ssim(decoded: np.ndarray, original: np.ndarray) -> float:
    """MS-SSIM (0..1, 1 = identical) of ``decoded`` against ``original``; ``nan`` below :data:`MS_SSIM_MIN_SIDE`."""
    _check(decoded, original)
    if min(original.shape[:2]) < MS_SSIM_MIN_SIDE:
        return math.nan
    try:
        from pytorch_msssim import ms_ssim as _ms_ssim
    except ImportError as exc:
        raise MissingDependencyError(f"MS-SSIM needs pytorch-msssim (pip install pytorch-msssim or "
                                     f"'gscodec[bench]'): {exc}") from None

    import torch

    def tensor(x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.array(x, dtype=np.float32)).permute(2, 0, 1)[None]

    with torch.no_grad():
        return float(_ms_ssim(tensor(decoded), tensor(original), data_range=255, size_average=True))


__all__ = ["MS_SSIM_MIN_SIDE", "MissingDependencyError", "ms_ssim", "psnr", "psnr_batch", "psnr_u8"]
