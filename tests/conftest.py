"""Shared fixtures: small deterministic Gaussian images."""

from __future__ import annotations

import math
import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch: two OpenMP pools share the cores

import pytest
import torch

from gscodec import GaussianImage


Params = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def random_gaussians(n: int = 64, width: int = 48, height: int = 32, seed: int = 0) -> GaussianImage:
    """``n`` random Gaussians roughly tiling a ``width`` x ``height`` image, colours mostly in [0, 1]."""
    gen = torch.Generator().manual_seed(seed)
    means = torch.rand(n, 2, generator=gen) * torch.tensor([width, height])
    base = (width * height / max(n, 1)) ** 0.5
    l11 = base * (0.3 + torch.rand(n, generator=gen))
    l22 = base * (0.3 + torch.rand(n, generator=gen))
    l21 = base * 0.5 * torch.randn(n, generator=gen)
    colors = torch.rand(n, 3, generator=gen) * 0.6 - 0.05
    return GaussianImage(width, height, means, torch.stack([l11, l21, l22], 1), colors)


def random_params(n: int, width: int, height: int, seed: int, *, batch: int | None = None,
                  sigma: float | None = None, margin: float = 2.0, sigma_offset: float = 0.3) -> Params:
    """Rasterizer inputs for kernel tests: means ``(.., N, 2)`` spread ``margin`` px beyond the image, chol
    ``(.., N, 3)`` with mixed anisotropy around ``sigma`` (default ``0.5 * sqrt(W * H / N) + sigma_offset``),
    signed colours ``(.., N, 3)``; ``batch`` adds a leading dimension."""
    g = torch.Generator().manual_seed(seed)
    lead = (n,) if batch is None else (batch, n)
    if sigma is None:
        sigma = 0.5 * math.sqrt(width * height / max(n, 1)) + sigma_offset
    size = torch.tensor([width, height], dtype=torch.float32)
    means = torch.rand(*lead, 2, generator=g) * (size + 2 * margin) - margin
    l11 = sigma * torch.exp(0.5 * torch.randn(*lead, generator=g))
    l22 = sigma * torch.exp(0.5 * torch.randn(*lead, generator=g))
    l21 = sigma * torch.randn(*lead, generator=g)
    colors = torch.randn(*lead, 3, generator=g)
    return means, torch.stack([l11, l21, l22], -1), colors


def decompression_bomb(n: int = 70000, size: int = 64, color: float = 1e-3) -> GaussianImage:
    """``n`` Gaussians that each cover all of a ``size`` x ``size`` image: 70,000 of them pass the render budget."""
    means = torch.full((n, 2), size / 2.0)
    chol = torch.tensor([[float(size), 0.0, float(size)]]).repeat(n, 1)
    return GaussianImage(size, size, means, chol, torch.full((n, 3), color))


@pytest.fixture
def gaussians() -> GaussianImage:
    return random_gaussians()


@pytest.fixture(scope="module")
def images() -> list[GaussianImage]:
    """Three images of different sizes and Gaussian counts (40, 90, 7): padded batches for the CLIP heads."""
    return [random_gaussians(40, 48, 32, 0), random_gaussians(90, 64, 64, 1), random_gaussians(7, 30, 50, 2)]
