"""The perceiver resampler: K learned queries cross-attending to a variable number of Gaussian tokens.

Flamingo-style: in every layer the latents attend to the concatenation of the
Gaussian tokens and themselves (so a query always has something to attend to,
even for an image with no Gaussians), then pass through a feed-forward block.
Padding is excluded with a key padding mask. Nothing depends on the order of
the Gaussian tokens: attention is a sum over keys, and no positional encoding
is attached to a token's index.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class CrossAttentionBlock(nn.Module):
    """One resampler layer: ``latents += attn(latents -> [tokens; latents])``, ``latents += ff(latents)``."""

    def __init__(self, width: int, heads: int, mlp_ratio: float) -> None:
        super().__init__()
        if width % heads:
            raise ValueError(f"width {width} is not divisible by {heads} heads")
        self.heads = heads
        self.norm_tokens = nn.LayerNorm(width)
        self.norm_latents = nn.LayerNorm(width)
        self.q = nn.Linear(width, width, bias=False)
        self.kv = nn.Linear(width, 2 * width, bias=False)
        self.out = nn.Linear(width, width)
        hidden = max(1, int(round(width * mlp_ratio)))
        self.ff = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, hidden), nn.GELU(), nn.Linear(hidden, width))

    def forward(self, latents: torch.Tensor, tokens: torch.Tensor, key_padding_mask: torch.Tensor | None) -> torch.Tensor:
        """
        Args:
            latents: ``(B, K, D)``.
            tokens: ``(B, N, D)`` Gaussian tokens.
            key_padding_mask: ``(B, N)`` bool, True where ``tokens`` is padding (ignored), or None.

        Returns:
            ``(B, K, D)`` updated latents.
        """
        b, k, d = latents.shape
        n = tokens.shape[1]
        lat = self.norm_latents(latents)
        kv_in = torch.cat([self.norm_tokens(tokens), lat], 1)  # (B, N + K, D)
        hd = d // self.heads
        q = self.q(lat).view(b, k, self.heads, hd).transpose(1, 2)
        key, value = self.kv(kv_in).view(b, n + k, 2, self.heads, hd).permute(2, 0, 3, 1, 4)
        attn_mask = None
        if key_padding_mask is not None:
            keep = torch.cat([~key_padding_mask, key_padding_mask.new_ones(b, k)], 1)  # (B, N + K)
            attn_mask = keep[:, None, None, :]
        x = F.scaled_dot_product_attention(q, key, value, attn_mask=attn_mask)
        latents = latents + self.out(x.transpose(1, 2).reshape(b, k, d))
        return latents + self.ff(latents)


class PerceiverResampler(nn.Module):
    """``forward(tokens (B, N, D), key_padding_mask (B, N) or None) -> (B, K, D)``."""

    def __init__(self, width: int, num_tokens: int, depth: int, heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.num_tokens = num_tokens
        self.latents = nn.Parameter(torch.randn(num_tokens, width) * width ** -0.5)
        self.layers = nn.ModuleList(CrossAttentionBlock(width, heads, mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(width)

    def forward(self, tokens: torch.Tensor, key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        latents = self.latents.to(tokens.dtype).unsqueeze(0).expand(tokens.shape[0], -1, -1)
        for layer in self.layers:
            latents = layer(latents, tokens, key_padding_mask)
        return self.norm(latents)
