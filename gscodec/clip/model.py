"""The compressed-domain CLIP head: splat stem -> perceiver resampler (or cell pooling) -> an open_clip ViT trunk.

The trunk is a copy of an open_clip ``VisionTransformer`` without its patch
embedding (``conv1``): the K resampled tokens take the place of the patch
tokens. The forward pass follows ``VisionTransformer.forward``: class token
(``class_embedding`` + ``positional_embedding[0]``) prepended, ``ln_pre``,
``transformer`` (its ``resblocks``), then the trunk's own pooling (``_pool``:
class token, average or attentional pooling, ``ln_post``) and ``proj``.
"""

from __future__ import annotations

import copy
import math
from typing import Iterator

import torch
import torch.nn as nn
import torch.nn.functional as F

from .cells import CellPooling
from .config import HeadConfig
from .resampler import PerceiverResampler
from .stem import SplatStem, scalar_features


def _trunk_heads(trunk: nn.Module) -> int:
    attn = trunk.transformer.resblocks[0].attn
    return int(getattr(attn, "num_heads"))


def slot_grid(num_tokens: int, grid: tuple[int, int]) -> tuple[int, int]:
    """``(rows, cols)`` with ``rows * cols == num_tokens`` and the aspect closest to ``grid`` ``(gh, gw)``.

    196 on a 14x14 grid -> (14, 14); 98 -> (14, 7).
    """
    target = math.log(grid[0] / grid[1])
    best = (1, num_tokens)
    for rows in range(1, num_tokens + 1):
        if num_tokens % rows == 0:
            cols = num_tokens // rows
            key = (abs(math.log(rows / cols) - target), -rows)
            if key < (abs(math.log(best[0] / best[1]) - target), -best[0]):
                best = (rows, cols)
    return best


def spatial_log_overlap(params: torch.Tensor, sizes: torch.Tensor, slots: tuple[int, int],
                        sigma_cells: float) -> torch.Tensor:
    """``(B, K, N)`` log of the overlap of every Gaussian with every slot's window, in normalized coordinates.

    ``log integral exp(-d_i(x)^2 / 2) N(x; c_k, S) dx = (log det Sigma_i - log det(Sigma_i + S)) / 2
    - (c_k - mu_i)^T (Sigma_i + S)^{-1} (c_k - mu_i) / 2`` for Gaussian ``i`` (mean ``mu_i``, covariance
    ``Sigma_i``, peak 1) and slot ``k`` of the ``slots = (rows, cols)`` grid (centre ``c_k``, row-major, rows
    along y), ``S = diag(sx^2, sy^2)`` with ``sx = sigma_cells / cols``, ``sy = sigma_cells / rows``.

    Args:
        params: ``(B, N, 8)`` raw ``x, y, l11, l21, l22, r, g, b`` (pixels); sizes: ``(B, 2)`` ``(width, height)``.
    """
    rows, cols = slots
    p = params.float()
    w = sizes[:, 0].float().view(-1, 1)
    h = sizes[:, 1].float().view(-1, 1)
    u, v = p[..., 0] / w, p[..., 1] / h
    l11, l21, l22 = p[..., 2].abs() / w, p[..., 3] / h, p[..., 4].abs() / h
    a, b, c = l11 * l11, l11 * l21, l21 * l21 + l22 * l22  # Sigma_i = [[a, b], [b, c]]
    sx2, sy2 = (sigma_cells / cols) ** 2, (sigma_cells / rows) ** 2
    a2, c2 = a + sx2, c + sy2
    det2 = a2 * c2 - b * b
    tiny = torch.finfo(torch.float32).tiny
    log_norm = 0.5 * (torch.log((l11 * l22).square().clamp_min(tiny)) - torch.log(det2.clamp_min(tiny)))  # (B, N)
    cu = (torch.arange(cols, device=p.device, dtype=torch.float32) + 0.5) / cols
    cv = (torch.arange(rows, device=p.device, dtype=torch.float32) + 0.5) / rows
    du = cu.repeat(rows).view(1, -1, 1) - u.unsqueeze(1)  # (B, K, N)
    dv = cv.repeat_interleave(cols).view(1, -1, 1) - v.unsqueeze(1)
    inv = 1.0 / det2.clamp_min(tiny).unsqueeze(1)
    d2 = (c2.unsqueeze(1) * du * du - 2 * b.unsqueeze(1) * du * dv + a2.unsqueeze(1) * dv * dv) * inv
    return log_norm.unsqueeze(1) - 0.5 * d2


