"""Cell pooling: the trunk's patch tokens as sums of per-Gaussian, per-cell terms.

A ViT's patch embedding is linear in the pixels of each patch, and a `.gsi`
image is the plain sum of its Gaussians, so every patch token is a sum over
the Gaussians that reach the patch of a term that depends only on that
Gaussian: its offset from the patch (cell) and its shape, times its colour.
Cell pooling learns that term instead of attending:

* pairs: every Gaussian with every cell of the K-slot grid that its 3-sigma
  box (the decoder's cut-off, spec section 8) touches;
* per pair, an MLP of the Gaussian's mean relative to the cell's centre and
  its shape, both in cell units (``dx, dy, log sigma1, log sigma2, cos 2theta,
  sin 2theta``, the Mahalanobis distance of the cell centre, and Fourier
  features of ``dx, dy`` up to ``max_frequency`` cycles per cell), gives
  ``ph x pw`` coefficients ``a``, one per pixel of the cell at the trunk's
  input resolution (``footprint``);
* the colour enters linearly, as it does in the pixels: the pair adds
  ``a (x) rgb`` (``3 ph pw`` values) to its cell; a linear layer maps each
  cell's sum to the trunk width.

The MLP can be pretrained on the exact footprints (:func:`pair_footprints`:
the Gaussian's values at the cell's pixel centres, cut off as the decoder cuts
them off), and the linear layer set from the trunk's patch embedding
(:meth:`CellPooling.init_from_patch_embedding`); the tokens are then the patch
embedding of the rendered image up to the MLP's error, and training goes on
from there against the teacher. No image is formed: the work is per pair (a
few cells per Gaussian), and the tokens are exactly linear in the colours, as
the patch embedding of the rendered image is.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn as nn

from ..limits import CUTOFF_SQ, MAX_CELL_PAIRS
from ..raster.reference import gaussian_weight, mahalanobis_sq
from .config import CellConfig, ClipHeadError
from .stem import scalar_features

CHUNK_PAIRS = 1 << 16
"""Pairs the MLP runs on at a time (bounds the hidden activations to a few hundred MB)."""


class CellPairsError(ClipHeadError, ValueError):
    """A batch has more (Gaussian, cell) pairs than :data:`gscodec.limits.MAX_CELL_PAIRS`."""


PAIR_FEATURES = ("dx", "dy", "log_sigma1", "log_sigma2", "cos2theta", "sin2theta", "log1p_d2")
_PRIOR_MEAN = (0.0, 0.0, -1.5, -2.0, 0.0, 0.0, 1.0)
_PRIOR_STD = (0.6, 0.6, 1.0, 1.0, 0.7, 0.7, 1.0)


def scaled_cholesky(params: torch.Tensor, sizes: torch.Tensor, per_width: float,
                    per_height: float) -> torch.Tensor:
    """``(B * N, 3)`` Cholesky factors ``l11, l21, l22`` in units of ``1 / per_width`` of each image's width
    (x) and ``1 / per_height`` of its height (y): ``per_width = cols`` gives cells, ``cols * pw`` the
    footprint's pixels. Non-finite values become 0; ``l11`` and ``l22`` at least 1e-12."""
    p = torch.nan_to_num(params.float(), nan=0.0, posinf=0.0, neginf=0.0)
    sx = (per_width / sizes[:, 0].float()).view(-1, 1)
    sy = (per_height / sizes[:, 1].float()).view(-1, 1)
    chol = torch.stack([p[..., 2].abs() * sx, p[..., 3] * sy, p[..., 4].abs() * sy], -1).flatten(0, 1)
    chol[:, 0].clamp_(min=1e-12)
    chol[:, 2].clamp_(min=1e-12)
    return chol


