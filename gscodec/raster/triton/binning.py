"""Tile binning: which Gaussians can reach which 16x16 pixel tile, as per-tile Gaussian lists.

Every Gaussian gets an axis-aligned box around its 3-sigma ellipse (half-widths
``3 |l11|`` and ``3 sqrt(l21^2 + l22^2)``: the extremes of ``x + l11 z1`` and
``y + l21 z1 + l22 z2`` over ``z1^2 + z2^2 <= 9``) in gsplat's form: float
centres and integer radii. The box becomes a tile rectangle and each
(image, tile, Gaussian) triple one intersection. Intersections are sorted by
``image * tiles_per_image + tile`` (stably, so each tile lists its Gaussians in
index order) and described by:

* ``starts`` ``(B * T + 1,)`` int32: tile ``t`` of image ``b`` owns
  intersections ``starts[b * T + t] : starts[b * T + t + 1]``;
* ``ids`` ``(M,)`` int32: for each intersection, the flat Gaussian index ``b * N + k``.

Two implementations give identical lists: gsplat's ``isect_tiles`` /
``isect_offset_encode`` (CUDA only) and a pure PyTorch one (any device).
"""

from __future__ import annotations

import warnings

import torch

TILE = 16
"""Tile side in pixels."""

# The box is widened by this many pixels plus this fraction of the coordinate
# magnitudes, so that float32 rounding in the kernels' d2 <= 9 test can never
# accept a pixel outside the binned tiles; extra tiles only cost a failed test.
_PAD_PX = 0.01
_PAD_REL = 1e-5

_gsplat_failed = False


