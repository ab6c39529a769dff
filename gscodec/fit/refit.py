"""The quantization-aware end of a fit.

Plain quantization snaps every field of the float fit at once. Colours,
however, enter the image linearly: once the geometry (positions and shapes) is
fixed on the file's grid, the best colours for *that* geometry are a linear
least-squares problem. :func:`quantize_refit` therefore

1. snaps the fit (:func:`gscodec.quantize.snap`: positions and shapes on the
   grid, Morton order),
2. with the positions on the grid, runs a few Adam steps on the still-free
   shapes and colours (:func:`finetune_shapes`), so they absorb the position
   error, and snaps again (now the shapes land on the grid too),
2b. moves positions to neighbouring grid points, then shape codes by single
   steps, where that lowers the error (:func:`gscodec.fit.codes.refine_position_codes`,
   :func:`gscodec.fit.codes.refine_shape_codes`),
3. re-solves the colours for the snapped geometry by conjugate gradients,
   starting from the float colours (batched over images, fast renderer),
4. snaps again (only the colours move; the geometry is already on the grid),
5. moves colour codes by single steps where that lowers the error
   (:mod:`gscodec.fit.codes`),

and keeps, per image, whichever of the plain and the refitted snap renders
closer to the target, so the refit can only help.
"""

from __future__ import annotations

import numpy as np
import torch

from ..gaussians import GaussianImage
from ..metrics import psnr_batch
from ..quantize import Quantization, snap
from ..quantize import morton_order
from ..raster import rasterize_sum
from ..raster.cpu import squared_error_grad, target_blocks
from .adam import adam_step
from .codes import refine_color_codes, refine_position_codes, refine_shape_codes
from .init import MIN_SCALE, SHEAR_LIMIT, chol_from_shape, shape_from_chol, shape_grad, solve_colors