def cell_pairs(params: torch.Tensor, mask: torch.Tensor, sizes: torch.Tensor,
               slots: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Every (Gaussian, cell) pair whose cell the Gaussian's 3-sigma box touches.

    Args:
        params: ``(B, N, 8)`` raw ``x, y, l11, l21, l22, r, g, b`` (pixels).
        mask: ``(B, N)`` True for real Gaussians.
        sizes: ``(B, 2)`` image ``(width, height)`` in pixels.
        slots: ``(rows, cols)`` of the cell grid laid over the image.

    Returns:
        ``(gaussian, cell, offset)``: ``(P,)`` int64 flat Gaussian index
        (``b * N + n``), ``(P,)`` int64 flat cell index (``b * K + row * cols
        + col``) and ``(P, 2)`` float32 mean minus cell centre, in cells.
    """
    rows, cols = slots
    b, n = mask.shape
    p = torch.nan_to_num(params.float(), nan=0.0, posinf=0.0, neginf=0.0)
    sx = (cols / sizes[:, 0].float()).view(-1, 1)
    sy = (rows / sizes[:, 1].float()).view(-1, 1)
    x, y = p[..., 0] * sx, p[..., 1] * sy
    cutoff = math.sqrt(CUTOFF_SQ)  # the box around the decoder's cut-off ellipse (spec section 8's note)
    hx = cutoff * p[..., 2].abs() * sx
    hy = cutoff * torch.hypot(p[..., 3], p[..., 4]) * sy
    # Clamped to the grid (plus one cell either side) before the integer conversion: no overflow.
    x0 = (x - hx).clamp(-1, cols).floor().long().clamp_min(0)
    x1 = (x + hx).clamp(-1, cols).floor().long().clamp_max(cols - 1)
    y0 = (y - hy).clamp(-1, rows).floor().long().clamp_min(0)
    y1 = (y + hy).clamp(-1, rows).floor().long().clamp_max(rows - 1)
    nx = (x1 - x0 + 1).clamp_min(0)
    ny = (y1 - y0 + 1).clamp_min(0)
    counts = (nx * ny * mask).flatten()
    total = int(counts.sum())
    if total > MAX_CELL_PAIRS:
        raise CellPairsError(f"{total:,} (Gaussian, cell) pairs in a batch of {b} image(s), over the limit of "
                             f"{MAX_CELL_PAIRS:,} (gscodec.limits.MAX_CELL_PAIRS): Gaussians that each cover "
                             "much of the image, or too many images at once")
    g = torch.repeat_interleave(torch.arange(b * n, device=p.device), counts, output_size=total)
    start = torch.repeat_interleave(torch.cumsum(counts, 0) - counts, counts, output_size=total)
    j = torch.arange(total, device=p.device) - start
    nxg = nx.flatten()[g]
    cx = x0.flatten()[g] + j % nxg
    cy = y0.flatten()[g] + torch.div(j, nxg, rounding_mode="floor")
    cell = torch.div(g, n, rounding_mode="floor") * (rows * cols) + cy * cols + cx
    offset = torch.stack([x.flatten()[g] - (cx + 0.5), y.flatten()[g] - (cy + 0.5)], -1)
    return g, cell, offset


def pair_footprints(params: torch.Tensor, sizes: torch.Tensor, g: torch.Tensor, offset: torch.Tensor,
                    slots: tuple[int, int], footprint: tuple[int, int]) -> torch.Tensor:
    """``(P, ph * pw)``: each pair's Gaussian (peak 1) at its cell's ``footprint = (ph, pw)`` pixel centres.

    The reference the pair MLP is pretrained on: the decoder's arithmetic
    (spec section 8: ``z1 = dx / l11``, ``z2 = (dy - l21 z1) / l22``, cut off
    at ``d2 <= 9``) on a ``ph x pw`` grid per cell (row-major, rows along y),
    in the cell-grid frame (``pw`` pixels per cell across, ``ph`` down).

    Args:
        params: ``(B, N, 8)``; sizes: ``(B, 2)``; g, offset: from :func:`cell_pairs` on the same ``slots``.
    """
    rows, cols = slots
    ph, pw = footprint
    chol = scaled_cholesky(params, sizes, cols * pw, rows * ph)[g]  # in the footprint's pixels
    qx = (torch.arange(pw, device=chol.device, dtype=torch.float32) + 0.5 - 0.5 * pw).repeat(ph)
    qy = (torch.arange(ph, device=chol.device, dtype=torch.float32) + 0.5 - 0.5 * ph).repeat_interleave(pw)
    dx = qx - (offset[:, :1] * pw)
    dy = qy - (offset[:, 1:] * ph)
    return gaussian_weight(dx, dy, chol[:, 0:1], chol[:, 1:2], chol[:, 2:3])


class _CellSums(torch.autograd.Function):
    """See :func:`cell_sums`. The pairs' colours form a sparse ``(3 cells, P)`` matrix (one entry per pair and
    channel), so the forward is one sparse-dense product and the ``(P, 3, H)`` outer products are never formed;
    the colours' gradient gathers the output gradient per pair."""

    @staticmethod
    def forward(ctx, rgb: torch.Tensor, h: torch.Tensor, cell: torch.Tensor, cells: int) -> torch.Tensor:
        pairs, width = h.shape
        channel = torch.arange(3, device=cell.device)
        index = torch.stack([(cell.unsqueeze(1) * 3 + channel).flatten(),
                             torch.arange(pairs, device=cell.device).repeat_interleave(3)])
        a = torch.sparse_coo_tensor(index, rgb.flatten(), (3 * cells, pairs), check_invariants=False)
        ctx.save_for_backward(rgb, h, cell)
        ctx.a, ctx.cells = a, cells
        with torch.autocast(h.device.type, enabled=False):  # float32 sums under mixed precision too
            return torch.sparse.mm(a, h).view(cells, 3 * width)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor):
        rgb, h, cell = ctx.saved_tensors
        grad = grad.float().reshape(ctx.cells, 3, -1)
        grad_rgb = torch.einsum("pch,ph->pc", grad[cell], h) if ctx.needs_input_grad[0] else None
        grad_h = torch.sparse.mm(ctx.a.t(), grad.reshape(3 * ctx.cells, -1)) if ctx.needs_input_grad[1] else None
        return grad_rgb, grad_h, None, None


