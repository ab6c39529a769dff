"""Fast CPU backend of the plain-sum rasterizer: numba kernels over each Gaussian's footprint.

Same semantics as :func:`gscodec.raster.reference.rasterize_sum` (normative): a
Gaussian adds ``color * exp(-d2 / 2)`` to every pixel centre whose squared
Mahalanobis distance ``d2`` is at most ``CUTOFF_SQ``. The per-pixel ``d2`` is
computed in float32 with the reference's exact operation order, so the
``d2 <= CUTOFF_SQ`` mask agrees bit for bit with the float32 reference; the
weight is a vectorized float32 polynomial (:func:`gscodec.raster.strips.exp_neg_half`).

This module wraps the two passes, over the footprints of
:func:`gscodec.raster.footprint.prepare_footprints` (the rows each Gaussian
meets, float64 with small margins), as one autograd function:

* forward: the decoder's band renderer (vertical SIMD strips), with the bands
  of every image of the batch in one thread pool
  (:func:`gscodec.raster.forward.render_batch_prepared`). It replaced a
  row-span forward kernel: 4.4 to 1.7 ms at 768x480 with 2949 fitted Gaussians.
* backward: :mod:`gscodec.raster.backward`, per-Gaussian gradient sums down the
  same strips. It replaced a row-span kernel that gathered footprint pixels
  into a buffer and reduced them: 4.8-5.8 to 2.3 ms (1.7 plus 0.6 for
  rearranging the upstream gradient) on the same fit.

The fitter's own step, :func:`squared_error_grad`, skips the image-sized
intermediates: the bands write ``render - target`` straight into the backward
pass's column-block layout (the targets put into it once per fit level, by
:func:`target_blocks`) together with the clamped render's squared error for
PSNR, and the backward reads it there; no ``(B, H, W, 3)`` render, no
rearrangement of the upstream gradient into blocks (:func:`to_blocks`), no
autograd. Its values are the autograd path's, bit for bit (every `.gsi` file of
``benchmarks/check_identical.py`` is unchanged).

Non-finite or degenerate (``l11 == 0`` or ``l22 == 0``) Gaussians and the
padding beyond ``counts[b]`` contribute nothing and get zero gradients.
"""

from __future__ import annotations

import numba
import numpy as np
import torch

from .backward import backward_strips, to_blocks
from .footprint import prepare_footprints
from .forward import render_batch_prepared, residual_batch_prepared
from .params import check_inputs
from .strips import LANES, ROW_STRIDE

def _as_f32(t: torch.Tensor) -> np.ndarray:
    """A C-contiguous float32 CPU numpy view (or copy) of the parameters ``t``, batched: ``(B, N, C)``."""
    a = t.detach().to(device="cpu", dtype=torch.float32).contiguous().numpy()
    return a if a.ndim == 3 else a[None]


