"""The forward-only decode renderer against the dense reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import gscodec
from gscodec.raster.forward import render_numpy
from gscodec.raster.reference import rasterize_sum as reference
from gscodec.render import to_uint8

from .conftest import random_gaussians


def _arrays(g: gscodec.GaussianImage) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return g.means.numpy(), g.chol.numpy(), g.colors.numpy()


@pytest.mark.parametrize("width,height,n,seed", [(48, 32, 64, 0), (77, 45, 300, 1), (5, 70, 40, 2), (130, 3, 30, 3)])
def test_matches_reference(width: int, height: int, n: int, seed: int) -> None:
    g = random_gaussians(width, height, n, seed)
    ref = reference(g.means, g.chol, g.colors, width, height).numpy()
    out = render_numpy(*_arrays(g), width, height)
    assert out.shape == (height, width, 3) and out.dtype == np.float32
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)
    u8 = render_numpy(*_arrays(g), width, height, uint8=True)
    assert u8.dtype == np.uint8
    assert np.abs(u8.astype(int) - to_uint8(torch.from_numpy(ref)).astype(int)).max() <= 1


def test_cutoff_mask_is_the_references() -> None:
    # one unit Gaussian per pixel-centre offset: the d2 <= 9 edge is where float32 rounding matters
    gen = torch.Generator().manual_seed(5)
    n = 200
    means = torch.rand(n, 2, generator=gen) * torch.tensor([40.0, 30.0])
    chol = torch.stack([0.5 + 3 * torch.rand(n, generator=gen), torch.randn(n, generator=gen),
                        0.5 + 3 * torch.rand(n, generator=gen)], 1)
    for k in range(0, n, 20):
        one = [t[k:k + 1] for t in (means, chol, torch.ones(n, 3))]
        ref = reference(*one, 40, 30).numpy()
        out = render_numpy(*(t.numpy() for t in one), 40, 30)
        np.testing.assert_array_equal(out > 0, ref > 0)


@pytest.mark.parametrize("shear", [0.0, 3.0, -8.0, 40.0])
def test_row_pairs_cover_each_rows_own_span(shear: float) -> None:
    # rows are rendered two at a time over the union of their spans: thin sheared
    # Gaussians (disjoint spans in consecutive rows), one-row ones, odd row counts
    # and band edges (32 rows) must still give exactly the reference's mask and values
    gen = torch.Generator().manual_seed(int(abs(shear)) + 7)
    n = 60
    means = torch.rand(n, 2, generator=gen) * torch.tensor([90.0, 70.0])
    means[:10, 1] = 31.5 + torch.rand(10, generator=gen)  # straddle the first band edge
    l22 = 0.2 + 2.0 * torch.rand(n, generator=gen)
    l22[10:20] = 0.05  # a single row or two
    chol = torch.stack([0.3 + 6 * torch.rand(n, generator=gen), shear * l22, l22], 1)
    colors = torch.rand(n, 3, generator=gen)
    ref = reference(means, chol, colors, 90, 70).numpy()
    out = render_numpy(means.numpy(), chol.numpy(), colors.numpy(), 90, 70)
    np.testing.assert_array_equal(out > 0, ref > 0)
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)


def test_gaussians_outside_and_degenerate_add_nothing() -> None:
    means = np.array([[-50.0, 5.0], [5.0, 500.0], [np.nan, 3.0], [4.0, 4.0], [3.0, 3.0]], np.float32)
    chol = np.array([[2, 0, 2], [2, 0, 2], [2, 0, 2], [0, 0, 2], [np.inf, 0, 1]], np.float32)
    colors = np.ones((5, 3), np.float32)
    assert not render_numpy(means, chol, colors, 10, 8).any()
    assert render_numpy(means[:0], chol[:0], colors[:0], 10, 8).shape == (8, 10, 3)
    assert render_numpy(means, chol, colors, 0, 8).shape == (8, 0, 3)


def test_bad_shapes_raise() -> None:
    g = random_gaussians()
    m, l, c = _arrays(g)
    with pytest.raises(ValueError, match="chol"):
        render_numpy(m, l[:, :2], c, 4, 4)
    with pytest.raises(ValueError, match="colors"):
        render_numpy(m, l, c[:-1], 4, 4)
    with pytest.raises(ValueError, match="non-negative"):
        render_numpy(m, l, c, -1, 4)
    with pytest.raises(ValueError, match="exceeds"):
        render_numpy(m, l, c, 16385, 4)


@pytest.mark.parametrize("size", [None, (31, 50)])
def test_render_uses_it_and_matches_reference(size: tuple[int, int] | None) -> None:
    g = random_gaussians(48, 32, 80, 7)
    kwargs = {} if size is None else {"width": size[0], "height": size[1]}
    fast = gscodec.render(g, **kwargs).astype(int)
    slow = gscodec.render(g, backend="torch", **kwargs).astype(int)
    assert fast.shape == slow.shape and np.abs(fast - slow).max() <= 1
    np.testing.assert_allclose(gscodec.render_float(g, **kwargs).numpy(),
                               gscodec.render_float(g, backend="torch", **kwargs).numpy(), rtol=1e-5, atol=1e-5)


def test_exp_neg_half_accuracy() -> None:
    from gscodec.raster.forward import _exp_neg_half

    d2 = np.linspace(0.0, 9.0, 4001, dtype=np.float32)
    got = np.array([_exp_neg_half(v) for v in d2], dtype=np.float64)
    want = np.exp(-d2.astype(np.float64) / 2)
    assert np.max(np.abs(got - want) / want) < 4e-7