def cell_sums(rgb: torch.Tensor, h: torch.Tensor, cell: torch.Tensor, cells: int) -> torch.Tensor:
    """``(cells, 3 H)`` float32: for each cell the sum over its pairs of ``rgb (x) h`` (channel-major).

    Args:
        rgb: ``(P, 3)`` the pairs' colours; h: ``(P, H)`` their activations; cell: ``(P,)`` int64 in
            ``[0, cells)``. Differentiable in ``rgb`` and ``h``; equal to
            ``zeros(cells, 3 H).index_add(0, cell, (rgb[:, :, None] * h[:, None, :]).flatten(1))``
            up to float rounding, without its ``(P, 3 H)`` temporary (4x faster at 9,000 pairs per image).
    """
    return _CellSums.apply(rgb.float(), h.float(), cell, cells)


class CellPooling(nn.Module):
    """``forward(params (B, N, 8), mask (B, N), sizes (B, 2)) -> (B, rows * cols, width)`` tokens.

    Each token is ``W @ sum over pairs (a_pair (x) rgb) + bias`` (see the
    module docstring); the trunk's positional embedding is added by the head.
    ``footprint = (ph, pw)``: pixels per cell at the trunk's input resolution.
    """

    def __init__(self, config: CellConfig, slots: tuple[int, int], width: int, footprint: tuple[int, int]) -> None:
        super().__init__()
        self.config = config
        self.slots = slots
        self.width = width
        self.footprint = footprint
        basis = footprint[0] * footprint[1]
        bands = config.fourier_bands
        freqs = (torch.logspace(math.log2(config.max_frequency) - bands + 1, math.log2(config.max_frequency), bands,
                                base=2.0) if bands > 0 else torch.zeros(0))
        self.register_buffer("frequencies", freqs.float())
        self.register_buffer("feature_mean", torch.tensor(_PRIOR_MEAN, dtype=torch.float32))
        self.register_buffer("feature_std", torch.tensor(_PRIOR_STD, dtype=torch.float32))
        in_dim = len(PAIR_FEATURES) + 4 * bands
        layers: list[nn.Module] = []
        for i in range(config.layers):
            layers += [nn.Linear(in_dim if i == 0 else config.hidden, config.hidden), nn.GELU()]
        layers.append(nn.Linear(config.hidden if config.layers else in_dim, basis))
        self.mlp = nn.Sequential(*layers)
        self.out = nn.Linear(3 * basis, width)

    def gaussian_terms(self, params: torch.Tensor, sizes: torch.Tensor) -> torch.Tensor:
        """``(B * N, 7)`` per Gaussian, in cell units: ``log sigma1, log sigma2, cos 2theta, sin 2theta``
        and the Cholesky factor ``l11, l21, l22`` (once per call; the pairs index into it)."""
        rows, cols = self.slots
        cell_size = torch.stack([sizes[:, 0].float() / cols, sizes[:, 1].float() / rows], -1)
        shape = scalar_features(params, cell_size)[..., 2:6].flatten(0, 1)
        chol = scaled_cholesky(params, sizes, cols, rows)
        chol[:, 0].clamp_(min=1e-6)
        chol[:, 2].clamp_(min=1e-6)
        return torch.cat([shape, chol], -1)

    @staticmethod
    def pair_features(terms: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
        """``(P, 7)`` raw :data:`PAIR_FEATURES` (cell units), before standardization, from the pairs' rows of
        :meth:`gaussian_terms` and their offsets."""
        # The cell centre's squared Mahalanobis distance, as the decoder computes it.
        d2 = mahalanobis_sq(-offset[:, 0], -offset[:, 1], terms[:, 4], terms[:, 5], terms[:, 6]).clamp_max(1e4)
        return torch.cat([offset, terms[:, :4], torch.log1p(d2).unsqueeze(-1)], -1)

    @torch.no_grad()
    def init_from_patch_embedding(self, weight: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> None:
        """Set the output layer to the trunk's patch embedding of normalized pixels.

        ``weight``: ``(width, 3, ph, pw)`` (``conv1``, no bias); ``mean``, ``std``: the per-channel
        normalization of the trunk's input. With exact footprints the tokens are then the patch embedding
        of the rendered image: ``W ((v - mean) / std) = (W / std) v - W (mean / std)``.
        """
        if tuple(weight.shape) != (self.width, 3, *self.footprint):
            raise ValueError(f"patch embedding of shape {tuple(weight.shape)} does not fit cells of "
                             f"{self.footprint} pixels and width {self.width}")
        m = torch.as_tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
        s = torch.as_tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
        w = weight.detach().float()
        self.out.weight.copy_((w / s).flatten(1))
        self.out.bias.copy_(-(w * (m / s)).sum((1, 2, 3)))

    @torch.no_grad()
    def calibrate(self, params: torch.Tensor, mask: torch.Tensor, sizes: torch.Tensor) -> None:
        """Set the features' standardization statistics from the pairs of a batch."""
        g, _, offset = cell_pairs(params, mask, sizes, self.slots)
        if g.numel() < 2:
            return
        feats = self.pair_features(self.gaussian_terms(params, sizes)[g], offset)
        self.feature_mean.copy_(feats.mean(0))
        self.feature_std.copy_(feats.std(0).clamp_min(1e-3))

    def features(self, terms: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
        """``(P, 7 + 4 fourier_bands)``: the MLP's input, standardized pair features then Fourier features
        (``terms``: the pairs' rows of :meth:`gaussian_terms`)."""
        feats = (self.pair_features(terms, offset) - self.feature_mean) / self.feature_std
        if self.frequencies.numel():
            angles = (offset.unsqueeze(-1) * (2 * math.pi * self.frequencies)).flatten(-2)
            feats = torch.cat([feats, angles.sin(), angles.cos()], -1)
        return feats

    def forward(self, params: torch.Tensor, mask: torch.Tensor, sizes: torch.Tensor) -> torch.Tensor:
        """The MLP's last layer is linear, so it runs per cell, not per pair: each cell sums ``rgb (x) h``
        (``h`` the last hidden activations) and ``rgb``, then ``a = W h + b`` applies to the sums. Equal to
        summing ``rgb (x) mlp(features)`` over the pairs up to float rounding, with the widest product done
        once per cell instead of once per pair."""
        b = mask.shape[0]
        k = self.slots[0] * self.slots[1]
        g, cell, offset = cell_pairs(params, mask, sizes, self.slots)
        dtype = self.out.weight.dtype
        body, last = self.mlp[:-1], self.mlp[-1]
        sums = torch.zeros(b * k, 3 * (last.in_features + 1), device=params.device)
        flat = params.flatten(0, 1)
        terms_all = self.gaussian_terms(params, sizes)
        for start in range(0, g.numel(), CHUNK_PAIRS):
            part = slice(start, start + CHUNK_PAIRS)
            h = body(self.features(terms_all[g[part]], offset[part]).to(dtype))  # (P, hidden)
            h = torch.cat([h, torch.ones_like(h[:, :1])], 1)  # the bias as a constant input
            sums = sums + cell_sums(flat[g[part], 5:8], h, cell[part], b * k)
        w = torch.cat([last.weight, last.bias.unsqueeze(1)], 1)  # (ph pw, hidden + 1)
        a = sums.to(dtype).view(b * k, 3, -1) @ w.t()  # (BK, 3, ph pw): per channel, the sum of colour x footprint
        return self.out(a.flatten(1)).view(b, k, self.width)