def gaussian_boxes(
    means: torch.Tensor, chol: torch.Tensor, counts: torch.Tensor, width: int, height: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Bounding boxes of the Gaussians' 3-sigma ellipses, as gsplat's ``(means2d, radii)``.

    Args:
        means: ``(B, N, 2)`` centres ``(x, y)`` in pixels.
        chol: ``(B, N, 3)`` Cholesky factors ``(l11, l21, l22)``.
        counts: ``(B,)`` int Gaussians used per image (the rest is padding).
        width, height: image size in pixels.

    Returns:
        ``centers`` ``(B, N, 2)`` float32 and ``radii`` ``(B, N, 2)`` int32:
        the box ``[centers - radii, centers + radii]`` holds every pixel centre
        the Gaussian can reach. Boxes are clipped to one tile beyond the image so
        that the numbers stay small. ``radii`` is 0 for padding, for non-finite
        or degenerate (``l11 == 0`` or ``l22 == 0``) Gaussians, which contribute
        nothing, and for boxes that miss the clipped area.
    """
    m = means.detach().double()
    l = chol.detach().double()
    l11, l21, l22 = l.unbind(-1)
    half = torch.stack([3.0 * l11.abs(), 3.0 * torch.hypot(l21, l22)], -1)
    pad = _PAD_PX + _PAD_REL * (m.abs().sum(-1, keepdim=True) + half.sum(-1, keepdim=True))
    low = torch.full_like(m, -float(TILE))
    high = torch.tensor([width + TILE, height + TILE], dtype=m.dtype, device=m.device).expand_as(m)
    lo = torch.minimum(torch.maximum(m - half - pad, low), high)
    hi = torch.minimum(torch.maximum(m + half + pad, low), high)
    n = means.shape[1]
    used = torch.arange(n, device=means.device)[None, :] < counts.to(means.device)[:, None]
    valid = (
        used
        & torch.isfinite(m).all(-1)
        & torch.isfinite(l).all(-1)
        & (l11 != 0)
        & (l22 != 0)
        & (hi > lo).all(-1)
    )[..., None]
    centers = torch.where(valid, 0.5 * (lo + hi), 0.0).float()
    # The 1e-3 px covers the float32 rounding of the centre.
    radii = torch.where(valid, torch.ceil(0.5 * (hi - lo) + 1e-3), 0.0).int()
    return centers, radii


def _tile_rects(
    centers: torch.Tensor, radii: torch.Tensor, tiles_x: int, tiles_y: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Half-open tile rectangles ``[lo, hi)`` ``(B, N, 2)`` int64, with gsplat's float32 arithmetic."""
    c = centers / TILE
    r = radii.float() / TILE
    limit = torch.tensor([tiles_x, tiles_y], device=centers.device)
    lo = torch.minimum(torch.floor(c - r).clamp(min=0).long(), limit)
    hi = torch.minimum(torch.ceil(c + r).clamp(min=0).long(), limit)
    hi = torch.where((radii > 0).all(-1, keepdim=True), hi, lo)
    return lo, hi


def bin_tiles_torch(
    centers: torch.Tensor, radii: torch.Tensor, tiles_x: int, tiles_y: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-tile Gaussian lists in pure PyTorch (any device); see the module docstring.

    Args:
        centers: ``(B, N, 2)`` float32 box centres; radii: ``(B, N, 2)`` int32 box radii (0: skip).
        tiles_x, tiles_y: tiles per image row and column.

    Returns:
        ``starts`` ``(B * T + 1,)`` int32 and ``ids`` ``(M,)`` int32, ``T = tiles_x * tiles_y``.
    """
    b, n = centers.shape[:2]
    device = centers.device
    per_image = tiles_x * tiles_y
    lo, hi = _tile_rects(centers, radii, tiles_x, tiles_y)
    span = (hi - lo).reshape(-1, 2)
    lo = lo.reshape(-1, 2)
    per_gaussian = span[:, 0] * span[:, 1]
    total = int(per_gaussian.sum()) if per_gaussian.numel() else 0
    if total >= 2**31:
        raise RuntimeError(f"{total} tile intersections exceed int32 indexing; render in smaller batches")
    if total == 0:
        return torch.zeros(b * per_image + 1, dtype=torch.int32, device=device), torch.zeros(
            0, dtype=torch.int32, device=device
        )
    gid = torch.repeat_interleave(torch.arange(b * n, device=device), per_gaussian, output_size=total)
    first = torch.cumsum(per_gaussian, 0) - per_gaussian
    local = torch.arange(total, device=device) - first[gid]
    wide = span[gid, 0]
    tx = lo[gid, 0] + local % wide
    ty = lo[gid, 1] + local // wide
    key = (gid // n) * per_image + ty * tiles_x + tx
    key, order = torch.sort(key, stable=True)
    ids = gid[order].int()
    starts = torch.zeros(b * per_image + 1, dtype=torch.int64, device=device)
    starts[1:] = torch.cumsum(torch.bincount(key, minlength=b * per_image), 0)
    return starts.int(), ids


def bin_tiles_gsplat(
    centers: torch.Tensor, radii: torch.Tensor, tiles_x: int, tiles_y: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The same lists as :func:`bin_tiles_torch` from gsplat's CUDA ``isect_tiles`` / ``isect_offset_encode``.

    All depths are zero, so gsplat's (stable radix) sort orders each tile by Gaussian index.
    CUDA tensors only; gsplat builds or loads its CUDA extension on the first call.
    """
    if not centers.is_cuda:
        raise ValueError(f"gsplat's tile binning runs on CUDA tensors only, got {centers.device} tensors")
    from gsplat import isect_offset_encode, isect_tiles

    b, n = centers.shape[:2]
    if b * n == 0:
        return bin_tiles_torch(centers, radii, tiles_x, tiles_y)
    depths = torch.zeros(centers.shape[:2], dtype=torch.float32, device=centers.device)
    _, isect_ids, flatten_ids = isect_tiles(
        centers.contiguous(), radii.contiguous(), depths, TILE, tiles_x, tiles_y, sort=True
    )
    offsets = isect_offset_encode(isect_ids, b, tiles_x, tiles_y)
    end = torch.tensor([flatten_ids.numel()], dtype=torch.int32, device=centers.device)
    return torch.cat([offsets.reshape(-1).int(), end]), flatten_ids.int()


def gsplat_can_bin(batch: int, n: int, tiles_x: int, tiles_y: int) -> bool:
    """Whether gsplat's binning fits its id encoding (image and tile bits share 32) and int32 flat ids."""
    return batch >= 1 and batch.bit_length() + (tiles_x * tiles_y).bit_length() <= 32 and batch * n < 2**31


def bin_tiles(
    centers: torch.Tensor, radii: torch.Tensor, tiles_x: int, tiles_y: int, method: str = "auto"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-tile Gaussian lists ``(starts, ids)`` by ``method``: ``"gsplat"``, ``"torch"`` or ``"auto"``.

    ``"auto"`` uses gsplat for CUDA tensors when its encoding fits (falling
    back to PyTorch with a warning if gsplat's CUDA extension cannot load) and
    PyTorch otherwise; gsplat is never imported for CPU tensors.
    """
    global _gsplat_failed
    if method == "torch":
        return bin_tiles_torch(centers, radii, tiles_x, tiles_y)
    if method == "gsplat":
        return bin_tiles_gsplat(centers, radii, tiles_x, tiles_y)
    if method != "auto":
        raise ValueError(f"unknown binning method {method!r}; valid: auto, gsplat, torch")
    if centers.is_cuda and not _gsplat_failed and gsplat_can_bin(*centers.shape[:2], tiles_x, tiles_y):
        try:
            return bin_tiles_gsplat(centers, radii, tiles_x, tiles_y)
        except Exception as exc:  # noqa: BLE001 - any failure to build/load gsplat's extension
            _gsplat_failed = True
            warnings.warn(f"gsplat tile binning unavailable ({exc!r}); using the PyTorch binning", stacklevel=2)
    return bin_tiles_torch(centers, radii, tiles_x, tiles_y)


__all__ = ["TILE", "bin_tiles", "bin_tiles_gsplat", "bin_tiles_torch", "gaussian_boxes", "gsplat_can_bin"]
