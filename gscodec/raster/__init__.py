"""The plain-sum rasterizer: one public entry point over interchangeable backends.

Backends:
    ``"torch"``: the dense reference in :mod:`gscodec.raster.reference` (any device).
    ``"cpu"``: numba kernels over each Gaussian's footprint (:mod:`gscodec.raster.cpu`).
    ``"cuda"``: Triton kernels (:mod:`gscodec.raster.triton`).
    ``"auto"``: ``"cuda"`` for CUDA tensors, ``"cpu"`` otherwise.

Importing this package does not import torch; decoding without torch goes
through :func:`gscodec.raster.forward.render_numpy`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported by the backends, when one is called
    import torch

BACKENDS = ("auto", "torch", "cpu", "cuda")


class BackendUnavailableError(RuntimeError):
    """The requested rasterizer backend cannot run here (e.g. CUDA without a GPU)."""


def rasterize_sum(
    means: torch.Tensor,
    chol: torch.Tensor,
    colors: torch.Tensor,
    width: int,
    height: int,
    counts: torch.Tensor | None = None,
    backend: str = "auto",
) -> torch.Tensor:
    """Render the plain sum of 2D Gaussians at pixel centres, differentiably.

    Args:
        means: ``(N, 2)`` or ``(B, N, 2)`` float32 centres ``(x, y)`` in pixels.
        chol: ``(N, 3)`` or ``(B, N, 3)`` float32 Cholesky factors ``(l11, l21, l22)``.
        colors: ``(N, 3)`` or ``(B, N, 3)`` float32 RGB amplitudes.
        width, height: output size in pixels.
        counts: optional ``(B,)`` int Gaussians used per image (the rest is padding).
        backend: one of :data:`BACKENDS`.

    Returns:
        ``(H, W, 3)`` or ``(B, H, W, 3)`` float32, unclamped.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; valid: {', '.join(BACKENDS)}")
    if backend == "auto":
        backend = "cuda" if means.is_cuda else "cpu"
    if backend == "torch":
        from .reference import rasterize_sum as impl
    elif backend == "cpu":
        from .cpu import rasterize_sum as impl
    else:
        from .triton import rasterize_sum as impl
    return impl(means, chol, colors, width, height, counts)


__all__ = ["BACKENDS", "BackendUnavailableError", "rasterize_sum"]
