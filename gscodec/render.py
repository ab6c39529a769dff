"""Decoding Gaussians to pixels: the normative decode of ``spec/gsi.md`` section "Decoding to pixels".

On the CPU (the default) :func:`render` and :func:`render_float` run the numba
renderer of :mod:`gscodec.raster.forward` on numpy arrays and need no torch;
another ``backend`` (``"torch"``, ``"cuda"``) or a CUDA ``device`` imports torch.
:func:`render_tensor` returns the render as a torch tensor where it was made.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from .gaussians import GaussianImage
from .limits import MAX_DIMENSION, MAX_RENDER_OVERLAP, MIN_RENDER_BUDGET
from .raster import BACKENDS

if TYPE_CHECKING:
    import torch


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


class RenderBudgetError(ValueError):
    """A render would visit more footprint pixels than its budget (:data:`gscodec.limits.MAX_RENDER_OVERLAP`)."""


def footprint_pixels(g: GaussianImage) -> float:
    """Pixels of ``g``'s image inside the Gaussians' 3-sigma bounding boxes, summed over Gaussians.

    An upper bound on the pixels a render at ``g``'s size evaluates (float64);
    Gaussians whose box misses the image count 0.
    """
    from .raster.forward import box_pixels  # numba: loaded on the first render, not with the package

    return float(box_pixels(g.means, g.chol, g.width, g.height))


def check_render_budget(g: GaussianImage, max_overlap: float | None = MAX_RENDER_OVERLAP) -> None:
    """Raise :class:`RenderBudgetError` if rendering ``g`` at its size would visit more than
    ``max(max_overlap * width * height, MIN_RENDER_BUDGET)`` footprint pixels; ``None`` allows any."""
    if max_overlap is None:
        return
    work = footprint_pixels(g)
    budget = max(float(max_overlap) * g.width * g.height, float(MIN_RENDER_BUDGET))
    if work > budget:
        raise RenderBudgetError(
            f"rendering {g.width}x{g.height} from {g.count} Gaussians would visit {work:.3g} footprint pixels, "
            f"{work / (g.width * g.height):.0f} per pixel on average, over the limit of {max_overlap:g} "
            f"(a decompression bomb?); pass max_overlap=None to render it anyway")


def render_float(g: GaussianImage, width: int | None = None, height: int | None = None,
                 scale: float | None = None, backend: str = "auto",
                 device: "torch.device | str | None" = None,
                 max_overlap: float | None = MAX_RENDER_OVERLAP) -> np.ndarray:
    """``(H, W, 3)`` float32 numpy array: the unclamped render of ``g``, at its stored size or resized.

    Rendering at another size maps the same continuous image onto the new grid
    (:meth:`GaussianImage.scaled`) and samples it at the new pixel centres.
    ``device``: where to render (default the CPU, without torch; ``backend="auto"``
    picks the Triton kernels for a CUDA device); the result is copied to the host
    (:func:`render_tensor` keeps it on the device).
    Raises :class:`RenderBudgetError` past ``max_overlap`` (see :func:`check_render_budget`).
    """
    if _numpy_path(backend, device):
        from .raster.forward import render_numpy

        g = _at_output_size(g, width, height, scale, max_overlap)
        return render_numpy(g.means, g.chol, g.colors, g.width, g.height)
    return render_tensor(g, width, height, scale, backend, device, max_overlap).cpu().numpy()


def render_tensor(g: GaussianImage, width: int | None = None, height: int | None = None,
                  scale: float | None = None, backend: str = "auto",
                  device: "torch.device | str | None" = None,
                  max_overlap: float | None = MAX_RENDER_OVERLAP) -> "torch.Tensor":
    """:func:`render_float` as an ``(H, W, 3)`` float32 torch tensor on ``device`` (default the CPU); imports torch.

    On the CPU with ``backend`` ``"auto"`` or ``"cpu"`` the tensor is a zero-copy view of
    :func:`render_float`'s array.
    """
    import torch

    if _numpy_path(backend, device):
        return torch.from_numpy(render_float(g, width, height, scale, backend, device, max_overlap))
    from .raster import rasterize_sum

    g = _at_output_size(g, width, height, scale, max_overlap)
    with torch.no_grad():
        return rasterize_sum(*g.tensors(device), g.width, g.height, backend=backend)


def _at_output_size(g: GaussianImage, width: int | None, height: int | None, scale: float | None,
                    max_overlap: float | None) -> GaussianImage:
    """``g`` mapped onto the requested output grid (:func:`output_size`), checked against the render budget."""
    w, h = output_size(g, width, height, scale)
    if (w, h) != (g.width, g.height):
        g = g.scaled(w, h)
    check_render_budget(g, max_overlap)
    return g


def _numpy_path(backend: str, device: "torch.device | str | None") -> bool:
    """Whether to use the forward-only numba renderer (CPU, no torch) for this request."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; valid: {', '.join(BACKENDS)}")
    if backend not in ("auto", "cpu"):
        return False
    if device is None or (isinstance(device, str) and device == "cpu"):
        return True
    import torch  # a device other than None or "cpu" was asked for: torch is needed anyway

    return torch.device(device).type == "cpu"


def to_uint8(image: Any) -> np.ndarray:
    """Float image in display units (a numpy array or a torch tensor on any device) to 8 bits:
    ``floor(clamp(v, 0, 1) * 255 + 0.5)``, as ``(H, W, 3)`` uint8."""
    v = image.detach().cpu().numpy() if hasattr(image, "detach") else np.asarray(image, dtype=np.float32)
    return np.floor(np.clip(v, 0.0, 1.0) * np.float32(255.0) + np.float32(0.5)).astype(np.uint8)


def render(g: GaussianImage, width: int | None = None, height: int | None = None,
           scale: float | None = None, backend: str = "auto", device: "torch.device | str | None" = None,
           max_overlap: float | None = MAX_RENDER_OVERLAP) -> np.ndarray:
    """Decode ``g`` to an ``(H, W, 3)`` uint8 RGB array (the normative decode), rendered on ``device``.

    On the CPU the 8-bit conversion is fused into the forward-only renderer.
    Raises :class:`RenderBudgetError` past ``max_overlap`` (see :func:`check_render_budget`).
    """
    if _numpy_path(backend, device):
        from .raster.forward import render_numpy

        g = _at_output_size(g, width, height, scale, max_overlap)
        return render_numpy(g.means, g.chol, g.colors, g.width, g.height, uint8=True)
    return to_uint8(render_tensor(g, width, height, scale, backend, device, max_overlap))
