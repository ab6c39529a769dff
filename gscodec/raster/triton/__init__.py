"""GPU backend of the plain-sum rasterizer: tile binning plus Triton forward and backward kernels.

Same semantics and signature as :func:`gscodec.raster.reference.rasterize_sum`
(normative). Importing this package neither imports triton nor touches the
GPU: the kernels (:mod:`gscodec.raster.triton.kernels`) load on the first call.

Pipeline per call: :func:`~gscodec.raster.triton.binning.gaussian_boxes` (3-sigma boxes),
:func:`~gscodec.raster.triton.binning.bin_tiles` (per-16x16-tile Gaussian lists; gsplat's
``isect_tiles`` on CUDA, PyTorch otherwise), then one Triton program per
(image, tile) summing the tile's Gaussians.

Backward: the same per-(image, tile) programs recompute the weights, reduce
each Gaussian's contributions over the tile's 256 pixels in registers and
``atomic_add`` eight per-Gaussian sums (colour gradients and the ``S[z...]``
moments of :func:`gscodec.raster.triton.kernels.backward_moments`); the
chain rule to ``(x, y, l11, l21, l22)`` (:func:`gscodec.raster.gradients.chain_rule`,
shared with the CPU backward) is linear in those sums and is applied once per
Gaussian in PyTorch. So there is one atomic per (Gaussian, tile,
sum), not per pixel, with little contention: a Gaussian overlaps few tiles.
A per-Gaussian formulation (one program walking a Gaussian's footprint) would
avoid atomics but needs a second, Gaussian-major intersection list and
suffers load imbalance between small and large Gaussians. The price of the
atomics: gradients may differ in the last bits between runs.
"""

from __future__ import annotations

from types import ModuleType

import torch

from .. import BackendUnavailableError
from ..gradients import chain_rule
from ..params import check_inputs
from .binning import TILE, bin_tiles, gaussian_boxes
from .availability import cuda_problem, resolve_device


def _load_kernels(device: torch.device) -> ModuleType:
    """The kernels module, if it can run on ``device``; else :class:`BackendUnavailableError`."""
    if device.type not in ("cuda", "cpu"):
        raise BackendUnavailableError(f"the Triton backend runs on CUDA tensors, got {device.type} tensors")
    try:
        from . import kernels
    except ImportError as exc:
        raise BackendUnavailableError(f"the Triton backend needs triton, which failed to import: {exc}") from exc
    if device.type == "cpu" and not kernels.INTERPRETED:
        raise BackendUnavailableError(
            "gscodec.raster.triton.rasterize_sum got CPU tensors; move them to a CUDA device, use the 'cpu' "
            "backend, or set TRITON_INTERPRET=1 before triton is first imported to run the Triton kernels "
            f"in the (slow) interpreter. CUDA here: {cuda_problem() or 'available'}"
        )
    return kernels


class _RasterizeSum(torch.autograd.Function):
    """Batched plain-sum rendering with the Triton backward; ``counts`` is a ``(B,)`` int64 tensor."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx,
        means: torch.Tensor,
        chol: torch.Tensor,
        colors: torch.Tensor,
        width: int,
        height: int,
        counts: torch.Tensor,
    ) -> torch.Tensor:
        kernels = _load_kernels(means.device)
        m, l, c = (t.detach().to(torch.float32).contiguous() for t in (means, chol, colors))
        tiles_x, tiles_y = -(-width // TILE), -(-height // TILE)
        centers, radii = gaussian_boxes(m, l, counts, width, height)
        starts, ids = bin_tiles(centers, radii, tiles_x, tiles_y)
        out = kernels.forward(m, l, c, starts, ids, width, height, tiles_x, tiles_y)
        ctx.save_for_backward(m, l, c, starts, ids, radii[..., 0] > 0)
        ctx.size = (width, height, tiles_x, tiles_y)
        ctx.dtypes = (means.dtype, chol.dtype, colors.dtype)
        return out

    @staticmethod
    def backward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx, grad_out: torch.Tensor
    ) -> tuple[torch.Tensor | None, ...]:
        from . import kernels

        m, l, c, starts, ids, binned = ctx.saved_tensors
        width, height, tiles_x, tiles_y = ctx.size
        grad = grad_out.to(torch.float32).contiguous()
        mom = kernels.backward_moments(m, l, c, starts, ids, grad, width, height, tiles_x, tiles_y)
        s1, s2, s11, s12, s22 = mom[..., 3:].unbind(-1)
        one = torch.ones_like(l[..., 0])
        l11 = torch.where(binned, l[..., 0], one)
        l22 = torch.where(binned, l[..., 2], one)
        r = torch.where(binned, l[..., 1], 0.0) / l22
        dx, dy, dl11, dl21, dl22 = chain_rule(l11, l22, r, s1, s2, s11, s12, s22)
        grad_means = torch.stack([dx, dy], -1)
        grad_chol = torch.stack([dl11, dl21, dl22], -1)
        need = ctx.needs_input_grad
        dt_means, dt_chol, dt_colors = ctx.dtypes
        return (
            grad_means.to(dt_means) if need[0] else None,
            grad_chol.to(dt_chol) if need[1] else None,
            mom[..., :3].to(dt_colors) if need[2] else None,
            None,
            None,
            None,
        )


def rasterize_sum(
    means: torch.Tensor,
    chol: torch.Tensor,
    colors: torch.Tensor,
    width: int,
    height: int,
    counts: torch.Tensor | None = None,
) -> torch.Tensor:
    """Render the plain sum of 2D Gaussians at pixel centres with Triton kernels, differentiably.

    Batches are padded: every image has ``N`` slots and ``counts[b]`` says how
    many are used. Fixed ``(B, N, ...)`` shapes suit a batched fitter that
    keeps a per-image Gaussian budget (parameters, Adam state and gradients
    stay one tensor each, no re-packing when budgets change); a packed layout
    with offsets would only save memory when counts vary wildly. Padding costs
    nothing in the kernels: it is never binned.

    Arguments as :func:`gscodec.raster.rasterize_sum` (``counts[b]``: the Gaussians image ``b`` uses; the rest
    is padding and gets zero gradient).

    Returns:
        ``(H, W, 3)`` or ``(B, H, W, 3)`` float32 image, unclamped, on the
        device of ``means``; gradients flow to ``means``, ``chol`` and ``colors``.
        Non-finite or degenerate (``l11 == 0`` or ``l22 == 0``) Gaussians
        contribute nothing and get zero gradients.

    Raises:
        BackendUnavailableError: CUDA tensors without triton, or CPU tensors
            without ``TRITON_INTERPRET=1`` (the kernels then run in the interpreter).
        ValueError: see :func:`gscodec.raster.params.check_inputs`.
    """
    width, height, counts_t = check_inputs(means, chol, colors, width, height, counts)
    batched = means.ndim == 3
    if not batched:
        means, chol, colors = means[None], chol[None], colors[None]
    out = _RasterizeSum.apply(means, chol, colors, width, height, counts_t)
    return out if batched else out[0]

__all__ = ["BackendUnavailableError", "rasterize_sum", "resolve_device"]
