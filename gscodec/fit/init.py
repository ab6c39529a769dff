"""Initialization of a fit: where the Gaussians start, how large, and with which colours.

Two placements, both batched over ``B`` same-size targets ``(B, H, W, 3)``:

* :func:`grid_init`: the paper's structured initialization, one isotropic
  Gaussian per cell of a regular grid (sigma proportional to the cell size).
* :func:`adaptive_init`: Image-GS-style content-adaptive placement, centres
  sampled in proportion to the blurred gradient magnitude plus a uniform share,
  sigma from the local sampling density.

Because the image is a plain *sum*, a Gaussian's colour is not the colour of
the image under it: overlapping Gaussians add up. Colours are therefore solved
for the fixed geometry with :func:`solve_colors` (conjugate gradients on the
normal equations; the render is linear in the colours).

:func:`sample_by_error` is the error-guided placement used by densification
and by the re-spending of pruned Gaussians.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch

from ..raster import rasterize_sum
from ..raster.cpu import squared_error_grad, target_blocks
from .targets import gaussian_blur, luminance

MIN_SCALE = 0.3
"""Smallest Cholesky diagonal (px) the fitter creates or optimizes to; smaller
Gaussians fall between pixel centres and stop being trainable."""

MIN_ENERGY = 0.05
"""Floor of :func:`color_energy`: a Gaussian of :data:`MIN_SCALE` in both axes has about 0.28."""


def grid_shape(n: int, width: int, height: int) -> tuple[int, int]:
    """Columns and rows ``(gx, gy)`` of the largest grid with ``gx * gy <= n`` and cells about square."""
    n = max(int(n), 1)
    gx = min(max(1, round(math.sqrt(n * width / height))), n)
    gy = max(1, n // gx)
    return gx, gy


def mean_spacing(n: int, width: int, height: int) -> float:
    """Mean distance (px) between neighbouring Gaussians when ``n`` tile the image evenly."""
    return math.sqrt(width * height / max(n, 1))


def _gradient_magnitude(target: torch.Tensor, blur: float) -> torch.Tensor:
    """``(B, H, W)`` gradient magnitude of the (slightly smoothed) colour image, blurred by ``blur`` px."""
    x = target.permute(0, 3, 1, 2)
    x = gaussian_blur(x, 0.7)
    pad = torch.nn.functional.pad(x, (1, 1, 1, 1), mode="replicate")
    gx = 0.5 * (pad[:, :, 1:-1, 2:] - pad[:, :, 1:-1, :-2])
    gy = 0.5 * (pad[:, :, 2:, 1:-1] - pad[:, :, :-2, 1:-1])
    g = (gx * gx + gy * gy).sum(1, keepdim=True).sqrt()
    return gaussian_blur(g, blur)[:, 0]


def _normalise(m: torch.Tensor, uniform_share: float) -> torch.Tensor:
    """``(B, H, W)`` probability maps: ``(1 - u) * m / sum(m) + u / (H W)`` (uniform where ``m`` is all zero)."""
    b, h, w = m.shape
    flat = m.reshape(b, -1).clamp_min(0)
    total = flat.sum(1, keepdim=True, dtype=torch.float64).to(flat.dtype)  # float64: no dependence on the threads
    uniform = torch.full_like(flat, 1.0 / (h * w))
    p = torch.where(total > 0, flat / total.clamp_min(1e-30), uniform)
    p = (1.0 - uniform_share) * p + uniform_share * uniform
    return p.reshape(b, h, w)


def sample_pixels(p: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """``(k, 2)`` positions ``(x, y)`` sampled from the ``(H, W)`` map ``p``, jittered inside the pixel.

    Pixels are drawn without replacement while there are enough of them. The
    draw runs on the CPU with the CPU ``generator`` whatever the device of
    ``p``, so a fit samples alike on every device; the result is on ``p``'s device.
    """
    h, w = p.shape
    flat = p.reshape(-1).double().cpu().clamp_min(0)
    if float(flat.sum()) <= 0:
        flat = torch.ones_like(flat)
    positive = int((flat > 0).sum())
    if k > positive:
        idx = torch.multinomial(flat, k, replacement=True, generator=generator)
    else:
        idx = _draw_distinct(flat, k, generator)
    jitter = torch.rand((k, 2), generator=generator, dtype=torch.float64, device="cpu")
    x = (idx % w).double() + jitter[:, 0]
    y = torch.div(idx, w, rounding_mode="floor").double() + jitter[:, 1]
    return torch.stack([x, y], 1).float().to(p.device)


def _draw_distinct(weights: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """``(k,)`` distinct indices drawn one after another in proportion to ``weights`` (float64, at least ``k``
    of them positive) among those not drawn yet: draws with replacement by the inverse CDF, each repeat
    dropped, which is the same distribution as ``torch.multinomial`` without replacement, at a fraction of its
    cost (a cumulative sum and ``k log n`` searches instead of a pass over all ``n`` weights per draw)."""
    cdf = torch.cumsum(weights, 0).numpy()
    total = cdf[-1]
    drawn = np.empty(0, dtype=np.int64)
    while True:
        u = torch.rand(k + k // 4 + 16, generator=generator, dtype=torch.float64).numpy()
        more = np.minimum(np.searchsorted(cdf, u * total, side="right"), len(cdf) - 1)
        drawn = np.concatenate([drawn, more])
        _, first = np.unique(drawn, return_index=True)
        if len(first) >= k:
            return torch.from_numpy(drawn[np.sort(first)[:k]])


def _lookup(img: torch.Tensor, xy: torch.Tensor) -> torch.Tensor:
    """Values of the ``(H, W, ...)`` map ``img`` at the pixels containing the positions ``(k, 2)``."""
    h, w = img.shape[0], img.shape[1]
    j = xy[:, 0].floor().long().clamp(0, w - 1)
    i = xy[:, 1].floor().long().clamp(0, h - 1)
    return img[i, j]


def density_scale(density: torch.Tensor, xy: torch.Tensor, factor: float, width: int, height: int) -> torch.Tensor:
    """``(k,)`` isotropic sigma ``factor / sqrt(density)`` at ``xy``, for a map of Gaussians per pixel."""
    d = _lookup(density, xy).clamp_min(1e-12)
    s = factor / d.sqrt()
    return s.clamp(MIN_SCALE * 2, 0.5 * max(width, height))


def _generators(generator, b: int) -> list[torch.Generator]:
    if isinstance(generator, torch.Generator):
        return [generator] * b
    if len(generator) != b:
        raise ValueError(f"need one generator per image ({b}), got {len(generator)}")
    return list(generator)


def grid_init(target: torch.Tensor, n: int, scale: float, generator, uniform_share: float = 0.3,
              grad_blur: float = 2.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Structured grid placement of ``n`` Gaussians per image.

    The largest about-square grid with at most ``n`` cells gets one isotropic
    Gaussian per cell (sigma = ``scale`` times the cell size, colour = cell mean
    divided by the grid's overlap sum); any remainder (``n`` not a product of
    the grid) is placed content-adaptively.

    Returns ``means (B, n, 2)``, ``chol (B, n, 3)``, ``colors (B, n, 3)``.
    """
    b, h, w, _ = target.shape
    gx, gy = grid_shape(n, w, h)
    cw, chh = w / gx, h / gy
    xs = (torch.arange(gx, dtype=torch.float32) + 0.5) * cw
    ys = (torch.arange(gy, dtype=torch.float32) + 0.5) * chh
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    means = torch.stack([xx.reshape(-1), yy.reshape(-1)], 1).expand(b, -1, -1)
    chol = torch.tensor([max(scale * cw, MIN_SCALE), 0.0, max(scale * chh, MIN_SCALE)]).expand(b, gx * gy, 3)
    cells = torch.nn.functional.adaptive_avg_pool2d(target.permute(0, 3, 1, 2), (gy, gx))
    overlap = 2 * math.pi * scale * scale  # sum of a regular grid of unit Gaussians at any point
    colors = cells.permute(0, 2, 3, 1).reshape(b, gx * gy, 3) / max(overlap, 1.0)
    rest = n - gx * gy
    if rest > 0:
        m2, c2, k2 = adaptive_init(target, rest, scale, generator, uniform_share, grad_blur, total=n)
        means = torch.cat([means, m2], 1)
        chol = torch.cat([chol, c2], 1)
        colors = torch.cat([colors, k2], 1)
    return means.contiguous(), chol.contiguous(), colors.contiguous()


