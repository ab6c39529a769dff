"""The splat-aware stem: per-Gaussian features projected to the trunk width.

Every Gaussian is one token. Its features are computed from the raw
parameters ``(x, y, l11, l21, l22, r, g, b)`` (pixels) and the image size, in
coordinates normalized by the image size (x by the width, y by the height), so
any size and aspect ratio maps onto the unit square, as the trunk's squashed
RGB input does:

* position: ``2u - 1`` and Fourier features ``sin/cos(2 pi f u)`` for
  ``fourier_bands`` frequencies ``f`` geometric in ``[1, max_frequency]``;
* shape: the covariance's eigen-decomposition in normalized coordinates,
  ``log sigma1``, ``log sigma2`` (major, minor standard deviations) and the
  rotation as ``cos 2theta``, ``sin 2theta`` (continuous: theta and
  theta + pi are the same ellipse);
* colour: RGB amplitude.

The scalar features are standardized with fixed statistics (buffers; they can
be calibrated from data once before training), concatenated with the Fourier
features, projected by a linear layer or an MLP and layer-normalized. Every
step is per token, so padding and the order of the Gaussians cannot leak into
a token.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from .config import StemConfig

PARAMS = 8
"""Raw values per Gaussian: ``x, y, l11, l21, l22, r, g, b`` (pixels, display units)."""

SCALAR_FEATURES = ("u", "v", "log_sigma1", "log_sigma2", "cos2theta", "sin2theta", "r", "g", "b")
_PRIOR_MEAN = (0.0, 0.0, -4.0, -4.6, 0.0, 0.0, 0.15, 0.15, 0.15)
_PRIOR_STD = (0.58, 0.58, 1.0, 1.0, 0.7, 0.7, 0.3, 0.3, 0.3)


def scalar_features(params: torch.Tensor, sizes: torch.Tensor) -> torch.Tensor:
    """Normalized position, log-scales, rotation and colour of every Gaussian.

    Args:
        params: ``(B, N, 8)`` raw ``x, y, l11, l21, l22, r, g, b`` (pixels).
        sizes: ``(B, 2)`` image ``(width, height)`` in pixels.

    Returns:
        ``(B, N, 9)`` float32: ``2x/w - 1, 2y/h - 1, log sigma1, log sigma2,
        cos 2theta, sin 2theta, r, g, b`` with sigmas in units of the image side.
    """
    params = params.float()
    w = sizes[:, 0].float().view(-1, 1)
    h = sizes[:, 1].float().view(-1, 1)
    u = params[..., 0] / w
    v = params[..., 1] / h
    # Cholesky factor of the covariance in normalized coordinates: diag(1/w, 1/h) @ L.
    l11 = params[..., 2].abs() / w
    l21 = params[..., 3] / h
    l22 = params[..., 4].abs() / h
    a = l11 * l11
    b = l11 * l21
    c = l21 * l21 + l22 * l22
    half_diff = 0.5 * (a - c)
    r = torch.sqrt(half_diff * half_diff + b * b)
    lam1 = 0.5 * (a + c) + r
    tiny = torch.finfo(torch.float32).tiny
    log_s1 = 0.5 * torch.log(lam1.clamp_min(tiny))
    # sigma1 * sigma2 = sqrt(det) = l11 * l22: no cancellation for thin ellipses.
    log_s2 = torch.log((l11 * l22).clamp_min(tiny)) - log_s1
    isotropic = r <= 1e-7 * lam1
    r_safe = torch.where(isotropic, torch.ones_like(r), r)
    cos2 = torch.where(isotropic, torch.ones_like(r), half_diff / r_safe)
    sin2 = torch.where(isotropic, torch.zeros_like(r), b / r_safe)
    rgb = params[..., 5:8]
    return torch.cat([torch.stack([2 * u - 1, 2 * v - 1, log_s1, log_s2, cos2, sin2], -1), rgb], -1)


def fourier_features(uv: torch.Tensor, frequencies: torch.Tensor) -> torch.Tensor:
    """``sin`` and ``cos`` of ``2 pi f u`` for every frequency and axis.

    Args:
        uv: ``(..., 2)`` positions in ``[0, 1]`` (fractions of width and height).
        frequencies: ``(F,)`` cycles per image side.

    Returns:
        ``(..., 4F)``: ``sin`` for both axes, then ``cos`` for both axes.
    """
    angles = (uv.unsqueeze(-1) * (2 * math.pi * frequencies)).flatten(-2)  # (..., 2F)
    return torch.cat([angles.sin(), angles.cos()], -1)


def fourier_affine(frequencies: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(M (2, 4F), c (4F,))`` with ``sin(s @ M + c)`` = :func:`fourier_features` of ``u = (s + 1) / 2``.

    ``s`` is the position in ``[-1, 1]`` (the first two scalar features);
    ``2 pi f u = pi f s + pi f``, and ``cos a = sin(a + pi / 2)``, so all
    ``4F`` features come from one small matrix product and one ``sin``.
    """
    w = math.pi * frequencies.float()
    z = torch.zeros_like(w)
    m = torch.stack([torch.cat([w, z, w, z]), torch.cat([z, w, z, w])])
    c = torch.cat([w, w, w + 0.5 * math.pi, w + 0.5 * math.pi])
    return m, c


