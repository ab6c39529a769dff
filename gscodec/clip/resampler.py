"""The perceiver resampler: K learned queries cross-attending to a variable number of Gaussian tokens.

Flamingo-style: in every layer the latents attend to the concatenation of the
Gaussian tokens and themselves (so a query always has something to attend to,
even for an image with no Gaussians), then pass through a feed-forward block.
Padding is excluded with a key padding mask. Nothing depends on the order of
the Gaussian tokens: attention is a sum over keys, and no positional encoding
is attached to a token's index.

Cost. Everything runs at an inner width ``dim`` (``resampler.attn_dim``),
usually well below the trunk's ``width``; one linear layer and a layer norm
lift the K latents to ``width`` at the end. The per-Gaussian work is one
fused key/value projection of the N tokens (``N x dim x 2 dim``); the tokens
are not re-normalized (the stem ends with a layer norm and the tokens do not
change between layers; the full-width legacy design, ``attn_dim = None``,
keeps its per-layer token norm so its head files still load). The queries of
the first layer, and the keys and values of the latents there, depend on the
learned latents only: they are computed once per call for the whole batch,
not per image. Attention is ``F.scaled_dot_product_attention`` with a boolean
mask (no mask when nothing is padded).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class CrossAttentionBlock(nn.Module):
    """One resampler layer: ``latents += attn(latents -> [tokens; latents])``, ``latents += ff(latents)``.

    Args:
        dim: width of the tokens and latents.
        heads: attention heads (``dim`` must be divisible by it).
        mlp_ratio: feed-forward hidden width over ``dim``; 0: no feed-forward block.
        norm_tokens: layer-normalize the tokens before the key/value projection
            (the legacy full-width design; the narrow design's tokens come
            layer-normalized from the stem).
    """

    def __init__(self, dim: int, heads: int, mlp_ratio: float, norm_tokens: bool = True) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"width {dim} is not divisible by {heads} heads")
        self.dim = dim
        self.heads = heads
        self.norm_tokens = nn.LayerNorm(dim) if norm_tokens else nn.Identity()
        self.norm_latents = nn.LayerNorm(dim)
        self.q = nn.Linear(dim, dim, bias=False)
        self.kv = nn.Linear(dim, 2 * dim, bias=False)
        self.out = nn.Linear(dim, dim)
        hidden = int(round(dim * mlp_ratio))
        self.ff = (nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))
                   if hidden > 0 else None)
        self.bias_scale: nn.Parameter | None = None

    def enable_spatial_bias(self) -> None:
        """Add the learned per-head scale of the spatial attention bias (starting at 1)."""
        self.bias_scale = nn.Parameter(torch.ones(self.heads))

    def shared(self, latents: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """For latents ``(K, D)`` shared by the batch: ``(normed latents, q (K, D), latent kv (K, 2D))``."""
        lat = self.norm_latents(latents)
        return lat, self.q(lat), self.kv(lat)

    def forward(self, latents: torch.Tensor, tokens: torch.Tensor, keep: torch.Tensor | None,
                shared: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
                bias: torch.Tensor | None = None) -> torch.Tensor:
        """
        Args:
            latents: ``(B, K, D)``, or ``(K, D)`` shared by the whole batch
                (the learned latents, first layer).
            tokens: ``(B, N, D)`` Gaussian tokens.
            keep: ``(B, N + K)`` bool, True for the keys to attend to (real
                Gaussians and the latents), or None for all of them.
            shared: :meth:`shared` of ``(K, D)`` latents, if already computed.
            bias: ``(B, K, N)`` spatial log-overlaps (used when the block has a ``bias_scale``).

        Returns:
            ``(B, K, D)`` updated latents.
        """
        b, n, d = tokens.shape
        k = latents.shape[-2]
        h, hd = self.heads, d // self.heads
        if shared is None:
            lat = self.norm_latents(latents)
            q, kv_lat = self.q(lat), self.kv(lat)
        else:
            _, q, kv_lat = shared
        # For shared (K, D) latents the query and the latents' keys and values are the same for every image.
        q = q.view(-1, k, h, hd).transpose(1, 2).expand(b, h, k, hd)
        kv = torch.cat([self.kv(self.norm_tokens(tokens)), kv_lat.expand(b, k, 2 * d)], 1)  # (B, N + K, 2D)
        key, value = kv.view(b, n + k, 2, h, hd).permute(2, 0, 3, 1, 4)
        attn_mask = None if keep is None else keep[:, None, None, :]
        if bias is not None and self.bias_scale is not None:
            add = bias.unsqueeze(1) * self.bias_scale.view(1, h, 1, 1).to(bias.dtype)  # (B, h, K, N)
            add = torch.cat([add, add.new_zeros(b, h, k, k)], -1)
            if attn_mask is not None:
                add = add.masked_fill(~attn_mask, float("-inf"))
            attn_mask = add.to(q.dtype)
        x = F.scaled_dot_product_attention(q, key, value, attn_mask=attn_mask)
        latents = latents + self.out(x.transpose(1, 2).reshape(b, k, d))
        return latents if self.ff is None else latents + self.ff(latents)


class PerceiverResampler(nn.Module):
    """``forward(tokens (B, N, dim), key_padding_mask (B, N) or None) -> (B, K, width)``.

    Args:
        dim: inner width (the stem's token width).
        num_tokens: K.
        depth, heads, mlp_ratio: see :class:`CrossAttentionBlock`.
        width: output width (the trunk's); ``None`` or ``dim``: no output projection.
        norm_tokens: see :class:`CrossAttentionBlock` (True for the legacy full-width design).
    """

    def __init__(self, dim: int, num_tokens: int, depth: int, heads: int, mlp_ratio: float,
                 width: int | None = None, norm_tokens: bool = True, output_norm: bool = True,
                 spatial_bias: bool = False) -> None:
        super().__init__()
        width = dim if width is None else width
        self.num_tokens = num_tokens
        self.dim = dim
        self.width = width
        self.latents = nn.Parameter(torch.randn(num_tokens, dim) * dim ** -0.5)
        self.layers = nn.ModuleList(CrossAttentionBlock(dim, heads, mlp_ratio, norm_tokens) for _ in range(depth))
        self.proj = nn.Linear(dim, width) if width != dim else nn.Identity()
        self.norm = nn.LayerNorm(width) if output_norm else nn.Identity()
        if spatial_bias:
            for layer in self.layers:
                layer.enable_spatial_bias()

    def shared(self, dtype: torch.dtype | None = None) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """``(latents (K, dim), first layer's shared q / kv)``: input-independent, computed once per batch.

        Pass it to :meth:`forward` when a batch is processed in chunks.
        """
        latents = self.latents if dtype is None else self.latents.to(dtype)
        return latents, self.layers[0].shared(latents)

    def forward(self, tokens: torch.Tensor, key_padding_mask: torch.Tensor | None = None,
                shared: tuple[torch.Tensor, tuple[torch.Tensor, ...]] | None = None,
                bias: torch.Tensor | None = None) -> torch.Tensor:
        """
        Args:
            tokens: ``(B, N, dim)``.
            key_padding_mask: ``(B, N)`` bool, True where ``tokens`` is padding (ignored), or None.
            shared: :meth:`shared` (computed here if None).
            bias: ``(B, K, N)`` spatial log-overlaps for layers with a spatial bias, or None.

        Returns:
            ``(B, K, width)``.
        """
        b, n, _ = tokens.shape
        keep = None
        if key_padding_mask is not None and (key_padding_mask.is_cuda or bool(key_padding_mask.any())):
            keep = torch.ones(b, n + self.num_tokens, dtype=torch.bool, device=tokens.device)
            torch.logical_not(key_padding_mask, out=keep[:, :n])
        latents, first = self.shared(tokens.dtype) if shared is None else shared
        for i, layer in enumerate(self.layers):
            # The first layer's latents are the learned (K, dim) ones, broadcast over the batch.
            latents = layer(latents, tokens, keep, first if i == 0 else None, bias)
        return self.norm(self.proj(latents))