def adaptive_init(target: torch.Tensor, n: int, scale: float, generator, uniform_share: float = 0.3,
                  grad_blur: float = 2.0, total: int | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Content-adaptive placement of ``n`` Gaussians per image (Image-GS).

    Centres are sampled from ``(1 - uniform_share) * gradient + uniform_share``
    (gradient magnitude blurred by ``grad_blur`` px); each Gaussian is isotropic
    with sigma = ``scale`` over the square root of the local sampling density
    (smoothed over the mean spacing) and takes the image colour at its centre
    divided by the local overlap sum. ``total`` is the count the density refers
    to (default ``n``). ``generator``: one ``torch.Generator`` for the batch
    or a list with one per image.

    Returns ``means (B, n, 2)``, ``chol (B, n, 3)``, ``colors (B, n, 3)``.
    """
    b, h, w, _ = target.shape
    total = n if total is None else total
    p = _normalise(_gradient_magnitude(target, grad_blur), uniform_share)
    spacing = mean_spacing(total, w, h)
    smooth = _normalise(gaussian_blur(p[:, None], 0.5 * spacing)[:, 0], 0.0)
    blurred = gaussian_blur(target.permute(0, 3, 1, 2), 0.5).permute(0, 2, 3, 1)
    overlap = max(2 * math.pi * scale * scale, 1.0)
    gens = _generators(generator, b)
    means, chol, colors = [], [], []
    for i in range(b):
        xy = sample_pixels(p[i], n, gens[i])
        s = density_scale(smooth[i] * total, xy, scale, w, h)
        means.append(xy)
        chol.append(torch.stack([s, torch.zeros_like(s), s], 1))
        colors.append(_lookup(blurred[i], xy) / overlap)
    return torch.stack(means), torch.stack(chol), torch.stack(colors)


def sample_by_error(error: torch.Tensor, k: int, generator: torch.Generator, blur: float) -> torch.Tensor:
    """``(k, 2)`` new centres sampled in proportion to the ``(H, W)`` squared-error map blurred by ``blur`` px."""
    e = gaussian_blur(error[None, None], blur)[0, 0]
    return sample_pixels(e, k, generator)


def local_density(means: torch.Tensor, count: int, width: int, height: int, blur: float) -> torch.Tensor:
    """``(H, W)`` Gaussians per pixel around each pixel: the first ``count`` centres splatted and blurred."""
    m = means[:count]
    j = m[:, 0].floor().long().clamp(0, width - 1)
    i = m[:, 1].floor().long().clamp(0, height - 1)
    img = torch.zeros(height * width, dtype=torch.float32)
    img.index_add_(0, i * width + j, torch.ones(count, dtype=torch.float32))
    return gaussian_blur(img.view(1, 1, height, width), blur)[0, 0]


def _normal_autograd(means: torch.Tensor, chol: torch.Tensor, w: int, h: int, counts: torch.Tensor | None,
                     backend: str) -> Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor]:
    """``normal(c, rhs)``: ``A^T (A c)`` if ``rhs`` is None, else ``A^T (rhs - A c)``, through autograd."""

    def normal(c: torch.Tensor, rhs_image: torch.Tensor | None) -> torch.Tensor:
        c = c.detach().requires_grad_(True)
        with torch.enable_grad():
            img = rasterize_sum(means, chol, c, w, h, counts, backend)
            go = img.detach() if rhs_image is None else rhs_image - img.detach()
            (g,) = torch.autograd.grad(img, c, go)
        return g

    return normal


def solve_colors(
    means: torch.Tensor,
    chol: torch.Tensor,
    colors: torch.Tensor,
    target: torch.Tensor,
    iters: int,
    backend: str,
    counts: torch.Tensor | None = None,
    ridge: float = 1e-4,
) -> torch.Tensor:
    """Least-squares colours for fixed geometry, by ``iters`` preconditioned conjugate-gradient steps.

    Minimises ``||render(colors) - target||^2 + ridge * ||colors||^2`` per
    image, starting from ``colors``; each step costs one forward and one
    backward pass of the rasterizer. The preconditioner is the normal
    matrix's diagonal, each Gaussian's ``sum of weight^2`` over the pixels,
    taken as its integral ``pi * l11 * l22`` (:func:`color_energy`): the
    Gaussians' sizes span two to three orders of magnitude in that energy,
    which plain CG pays for in steps (on 224x224 and native-size fits it
    needs 2-4x as many for the same error). All tensors are batched
    ``(B, N, .)``; padding beyond ``counts`` stays zero. Returns the new
    ``(B, N, 3)`` colours.
    """
    b, n, _ = means.shape
    h, w = target.shape[1], target.shape[2]
    means = means.detach()
    chol = chol.detach()
    x = colors.detach().clone()
    if counts is not None:
        valid = (torch.arange(n)[None, :] < counts[:, None]).float()[..., None]
        x = x * valid
    if iters <= 0 or n == 0:
        return x

    if backend == "cpu":  # the fused step: its gradient is 2 A^T (A c - target)
        blocks = target_blocks(target)
        zeros = np.zeros_like(blocks)
        n_used = counts if counts is not None else torch.full((b,), n, dtype=torch.long)

        def normal(c: torch.Tensor, rhs_image: torch.Tensor | None) -> torch.Tensor:
            if rhs_image is None:
                return squared_error_grad(means, chol, c, w, h, n_used, zeros)[3].mul_(0.5)
            return squared_error_grad(means, chol, c, w, h, n_used, blocks)[3].mul_(-0.5)
    else:
        normal = _normal_autograd(means, chol, w, h, counts, backend)

    inv_diag = 1.0 / (color_energy(chol) + ridge)[..., None]
    r = normal(x, target) - ridge * x
    z = inv_diag * r
    p = z.clone()
    rz = (r * z).sum((1, 2), keepdim=True)
    for _ in range(iters):
        ap = normal(p, None) + ridge * p
        denom = (p * ap).sum((1, 2), keepdim=True)
        alpha = torch.where(denom > 0, rz / denom.clamp_min(1e-30), torch.zeros_like(rz))
        x = x + alpha * p
        r = r - alpha * ap
        z = inv_diag * r
        rz_new = (r * z).sum((1, 2), keepdim=True)
        beta = torch.where(rz > 0, rz_new / rz.clamp_min(1e-30), torch.zeros_like(rz))
        p = z + beta * p
        rz = rz_new
    return x


def color_energy(chol: torch.Tensor) -> torch.Tensor:
    """``(..., 3)`` Cholesky factors to ``(...)``: ``pi * |l11 * l22|``, the integral of a Gaussian's squared weight.

    ``exp(-d2 / 2)^2`` integrates to ``pi * |det L|`` over the plane; the
    renderer's cutoff at ``d2 = CUTOFF_SQ`` leaves out a share
    ``exp(-CUTOFF_SQ)``. Floored at ``MIN_ENERGY`` (padding rows have zeros).
    """
    return (math.pi * chol[..., 0] * chol[..., 2]).abs().clamp_min(MIN_ENERGY)


SHEAR_LIMIT = 6.0
"""Largest |l21 / l22| the optimizer allows."""


def chol_from_shape(shape: torch.Tensor) -> torch.Tensor:
    """``(..., 3)`` Cholesky factors from the optimizer's ``(log l11, shear = l21 / l22, log l22)``."""
    l11 = shape[..., 0].exp()
    l22 = shape[..., 2].exp()
    return torch.stack([l11, shape[..., 1] * l22, l22], -1)


def shape_from_chol(chol: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`chol_from_shape` (diagonal floored at :data:`MIN_SCALE`, shear clamped)."""
    l11 = chol[..., 0].clamp_min(MIN_SCALE)
    l22 = chol[..., 2].clamp_min(MIN_SCALE)
    return torch.stack([l11.log(), (chol[..., 1] / l22).clamp(-SHEAR_LIMIT, SHEAR_LIMIT), l22.log()], -1)


def shape_grad(g_chol: torch.Tensor, chol: torch.Tensor, shape: torch.Tensor) -> torch.Tensor:
    """Chain rule from a gradient w.r.t. ``chol`` to one w.r.t. the ``shape`` parametrization."""
    l11 = chol[..., 0]
    l22 = chol[..., 2]
    return torch.stack(
        [g_chol[..., 0] * l11, g_chol[..., 1] * l22, g_chol[..., 1] * shape[..., 1] * l22 + g_chol[..., 2] * l22], -1
    )


def luminance_abs(colors: torch.Tensor) -> torch.Tensor:
    """Luminance of the absolute colour, ``0.2126|R| + 0.7152|G| + 0.0722|B|`` (the pruning criterion)."""
    return luminance(colors.abs())


__all__ = [
    "MIN_SCALE",
    "SHEAR_LIMIT",
    "adaptive_init",
    "chol_from_shape",
    "color_energy",
    "density_scale",
    "grid_init",
    "grid_shape",
    "local_density",
    "luminance_abs",
    "mean_spacing",
    "sample_by_error",
    "sample_pixels",
    "shape_from_chol",
    "shape_grad",
    "solve_colors",
]