class GaussianCLIPHead(nn.Module):
    """Embeds padded batches of Gaussians into an open_clip embedding space.

    ``forward(params (B, N, 8), mask (B, N) bool True = real Gaussian, sizes (B, 2)) -> (B, E)``.
    """

    chunk_gaussians: int = 8192
    """Stem and resampler run on chunks of whole images of at most about this
    many (padded) Gaussians; 0: the whole batch at once. The work is per image
    either way; chunks keep the largest intermediate (the keys and values,
    ``chunk x 2 attn_dim`` floats: 16 MB at 8192 x 512) below glibc's 32 MB
    mmap threshold, so it is reused from the heap instead of being mapped and
    page-faulted afresh on every call. Smaller chunks help a little more on an
    idle CPU, but multiply the parallel regions, which costs more under CPU
    contention."""

    def __init__(self, config: HeadConfig, visual: nn.Module) -> None:
        super().__init__()
        from open_clip.transformer import VisionTransformer

        if not isinstance(visual, VisionTransformer):
            raise TypeError(f"the trunk must be an open_clip VisionTransformer, got {type(visual).__name__}")
        self.config = config
        trunk = copy.deepcopy(visual)
        del trunk.conv1  # the resampler replaces the patch embedding
        trunk.patch_dropout = nn.Identity()
        self.trunk = trunk
        width = trunk.transformer.width
        self.width = width
        self.embed_dim = int(trunk.output_dim)
        self.slots = slot_grid(config.num_tokens, tuple(trunk.grid_size))
        self.stem: SplatStem | None = None
        self.resampler: PerceiverResampler | None = None
        self.cells: CellPooling | None = None
        if config.pooling == "cells":
            ih, iw = tuple(trunk.image_size)
            footprint = (max(1, round(ih / self.slots[0])), max(1, round(iw / self.slots[1])))
            self.cells = CellPooling(config.cells, self.slots, width, footprint)
        else:
            rc = config.resampler
            dim = rc.token_dim(width)
            heads = rc.num_heads(dim, _trunk_heads(trunk))
            self.stem = SplatStem(config.stem, dim)
            self.resampler = PerceiverResampler(dim, config.num_tokens, rc.depth, heads, rc.mlp_ratio, width=width,
                                                norm_tokens=rc.attn_dim is None, output_norm=rc.output_norm,
                                                spatial_bias=rc.spatial_bias)
        self._slot_pos_cache: tuple[tuple, torch.Tensor] | None = None

    @property
    def num_tokens(self) -> int:
        """K, the number of tokens the trunk sees (plus its class token)."""
        return self.config.num_tokens

    def slot_pos_embed(self) -> torch.Tensor:
        """``(K, D)``: the trunk's patch positional embedding resampled (bicubic) to the K-slot grid.

        The resampled grid is cached (the positional embedding is frozen; the
        cache is keyed on its storage, version counter, device and dtype).
        """
        full = self.trunk.positional_embedding
        pos = full[1:]
        gh, gw = self.trunk.grid_size
        rows, cols = self.slots
        if (rows, cols) == (gh, gw):
            return pos
        key = (full.data_ptr(), full._version, full.device, full.dtype, torch.is_inference_mode_enabled(),
               full.requires_grad and torch.is_grad_enabled())
        if self._slot_pos_cache is not None and self._slot_pos_cache[0] == key:
            return self._slot_pos_cache[1]
        grid = pos.reshape(1, gh, gw, -1).permute(0, 3, 1, 2).float()
        grid = F.interpolate(grid, size=(rows, cols), mode="bicubic", align_corners=False)
        out = grid.permute(0, 2, 3, 1).reshape(rows * cols, -1).to(pos.dtype)
        if not out.requires_grad:
            self._slot_pos_cache = (key, out)
        return out

    def pooling_modules(self) -> list[nn.Module]:
        """The modules that turn Gaussians into tokens: ``[stem, resampler]`` or ``[cells]``."""
        return [self.cells] if self.cells is not None else [self.stem, self.resampler]

    def _featurizer(self) -> nn.Module:
        """The module whose input features carry standardization statistics: the cells or the stem."""
        return self.cells if self.cells is not None else self.stem

    @torch.no_grad()
    def calibrate(self, params: torch.Tensor, mask: torch.Tensor, sizes: torch.Tensor) -> None:
        """Set the input features' standardization statistics from a batch (``(B, N, 8)``, ``(B, N)``, ``(B, 2)``)."""
        self._featurizer().calibrate(params, mask, sizes)

    def calibration_buffers(self) -> list[torch.Tensor]:
        """The buffers :meth:`calibrate` sets (broadcast from rank 0 in distributed training)."""
        return list(self._featurizer().buffers())

    def tokens(self, params: torch.Tensor, mask: torch.Tensor, sizes: torch.Tensor) -> torch.Tensor:
        """``(B, K, D)`` tokens before the trunk (stem + resampler or cell pooling, + slot positions)."""
        if self.cells is not None:
            x = self.cells(params, mask, sizes)
            if self.config.resampler.add_pos_embed:
                x = x + self.slot_pos_embed().to(x.dtype)
            return x
        b, n = mask.shape
        step = max(1, self.chunk_gaussians // max(n, 1)) if self.chunk_gaussians > 0 else b
        # Once per batch, not per chunk: the (small) per-Gaussian scalar features, the first layer's queries.
        scal = scalar_features(params, sizes)
        shared = self.resampler.shared(self.stem.norm.weight.dtype)
        pad = ~mask
        rc = self.config.resampler
        bias = spatial_log_overlap(params, sizes, self.slots, rc.spatial_sigma) if rc.spatial_bias else None
        if step >= b:
            x = self.resampler(self.stem.project(scal), pad, shared, bias)
        else:
            x = torch.cat([self.resampler(self.stem.project(scal[i:i + step]), pad[i:i + step], shared,
                                          None if bias is None else bias[i:i + step])
                           for i in range(0, b, step)])
        if self.config.resampler.add_pos_embed:
            x = x + self.slot_pos_embed().to(x.dtype)
        return x

    def forward(self, params: torch.Tensor, mask: torch.Tensor, sizes: torch.Tensor,
                normalize: bool = False) -> torch.Tensor:
        return self.encode_tokens(self.tokens(params, mask, sizes), normalize=normalize)

    def encode_tokens(self, x: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        """The trunk on ``(B, K, D)`` tokens from :meth:`tokens` -> ``(B, E)`` embeddings."""
        t = self.trunk
        cls = (t.class_embedding + t.positional_embedding[0]).to(x.dtype)
        x = torch.cat([cls.view(1, 1, -1).expand(x.shape[0], -1, -1), x], 1)
        x = t.ln_pre(x)
        x = t.transformer(x)
        pooled, _ = t._pool(x)
        if t.proj is not None:
            pooled = pooled @ t.proj
        return F.normalize(pooled, dim=-1) if normalize else pooled

    def encode(self, batch, normalize: bool = True) -> torch.Tensor:
        """Embed a :class:`~gscodec.clip.data.SplatBatch` (moved to the head's device) -> ``(B, E)``."""
        device = next(self.parameters()).device
        b = batch.to(device)
        return self.forward(b.params, b.mask, b.sizes, normalize=normalize)

    # --- parameter groups -------------------------------------------------------------------------------

    def stem_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters of the stem and the resampler, or of the cell pooling (trained in both stages)."""
        for module in self.pooling_modules():
            yield from module.parameters()

    def trunk_trainable_parameters(self, blocks: int) -> Iterator[nn.Parameter]:
        """Trunk parameters of the contrastive stage: the first ``blocks`` blocks, the final norm and projection."""
        for block in self.trunk.transformer.resblocks[:blocks]:
            yield from block.parameters()
        yield from self.trunk.ln_post.parameters()
        if self.trunk.proj is not None:
            yield self.trunk.proj
        if getattr(self.trunk, "attn_pool", None) is not None:
            yield from self.trunk.attn_pool.parameters()
        if getattr(self.trunk, "attn_pool_contrastive", None) is not None:
            yield from self.trunk.attn_pool_contrastive.parameters()

    def set_trainable(self, stage: str, blocks: int | None = None) -> None:
        """Freeze everything, then unfreeze what ``stage`` trains.

        ``"distill"``: stem and resampler. ``"contrastive"``: also the first
        ``blocks`` (default: the config's ``trainable_blocks``) trunk blocks,
        ``ln_post`` and ``proj``. ``"none"``: nothing.
        """
        if stage not in ("distill", "contrastive", "none"):
            raise ValueError(f"stage must be 'distill', 'contrastive' or 'none', got {stage!r}")
        for p in self.parameters():
            p.requires_grad_(False)
        if stage == "none":
            return
        for p in self.stem_parameters():
            p.requires_grad_(True)
        if stage == "contrastive":
            for p in self.trunk_trainable_parameters(self.config.trainable_blocks if blocks is None else blocks):
                p.requires_grad_(True)

    def parameter_counts(self) -> dict[str, int]:
        """Parameter counts: ``stem``, ``resampler`` (or ``cells``), ``trunk``, ``total`` and ``trainable``."""
        count = lambda ps: sum(p.numel() for p in ps)  # noqa: E731
        parts = ({"cells": count(self.cells.parameters())} if self.cells is not None else
                 {"stem": count(self.stem.parameters()), "resampler": count(self.resampler.parameters())})
        return {
            **parts,
            "trunk": count(self.trunk.parameters()),
            "total": count(self.parameters()),
            "trainable": count(p for p in self.parameters() if p.requires_grad),
        }
