"""Shared fixtures: small deterministic Gaussian images."""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch: two OpenMP pools share the cores

import pytest
import torch

from gscodec import GaussianImage


def random_gaussians(width: int = 48, height: int = 32, n: int = 64, seed: int = 0) -> GaussianImage:
    """``n`` random Gaussians roughly tiling a ``width`` x ``height`` image."""
    gen = torch.Generator().manual_seed(seed)
    means = torch.rand(n, 2, generator=gen) * torch.tensor([width, height])
    base = (width * height / max(n, 1)) ** 0.5
    l11 = base * (0.3 + torch.rand(n, generator=gen))
    l22 = base * (0.3 + torch.rand(n, generator=gen))
    l21 = base * 0.5 * torch.randn(n, generator=gen)
    colors = torch.rand(n, 3, generator=gen) * 0.6 - 0.05
    return GaussianImage(width, height, means, torch.stack([l11, l21, l22], 1), colors)


def decompression_bomb(n: int = 70000, size: int = 64, color: float = 1e-3) -> GaussianImage:
    """``n`` Gaussians that each cover all of a ``size`` x ``size`` image: 70,000 of them pass the render budget."""
    means = torch.full((n, 2), size / 2.0)
    chol = torch.tensor([[float(size), 0.0, float(size)]]).repeat(n, 1)
    return GaussianImage(size, size, means, chol, torch.full((n, 3), color))


@pytest.fixture
def gaussians() -> GaussianImage:
    return random_gaussians()