def _padded(gs: list[GaussianImage]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    n_max = max(max(g.count for g in gs), 1)
    counts = torch.tensor([g.count for g in gs], dtype=torch.long)
    means = torch.full((len(gs), n_max, 2), 0.5)
    chol = torch.ones((len(gs), n_max, 3))
    colors = torch.zeros((len(gs), n_max, 3))
    for i, g in enumerate(gs):
        t = g.tensors()
        means[i, : g.count] = t.means
        chol[i, : g.count] = t.chol
        colors[i, : g.count] = t.colors
    return means, chol, colors, counts


def render_batch(gs: list[GaussianImage], backend: str = "cpu") -> torch.Tensor:
    """``(B, H, W, 3)`` unclamped renders of same-size Gaussian images in one rasterizer call."""
    means, chol, colors, counts = _padded(gs)
    with torch.no_grad():
        return rasterize_sum(means, chol, colors, gs[0].width, gs[0].height, counts, backend)


def finetune_shapes(
    means: torch.Tensor,
    chol: torch.Tensor,
    colors: torch.Tensor,
    targets: torch.Tensor,
    counts: torch.Tensor,
    iters: int,
    backend: str = "cpu",
    lr_shape: float = 0.03,
    lr_colors: float = 0.012,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Adam on shapes and colours with the positions held fixed (e.g. already on the position grid).

    All tensors are batched ``(B, N, .)``. Returns the new ``chol`` and ``colors``.
    """
    b, n, _ = means.shape
    h, w = targets.shape[1], targets.shape[2]
    shape = shape_from_chol(chol)
    colors = colors.clone()
    params = [shape, colors]
    lrs = [lr_shape, lr_colors]
    m1 = [torch.zeros_like(p) for p in params]
    m2 = [torch.zeros_like(p) for p in params]
    b1, b2 = 0.9, 0.999
    lo, hi = torch.tensor(MIN_SCALE).log(), torch.tensor(2.0 * max(w, h)).log()
    blocks = target_blocks(targets) if backend == "cpu" else None  # the CPU's fused step
    for t in range(1, iters + 1):
        c = chol_from_shape(shape)
        if blocks is not None:
            _, _, g_chol, g_col = squared_error_grad(means, c, colors, w, h, counts, blocks)
        else:
            c.requires_grad_(True)
            k = colors.detach().requires_grad_(True)
            with torch.enable_grad():
                img = rasterize_sum(means, c, k, w, h, counts, backend)
                g_chol, g_col = torch.autograd.grad(img, (c, k), 2.0 * (img.detach() - targets))
        grads = [shape_grad(g_chol, c.detach(), shape), g_col]
        for p, g, m, v, lr in zip(params, grads, m1, m2, lrs):
            adam_step(p, g, m, v, lr, t, (b1, b2), rate_first=True)
        shape[..., 0].clamp_(lo, hi)
        shape[..., 2].clamp_(lo, hi)
        shape[..., 1].clamp_(-SHEAR_LIMIT, SHEAR_LIMIT)
    return chol_from_shape(shape), colors


def quantize_refit(
    gs: list[GaussianImage],
    targets: torch.Tensor,
    q: Quantization,
    iters: int = 20,
    backend: str = "cpu",
    code_sweeps: int = 24,
    shape_iters: int = 0,
    grid_sweeps: int = 0,
) -> tuple[list[GaussianImage], torch.Tensor]:
    """Snap each fit to the grid of ``q``, refitting colours for the snapped geometry.

    Args:
        gs: float fits, all of the targets' size.
        targets: ``(B, H, W, 3)`` float targets in [0, 1].
        q: the file's quantization.
        iters: conjugate-gradient steps of the colour refit; 0 gives plain snapping.
        code_sweeps: sweeps of :func:`gscodec.fit.codes.refine_color_codes` on the
            snapped colour codes (0 keeps rounding to the nearest code).
        shape_iters: Adam steps on shapes and colours with the positions already
            snapped (:func:`finetune_shapes`) before the shapes are snapped too.
        grid_sweeps: sweeps of :func:`gscodec.fit.codes.refine_position_codes`, then as many of
            :func:`gscodec.fit.codes.refine_shape_codes`, once the geometry is on the grid, before the
            colours are re-solved.
        backend: rasterizer backend.

    Returns:
        The snapped images (each equal to ``snap`` of itself) and their ``(B,)`` PSNR.
    """
    plain = [snap(g, q) for g in gs]
    p_plain = psnr_batch(render_batch(plain, backend), targets)
    if iters <= 0 and shape_iters <= 0:
        return plain, p_plain
    means, chol, _, counts = _padded(plain)
    colors = torch.zeros_like(means[..., :1]).expand(-1, -1, 3).clone()
    float_chol = torch.ones_like(chol)
    for i, g in enumerate(gs):
        order = torch.from_numpy(morton_order(g, q.position_bits))
        t = g.tensors()
        colors[i, : g.count] = t.colors[order]
        float_chol[i, : g.count] = t.chol[order]
    base = plain
    if shape_iters > 0:
        # positions on the grid, shapes and colours still free: let them absorb the position error
        new_chol, colors = finetune_shapes(means, float_chol, colors, targets, counts, shape_iters, backend)
        base = [snap(GaussianImage(p.width, p.height, p.means, new_chol[i, : p.count], colors[i, : p.count]), q)
                for i, p in enumerate(plain)]
        means, chol, _, counts = _padded(base)
    if grid_sweeps > 0:
        # with the geometry on the grid, a neighbouring grid point may suit a Gaussian better than the nearest
        base = [refine_shape_codes(refine_position_codes(
            GaussianImage(p.width, p.height, p.means, p.chol, colors[i, : p.count]), targets[i], q, grid_sweeps),
            targets[i], q, grid_sweeps) for i, p in enumerate(base)]
        means, chol, colors, counts = _padded(base)
    refit = base
    if iters > 0:
        colors = solve_colors(means, chol, colors, targets, iters, backend, counts)
        refit = []
        for i, p in enumerate(base):
            r = snap(GaussianImage(p.width, p.height, p.means, p.chol, colors[i, : p.count]), q)
            if not (np.array_equal(r.means, p.means) and np.array_equal(r.chol, p.chol)):
                r = p  # geometry moved (should not happen): keep the snap without the colour refit
            refit.append(r)
    p_refit = psnr_batch(render_batch(refit, backend), targets)
    better = p_refit > p_plain
    out = [r if bool(better[i]) else p for i, (r, p) in enumerate(zip(refit, plain))]
    if code_sweeps > 0:
        out = [refine_color_codes(g, targets[i], q, code_sweeps, backend=backend) for i, g in enumerate(out)]
        return out, psnr_batch(render_batch(out, backend), targets)
    return out, torch.where(better, p_refit, p_plain)


__all__ = ["finetune_shapes", "quantize_refit", "render_batch"]
