"""Triton kernels of the plain-sum rasterizer over binned 16x16 tiles.

Importing this module imports triton (nothing is compiled until a launch). With
``TRITON_INTERPRET=1`` set before triton is imported, the kernels are built for
the Triton interpreter and run on CPU tensors (slowly): :data:`INTERPRETED`.

Both kernels run one program per (image, tile), i.e. a grid of ``B * T``
programs; a program covers the tile's 256 pixels as one flat block and walks
the tile's Gaussian list in chunks of ``BLOCK_G``, evaluating a
``(BLOCK_G, 256)`` block of weights at a time.

The per-pixel ``d2`` follows the reference's operation order in float32 with
IEEE division (``div_rn``) and no FMA contraction (launched with
``enable_fp_fusion=False``), so the ``d2 <= 9`` cutoff agrees with the
float32 reference pixel for pixel; only ``exp`` may differ in the last bits.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ...limits import CUTOFF_SQ
from .binning import TILE

# An (8, 256) block with 4 warps keeps both kernels free of register spills
# (ptxas for sm_80: 91 registers forward, 139 backward); 16 or 32 Gaussians per
# step need 160-250 registers or spill.
BLOCK_G = 8
"""Gaussians evaluated together per step of a tile's list (on a GPU)."""

INTERPRETER_BLOCK_G = 128
"""The same in the Triton interpreter, where every step costs Python overhead
rather than registers: 128 runs a fitting step about 3.5x faster than 8
(a 64x64 image, 200 Gaussians), at the same results up to summation order."""

NUM_WARPS = 4
MOMENTS = 8
"""Per-Gaussian backward accumulators: ``(g_r, g_g, g_b, S[z1], S[z2], S[z1 z1], S[z1 z2], S[z2 z2])``."""


