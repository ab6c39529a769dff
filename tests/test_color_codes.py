"""Integer refinement of colour codes: same grid, same geometry, never a larger error."""

from __future__ import annotations

import numpy as np
import torch

from gscodec.fit.codes import refine_color_codes
from gscodec.quantize import COLOR_RGB, Quantization, snap
from gscodec.raster.reference import rasterize_sum

from .conftest import random_gaussians


def _sse(g, target) -> float:
    img = rasterize_sum(*g.tensors(), g.width, g.height).clamp(0, 1)
    return float(((img - target) ** 2).sum())


def test_refinement_stays_on_grid_and_lowers_the_error() -> None:
    for q in (Quantization(color_bits=4, chroma_bits=4), Quantization(color_bits=4, color_transform=COLOR_RGB)):
        truth = random_gaussians(60, 40, 32, seed=3)
        target = rasterize_sum(*truth.tensors(), 40, 32).clamp(0, 1)
        g = snap(truth, q)
        out = refine_color_codes(g, target, q, sweeps=30, backend="cpu")
        assert snap(out, q).equal(out)
        assert np.array_equal(out.means, g.means) and np.array_equal(out.chol, g.chol)
        assert _sse(out, target) < 0.97 * _sse(g, target)


def test_refinement_of_an_empty_image_is_a_no_op() -> None:
    g = snap(random_gaussians(0, 8, 8), Quantization())
    assert refine_color_codes(g, torch.zeros(8, 8, 3), Quantization()) is g
