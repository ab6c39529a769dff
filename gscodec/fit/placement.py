"""Where a fit runs, and how many images of one size a GPU fits at once.

``FitConfig(backend="cuda")`` fits on the current CUDA device with the Triton
rasterizer; without a CUDA device the same code runs on CPU tensors, which the
Triton backend accepts only in its interpreter (``TRITON_INTERPRET=1``), the
way the tests check the GPU fitter. Every other backend fits on the CPU.

:func:`choose_batch_size` sizes a batch from free GPU memory with
:func:`fit_bytes_per_image`, a deliberately generous estimate of one image's
share of a batched fit's peak memory.
"""

from __future__ import annotations

import contextlib
import math
from typing import ContextManager

import torch

from ..raster.triton.binning import TILE

PIXEL_COPIES = 12
"""float32 ``(H, W, 3)`` images alive per fitted image at the peak: target, render,
difference, upstream gradient, clamped and squared temporaries, error maps and blurs."""

GAUSSIAN_FLOATS = 64
"""float32 values per Gaussian: parameters, Adam moments, gradients, Cholesky copies,
the eight backward moments and the conjugate-gradient vectors of the colour solves."""

BYTES_PER_INTERSECTION = 80
"""Tile binning temporaries per (Gaussian, tile) pair (int64 keys, sort buffers, ids)."""

SIGMA_PER_SPACING = 1.5
"""Assumed Gaussian sigma in mean spacings ``sqrt(H W / N)`` for the tiles a Gaussian
overlaps; fits start near 0.6 and a few Gaussians grow far larger."""

SAFETY = 0.7
"""Share of the free memory a batch may plan to use (the caching allocator fragments)."""

RESERVE = 256 * 2**20
"""Bytes kept free besides (CUDA context growth, Triton launch buffers, the data loader's pinned memory)."""


def fit_device(backend: str) -> torch.device:
    """The device a fit with rasterizer ``backend`` runs on: the current CUDA device for ``"cuda"``
    when one exists, else the CPU (for ``"cuda"`` that needs the Triton interpreter)."""
    if backend == "cuda" and torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def on_device(device: torch.device) -> ContextManager:
    """A context in which tensor factories default to ``device`` (no-op on the CPU).

    The fitter creates its working tensors with plain factories (``torch.zeros``,
    ``torch.arange``, ...); this puts them next to the targets on a GPU.
    """
    return contextlib.nullcontext() if device.type == "cpu" else torch.device(device)


def fit_bytes_per_image(height: int, width: int, points: int) -> int:
    """Rough peak bytes one ``height`` x ``width`` image with ``points`` Gaussians adds to a batched GPU fit."""
    if height < 1 or width < 1 or points < 1:
        raise ValueError(f"need a positive size and Gaussian count, got {width}x{height} with {points}")
    n = min(points, height * width)
    pixels = PIXEL_COPIES * height * width * 3 * 4
    gaussians = GAUSSIAN_FLOATS * n * 4
    sigma = SIGMA_PER_SPACING * math.sqrt(height * width / n)
    span = min(1.0 + (6.0 * sigma + 2.0) / TILE, -(-width // TILE)) * min(1.0 + (6.0 * sigma + 2.0) / TILE,
                                                                           -(-height // TILE))
    return int(pixels + gaussians + BYTES_PER_INTERSECTION * n * span)


def free_gpu_bytes(device: torch.device | None = None) -> int:
    """Bytes a new batch can use on the CUDA ``device``: free memory plus what torch's allocator caches unused."""
    free, _ = torch.cuda.mem_get_info(device)
    cached = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    return int(free + max(cached, 0))


def choose_batch_size(height: int, width: int, points: int, free_bytes: int | None = None,
                      device: torch.device | None = None, limit: int | None = None) -> int:
    """The largest batch of ``height`` x ``width`` images with ``points`` Gaussians that fits in memory.

    Args:
        free_bytes: free device memory; default: measured on the CUDA ``device``.
        limit: an upper bound (e.g. ``--batch``), or ``None``.

    Returns:
        At least 1 (one image is tried even when the estimate says it will not fit).
    """
    if free_bytes is None:
        free_bytes = free_gpu_bytes(device)
    usable = SAFETY * (free_bytes - RESERVE)
    batch = max(1, int(usable // fit_bytes_per_image(height, width, points)))
    return batch if limit is None else max(1, min(batch, int(limit)))


__all__ = ["choose_batch_size", "fit_bytes_per_image", "fit_device", "free_gpu_bytes", "on_device"]