@triton.jit
def _tile_pixels(pid, tiles_x, tiles_per_image, width, height, TILE: tl.constexpr):
    """Image index, flat ``(TILE * TILE,)`` pixel offsets into an image, in-image mask and pixel centres."""
    b = pid // tiles_per_image
    t = pid - b * tiles_per_image
    p = tl.arange(0, TILE * TILE)
    px = (t % tiles_x) * TILE + p % TILE
    py = (t // tiles_x) * TILE + p // TILE
    inside = (px < width) & (py < height)
    pix = (b.to(tl.int64) * height + py) * width + px
    return pix, inside, px.to(tl.float32) + 0.5, py.to(tl.float32) + 0.5


@triton.jit
def _weights(means_ptr, chol_ptr, ids_ptr, k, live, inside, cx, cy, CUTOFF: tl.constexpr):
    """Gaussians ``ids[k]`` (``(BLOCK_G,)``, masked by ``live``) at the tile's pixel centres.

    Returns flat Gaussian indices, ``z1``, ``z2``, the hit mask ``d2 <= CUTOFF``
    and the weights ``exp(-d2 / 2)`` (0 off the mask), all ``(BLOCK_G, TILE * TILE)``.
    """
    fid = tl.load(ids_ptr + k, mask=live, other=0).to(tl.int64)
    x = tl.load(means_ptr + 2 * fid, mask=live, other=0.0)
    y = tl.load(means_ptr + 2 * fid + 1, mask=live, other=0.0)
    l11 = tl.load(chol_ptr + 3 * fid, mask=live, other=1.0)
    l21 = tl.load(chol_ptr + 3 * fid + 1, mask=live, other=0.0)
    l22 = tl.load(chol_ptr + 3 * fid + 2, mask=live, other=1.0)
    dx = cx[None, :] - x[:, None]
    dy = cy[None, :] - y[:, None]
    z1 = tl.math.div_rn(dx, l11[:, None])
    z2 = tl.math.div_rn(dy - l21[:, None] * z1, l22[:, None])
    d2 = z1 * z1 + z2 * z2
    hit = (d2 <= CUTOFF) & live[:, None] & inside[None, :]
    w = tl.where(hit, tl.exp(-0.5 * d2), 0.0)
    return fid, z1, z2, hit, w


@triton.jit
def _forward_kernel(
    means_ptr, chol_ptr, colors_ptr, starts_ptr, ids_ptr, out_ptr,
    width, height, tiles_x, tiles_per_image,
    CUTOFF: tl.constexpr, TILE: tl.constexpr, BLOCK_G: tl.constexpr,
):
    pid = tl.program_id(0)
    pix, inside, cx, cy = _tile_pixels(pid, tiles_x, tiles_per_image, width, height, TILE)
    start = tl.load(starts_ptr + pid)
    end = tl.load(starts_ptr + pid + 1)
    acc_r = tl.zeros((TILE * TILE,), dtype=tl.float32)
    acc_g = tl.zeros((TILE * TILE,), dtype=tl.float32)
    acc_b = tl.zeros((TILE * TILE,), dtype=tl.float32)
    for s in range(start, end, BLOCK_G):
        k = s + tl.arange(0, BLOCK_G)
        live = k < end
        fid, z1, z2, hit, w = _weights(means_ptr, chol_ptr, ids_ptr, k, live, inside, cx, cy, CUTOFF)
        c_r = tl.load(colors_ptr + 3 * fid, mask=live, other=0.0)
        c_g = tl.load(colors_ptr + 3 * fid + 1, mask=live, other=0.0)
        c_b = tl.load(colors_ptr + 3 * fid + 2, mask=live, other=0.0)
        acc_r += tl.sum(w * c_r[:, None], axis=0)
        acc_g += tl.sum(w * c_g[:, None], axis=0)
        acc_b += tl.sum(w * c_b[:, None], axis=0)
    tl.store(out_ptr + 3 * pix, acc_r, mask=inside)
    tl.store(out_ptr + 3 * pix + 1, acc_g, mask=inside)
    tl.store(out_ptr + 3 * pix + 2, acc_b, mask=inside)


@triton.jit
def _backward_kernel(
    means_ptr, chol_ptr, colors_ptr, starts_ptr, ids_ptr, grad_ptr, moments_ptr,
    width, height, tiles_x, tiles_per_image,
    CUTOFF: tl.constexpr, TILE: tl.constexpr, BLOCK_G: tl.constexpr,
):
    pid = tl.program_id(0)
    pix, inside, cx, cy = _tile_pixels(pid, tiles_x, tiles_per_image, width, height, TILE)
    g_r = tl.load(grad_ptr + 3 * pix, mask=inside, other=0.0)
    g_g = tl.load(grad_ptr + 3 * pix + 1, mask=inside, other=0.0)
    g_b = tl.load(grad_ptr + 3 * pix + 2, mask=inside, other=0.0)
    start = tl.load(starts_ptr + pid)
    end = tl.load(starts_ptr + pid + 1)
    for s in range(start, end, BLOCK_G):
        k = s + tl.arange(0, BLOCK_G)
        live = k < end
        fid, z1, z2, hit, w = _weights(means_ptr, chol_ptr, ids_ptr, k, live, inside, cx, cy, CUTOFF)
        c_r = tl.load(colors_ptr + 3 * fid, mask=live, other=0.0)
        c_g = tl.load(colors_ptr + 3 * fid + 1, mask=live, other=0.0)
        c_b = tl.load(colors_ptr + 3 * fid + 2, mask=live, other=0.0)
        # a = dL/dd2; the where() keeps 0 * inf off the masked-out pixels.
        a = -0.5 * w * (g_r[None, :] * c_r[:, None] + g_g[None, :] * c_g[:, None] + g_b[None, :] * c_b[:, None])
        az1 = tl.where(hit, a * z1, 0.0)
        az2 = tl.where(hit, a * z2, 0.0)
        dst = moments_ptr + 8 * fid
        tl.atomic_add(dst, tl.sum(w * g_r[None, :], axis=1), mask=live, sem="relaxed")
        tl.atomic_add(dst + 1, tl.sum(w * g_g[None, :], axis=1), mask=live, sem="relaxed")
        tl.atomic_add(dst + 2, tl.sum(w * g_b[None, :], axis=1), mask=live, sem="relaxed")
        tl.atomic_add(dst + 3, tl.sum(az1, axis=1), mask=live, sem="relaxed")
        tl.atomic_add(dst + 4, tl.sum(az2, axis=1), mask=live, sem="relaxed")
        tl.atomic_add(dst + 5, tl.sum(tl.where(hit, az1 * z1, 0.0), axis=1), mask=live, sem="relaxed")
        tl.atomic_add(dst + 6, tl.sum(tl.where(hit, az1 * z2, 0.0), axis=1), mask=live, sem="relaxed")
        tl.atomic_add(dst + 7, tl.sum(tl.where(hit, az2 * z2, 0.0), axis=1), mask=live, sem="relaxed")


def _is_interpreted() -> bool:
    try:
        from triton.runtime.interpreter import InterpretedFunction
    except ImportError:
        return False
    return isinstance(_forward_kernel, InterpretedFunction)


INTERPRETED = _is_interpreted()
"""Whether the kernels were built for the Triton interpreter (``TRITON_INTERPRET=1`` at import)."""


def _block_g() -> int:
    return INTERPRETER_BLOCK_G if INTERPRETED else BLOCK_G


def forward(
    means: torch.Tensor,
    chol: torch.Tensor,
    colors: torch.Tensor,
    starts: torch.Tensor,
    ids: torch.Tensor,
    width: int,
    height: int,
    tiles_x: int,
    tiles_y: int,
) -> torch.Tensor:
    """Render ``(B, H, W, 3)`` float32 from contiguous float32 ``(B, N, 2|3|3)`` parameters and tile lists."""
    b = means.shape[0]
    out = torch.empty((b, height, width, 3), dtype=torch.float32, device=means.device)
    grid = b * tiles_x * tiles_y
    if grid:
        _forward_kernel[(grid,)](
            means, chol, colors, starts, ids, out,
            width, height, tiles_x, tiles_x * tiles_y,
            CUTOFF=CUTOFF_SQ, TILE=TILE, BLOCK_G=_block_g(), num_warps=NUM_WARPS, enable_fp_fusion=False,
        )
    return out


def backward_moments(
    means: torch.Tensor,
    chol: torch.Tensor,
    colors: torch.Tensor,
    starts: torch.Tensor,
    ids: torch.Tensor,
    grad_out: torch.Tensor,
    width: int,
    height: int,
    tiles_x: int,
    tiles_y: int,
) -> torch.Tensor:
    """Per-Gaussian footprint sums ``(B, N, 8)`` (:data:`MOMENTS`) for the upstream ``grad_out`` ``(B, H, W, 3)``.

    With ``w = exp(-d2 / 2)``, ``G`` the upstream gradient at a pixel and
    ``a = dL/dd2 = -w dot(G, color) / 2``: ``g_c = sum(w G_c)`` and ``S[f] = sum(a f)``.
    """
    b, n = means.shape[:2]
    moments = torch.zeros((b, n, MOMENTS), dtype=torch.float32, device=means.device)
    grid = b * tiles_x * tiles_y
    if grid and ids.numel():
        _backward_kernel[(grid,)](
            means, chol, colors, starts, ids, grad_out, moments,
            width, height, tiles_x, tiles_x * tiles_y,
            CUTOFF=CUTOFF_SQ, TILE=TILE, BLOCK_G=_block_g(), num_warps=NUM_WARPS, enable_fp_fusion=False,
        )
    return moments


__all__ = ["BLOCK_G", "INTERPRETED", "INTERPRETER_BLOCK_G", "MOMENTS", "backward_moments", "forward"]
