"""Decoding Gaussians to pixels: the normative decode of ``spec/gsi.md`` section "Decoding to pixels"."""

from __future__ import annotations

import numpy as np
import torch

from .gaussians import GaussianImage
from .limits import MAX_DIMENSION
from .raster import rasterize_sum
from .raster.forward import render_numpy


def output_size(g: GaussianImage, width: int | None = None, height: int | None = None,
                scale: float | None = None) -> tuple[int, int]:
    """Resolve a requested output size; a single given side keeps the aspect ratio.

    Returns ``(width, height)`` in pixels, each in ``1..MAX_DIMENSION``.
    """
    if scale is not None:
        if width is not None or height is not None:
            raise ValueError("give either scale or width/height, not both")
        if not scale > 0:
            raise ValueError(f"scale must be positive, got {scale}")
        width, height = round(g.width * scale), round(g.height * scale)
    elif width is None and height is None:
        width, height = g.width, g.height
    elif height is None:
        height = round(g.height * width / g.width)
    elif width is None:
        width = round(g.width * height / g.height)
    width, height = max(1, int(width)), max(1, int(height))
    if width > MAX_DIMENSION or height > MAX_DIMENSION:
        raise ValueError(f"output size {width}x{height} exceeds {MAX_DIMENSION} pixels per side")
    return width, height


def render_float(g: GaussianImage, width: int | None = None, height: int | None = None,
                 scale: float | None = None, backend: str = "auto",
                 device: torch.device | str | None = None) -> torch.Tensor:
    """``(H, W, 3)`` float32 unclamped render of ``g``, at its stored size or resized.

    Rendering at another size maps the same continuous image onto the new grid
    (:meth:`GaussianImage.scaled`) and samples it at the new pixel centres.
    ``device``: where to render (default the CPU; ``backend="auto"`` then picks
    the Triton kernels for a CUDA device); the result stays there.
    """
    w, h = output_size(g, width, height, scale)
    if (w, h) != (g.width, g.height):
        g = g.scaled(w, h)
    if _numpy_path(backend, device):
        return torch.from_numpy(render_numpy(g.means.numpy(), g.chol.numpy(), g.colors.numpy(), w, h))
    with torch.no_grad():
        return rasterize_sum(g.means.to(device), g.chol.to(device), g.colors.to(device), w, h, backend=backend)


def _numpy_path(backend: str, device: torch.device | str | None) -> bool:
    """Whether to use the forward-only numba renderer (CPU, no torch in the loop) for this request."""
    return backend in ("auto", "cpu") and (device is None or torch.device(device).type == "cpu")


def to_uint8(image: torch.Tensor) -> np.ndarray:
    """Float image in display units to 8 bits: ``floor(clamp(v, 0, 1) * 255 + 0.5)``, as ``(H, W, 3)`` uint8."""
    v = image.detach().cpu().numpy()
    return np.floor(np.clip(v, 0.0, 1.0) * np.float32(255.0) + np.float32(0.5)).astype(np.uint8)


def render(g: GaussianImage, width: int | None = None, height: int | None = None,
           scale: float | None = None, backend: str = "auto", device: torch.device | str | None = None) -> np.ndarray:
    """Decode ``g`` to an ``(H, W, 3)`` uint8 RGB array (the normative decode), rendered on ``device``.

    On the CPU the 8-bit conversion is fused into the forward-only renderer.
    """
    if _numpy_path(backend, device):
        w, h = output_size(g, width, height, scale)
        if (w, h) != (g.width, g.height):
            g = g.scaled(w, h)
        return render_numpy(g.means.numpy(), g.chol.numpy(), g.colors.numpy(), w, h, uint8=True)
    return to_uint8(render_float(g, width, height, scale, backend, device))
