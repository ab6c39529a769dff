"""Plain PyTorch reference of the plain-sum rasterizer: dense, obviously correct, differentiable.

Every faster backend is tested against :func:`rasterize_sum` here for values and
gradients. It evaluates every Gaussian at every pixel centre, so it costs
``O(N * H * W)``; use it for tests and small images only.
"""

from __future__ import annotations

import torch

from ..limits import CUTOFF_SQ

_CHUNK_ELEMENTS = 1 << 22


def mahalanobis_sq(dx: torch.Tensor, dy: torch.Tensor, l11: torch.Tensor, l21: torch.Tensor,
                   l22: torch.Tensor) -> torch.Tensor:
    """Squared Mahalanobis distance of offsets ``(dx, dy)`` (point minus mean) under ``L = [[l11, 0], [l21, l22]]``,
    in the decoder's order of operations (spec section 8): ``z1 = dx / l11``, ``z2 = (dy - l21 z1) / l22``."""
    z1 = dx / l11
    z2 = (dy - l21 * z1) / l22
    return z1 * z1 + z2 * z2


def gaussian_weight(dx: torch.Tensor, dy: torch.Tensor, l11: torch.Tensor, l21: torch.Tensor,
                    l22: torch.Tensor) -> torch.Tensor:
    """``exp(-d2 / 2)`` where ``d2 = mahalanobis_sq(...) <= CUTOFF_SQ``, else 0: a Gaussian's value (peak 1)."""
    d2 = mahalanobis_sq(dx, dy, l11, l21, l22)
    return torch.where(d2 <= CUTOFF_SQ, torch.exp(-0.5 * d2), torch.zeros_like(d2))


def rasterize_sum(
    means: torch.Tensor,
    chol: torch.Tensor,
    colors: torch.Tensor,
    width: int,
    height: int,
    counts: torch.Tensor | None = None,
) -> torch.Tensor:
    """Render the plain sum of 2D Gaussians at pixel centres.

    Args:
        means: ``(N, 2)`` or ``(B, N, 2)`` centres ``(x, y)`` in pixels, origin at
            the top-left image corner.
        chol: ``(N, 3)`` or ``(B, N, 3)`` Cholesky factors ``(l11, l21, l22)`` in pixels.
        colors: ``(N, 3)`` or ``(B, N, 3)`` RGB amplitudes.
        width, height: output size in pixels.
        counts: optional ``(B,)`` int; image ``b`` uses only its first
            ``counts[b]`` Gaussians (the rest is padding).

    Returns:
        ``(H, W, 3)`` or ``(B, H, W, 3)`` float image, unclamped:
        ``sum_k colors[k] * exp(-d_k^2 / 2)`` over the Gaussians whose squared
        Mahalanobis distance ``d_k^2`` to the pixel centre is at most ``CUTOFF_SQ``.
    """
    batched = means.ndim == 3
    if not batched:
        means, chol, colors = means[None], chol[None], colors[None]
    b, n, _ = means.shape
    dtype = means.dtype if means.is_floating_point() else torch.float32
    px = torch.arange(width, device=means.device, dtype=dtype) + 0.5
    py = torch.arange(height, device=means.device, dtype=dtype) + 0.5
    if counts is not None:
        valid = torch.arange(n, device=means.device)[None, :] < counts.to(means.device)[:, None]
        colors = colors * valid[..., None].to(colors.dtype)
    out = means.new_zeros((b, height, width, 3), dtype=dtype)
    chunk = max(1, _CHUNK_ELEMENTS // max(1, width * height))
    for start in range(0, n, chunk):
        sl = slice(start, start + chunk)
        x = means[:, sl, 0, None, None]
        y = means[:, sl, 1, None, None]
        l11 = chol[:, sl, 0, None, None]
        l21 = chol[:, sl, 1, None, None]
        l22 = chol[:, sl, 2, None, None]
        dx = px[None, None, None, :] - x
        dy = py[None, None, :, None] - y
        weight = gaussian_weight(dx, dy, l11, l21, l22)
        out = out + torch.einsum("bnhw,bnc->bhwc", weight, colors[:, sl])
    return out if batched else out[0]
