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


@pytest.fixture
def gaussians() -> GaussianImage:
    return random_gaussians()