class SplatStem(nn.Module):
    """Per-Gaussian tokens for the resampler.

    ``forward(params (B, N, 8), sizes (B, 2)) -> (B, N, width)``, where
    ``width`` is the resampler's inner width (``resampler.attn_dim``), not
    necessarily the trunk's: the stem's projection and layer norm run on every
    Gaussian, so their width is a per-Gaussian cost.
    """

    def __init__(self, config: StemConfig, width: int) -> None:
        super().__init__()
        self.config = config
        self.width = width
        bands = config.fourier_bands
        if bands > 0:
            freqs = torch.logspace(0.0, math.log2(config.max_frequency), bands, base=2.0) if bands > 1 \
                else torch.ones(1)
        else:
            freqs = torch.zeros(0)
        self.register_buffer("frequencies", freqs.float())
        self.register_buffer("feature_mean", torch.tensor(_PRIOR_MEAN, dtype=torch.float32))
        self.register_buffer("feature_std", torch.tensor(_PRIOR_STD, dtype=torch.float32))
        in_dim = len(SCALAR_FEATURES) + 4 * bands
        self.in_dim = in_dim
        if config.projection == "linear":
            self.proj: nn.Module = nn.Linear(in_dim, width)
        else:
            self.proj = nn.Sequential(nn.Linear(in_dim, config.hidden), nn.GELU(), nn.Linear(config.hidden, width))
        self.norm = nn.LayerNorm(width)

    def features(self, params: torch.Tensor, sizes: torch.Tensor) -> torch.Tensor:
        """``(B, N, in_dim)`` standardized scalar features followed by Fourier features.

        The reference definition of the stem's input: :meth:`forward` computes
        ``norm(proj(features))`` without materializing it (see there).
        """
        scal = scalar_features(params, sizes)
        parts = [(scal - self.feature_mean) / self.feature_std]
        if self.frequencies.numel():
            parts.append(fourier_features((scal[..., :2] + 1) * 0.5, self.frequencies))
        return torch.cat(parts, -1)

    @torch.no_grad()
    def calibrate(self, params: torch.Tensor, mask: torch.Tensor, sizes: torch.Tensor) -> None:
        """Set the standardization statistics from the real Gaussians of a batch.

        Args:
            params: ``(B, N, 8)``; mask: ``(B, N)`` True for real Gaussians; sizes: ``(B, 2)``.
        """
        scal = scalar_features(params, sizes)[mask]
        if scal.shape[0] < 2:
            return
        self.feature_mean.copy_(scal.mean(0))
        self.feature_std.copy_(scal.std(0).clamp_min(1e-3))

    def forward(self, params: torch.Tensor, sizes: torch.Tensor) -> torch.Tensor:
        """``norm(proj(features(params, sizes)))``: :meth:`project` of :func:`scalar_features`."""
        return self.project(scalar_features(params, sizes))

    def project(self, scal: torch.Tensor) -> torch.Tensor:
        """Tokens ``(..., width)`` from :func:`scalar_features` ``(..., 9)``, without the feature tensor.

        The standardization is folded into the first linear layer (its weight
        columns divided by the std, the mean moved into the bias: a ``D x 9``
        rescale per call), and the Fourier features are one ``(BN, 2) x (2, 4F)``
        product and one in-place ``sin`` (:func:`fourier_affine`); the two
        parts are accumulated into the projection's output (no concatenation).
        Equal to ``norm(proj(features))`` up to float rounding.
        """
        first = self.proj if isinstance(self.proj, nn.Linear) else self.proj[0]
        dtype = first.weight.dtype
        lead, ns = scal.shape[:-1], scal.shape[-1]
        flat = scal.reshape(-1, ns)
        w_scal = first.weight[:, :ns] / self.feature_std.to(dtype)
        bias = first.bias - w_scal @ self.feature_mean.to(dtype)
        x = torch.addmm(bias, flat.to(dtype), w_scal.t())
        if self.frequencies.numel():
            m, c = fourier_affine(self.frequencies)
            angles = torch.addmm(c, flat[:, :2].float(), m).sin_()  # float32 angles (up to 2 pi max_frequency)
            x = x.addmm_(angles.to(dtype), first.weight[:, ns:].t())
        if not isinstance(self.proj, nn.Linear):
            x = self.proj[2](self.proj[1](x))
        return self.norm(x.view(*lead, x.shape[-1]))