class _RasterizeSum(torch.autograd.Function):
    """Plain-sum rendering with the hand-written numba backward; batched or not, like its inputs."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx,
        means: torch.Tensor,
        chol: torch.Tensor,
        colors: torch.Tensor,
        width: int,
        height: int,
        counts: np.ndarray,
    ) -> torch.Tensor:
        m, l, c = _as_f32(means), _as_f32(chol), _as_f32(colors)
        nb, n = m.shape[0], m.shape[1]
        pads = np.empty((nb, n), dtype=np.float64)
        rows = np.zeros((nb, n, 2), dtype=np.int64)
        batched = means.ndim == 3
        out = torch.empty((nb, height, width, 3) if batched else (height, width, 3), dtype=torch.float32)
        if nb and height and width:
            out_np = out.numpy() if batched else out.numpy()[None]
            prepare_footprints(m, l, counts, height, pads, rows)
            render_batch_prepared(m, l, c, counts, pads, rows, out_np)
        ctx.saved = (m, l, c, pads, rows)
        ctx.batched = batched
        return out if means.device.type == "cpu" else out.to(means.device)

    @staticmethod
    def backward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx, grad_out: torch.Tensor
    ) -> tuple[torch.Tensor | None, ...]:
        m, l, c, pads, rows = ctx.saved
        nb, n = m.shape[0], m.shape[1]
        lead = (nb, n) if ctx.batched else (n,)
        grad_means = torch.empty((*lead, 2), dtype=torch.float32)
        grad_chol = torch.empty((*lead, 3), dtype=torch.float32)
        grad_colors = torch.empty((*lead, 3), dtype=torch.float32)
        if n:
            g, gm, gl, gc = (
                t.numpy() if ctx.batched else t.numpy()[None]
                for t in (grad_out.detach().to(device="cpu", dtype=torch.float32).contiguous(),
                          grad_means, grad_chol, grad_colors)
            )
            height, width = g.shape[1], g.shape[2]
            blocks = np.empty((nb, -(-width // LANES) * height * ROW_STRIDE), dtype=np.float32)
            to_blocks(g, blocks)
            backward_strips(m, l, c, pads, rows, blocks, width, height, numba.get_num_threads(), gm, gl, gc)
        need = ctx.needs_input_grad
        device = grad_out.device
        return (
            grad_means.to(device) if need[0] else None,
            grad_chol.to(device) if need[1] else None,
            grad_colors.to(device) if need[2] else None,
            None,
            None,
            None,
        )


def target_blocks(targets: torch.Tensor) -> np.ndarray:
    """``(B, nblocks * H * ROW_STRIDE)`` float32: ``(B, H, W, 3)`` targets in the column-block layout of
    :func:`gscodec.raster.backward.to_blocks`, for :func:`squared_error_grad` (prepare once per fit level)."""
    t = targets.detach().to(device="cpu", dtype=torch.float32).contiguous().numpy()
    nb, height, width = t.shape[0], t.shape[1], t.shape[2]
    out = np.empty((nb, -(-width // LANES) * height * ROW_STRIDE), dtype=np.float32)
    to_blocks(t, out)
    return out


def squared_error_grad(
    means: torch.Tensor, chol: torch.Tensor, colors: torch.Tensor, width: int, height: int, counts: torch.Tensor,
    targets: np.ndarray,
) -> tuple[np.ndarray, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The fitter's step on the CPU: gradients of ``sum((render - target)^2)`` in one forward and one backward pass.

    ``means (B, N, 2)``, ``chol (B, N, 3)``, ``colors (B, N, 3)`` float32 CPU tensors, ``counts (B,)``;
    ``targets`` from :func:`target_blocks`. Returns ``sse (B,)`` float64, the squared error of the render
    clamped to [0, 1] (summed over pixels and channels: ``sse / (3 H W)`` is the MSE of PSNR), and the
    gradients ``(B, N, 2|3|3)`` float32. The same values as autograd through :func:`rasterize_sum`
    with the upstream gradient ``2 (render - target)``, bit for bit, without the ``(B, H, W, 3)`` render
    and its rearrangement into blocks.
    """
    m, l, c = _as_f32(means), _as_f32(chol), _as_f32(colors)
    nb, n = m.shape[0], m.shape[1]
    counts_np = np.ascontiguousarray(counts.cpu().numpy(), dtype=np.int64)
    pads = np.empty((nb, n), dtype=np.float64)
    rows = np.zeros((nb, n, 2), dtype=np.int64)
    residual = np.empty_like(targets)
    prepare_footprints(m, l, counts_np, height, pads, rows)
    sse = residual_batch_prepared(m, l, c, counts_np, pads, rows, width, height, targets, residual)
    grads = [np.empty((nb, n, k), dtype=np.float32) for k in (2, 3, 3)]
    if n:
        backward_strips(m, l, c, pads, rows, residual, width, height, numba.get_num_threads(), *grads)
    return (sse, *(torch.from_numpy(g).mul_(2.0) for g in grads))  # type: ignore[return-value]


def rasterize_sum(
    means: torch.Tensor,
    chol: torch.Tensor,
    colors: torch.Tensor,
    width: int,
    height: int,
    counts: torch.Tensor | None = None,
) -> torch.Tensor:
    """Render the plain sum of 2D Gaussians at pixel centres on the CPU, differentiably.

    Arguments as :func:`gscodec.raster.rasterize_sum` (``counts[b]``: the Gaussians image ``b`` uses; the rest
    is padding and gets zero gradient).

    Returns:
        ``(H, W, 3)`` or ``(B, H, W, 3)`` float32 image, unclamped, on the
        device of ``means``; gradients flow to ``means``, ``chol`` and ``colors``.
        Raises ``ValueError`` as :func:`gscodec.raster.params.check_inputs` says.
    """
    width, height, counts_t = check_inputs(means, chol, colors, width, height, counts)
    counts_np = counts_t.cpu().numpy()
    return _RasterizeSum.apply(means, chol, colors, width, height, counts_np)

__all__ = ["rasterize_sum", "squared_error_grad", "target_blocks"]
