"""The forward-only decode renderer against the dense reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import gscodec
from gscodec.raster.forward import render_numpy
from gscodec.raster.reference import rasterize_sum as reference
from gscodec.render import to_uint8

from .conftest import decompression_bomb, random_gaussians


def _arrays(g: gscodec.GaussianImage) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return g.means, g.chol, g.colors


@pytest.mark.parametrize("width,height,n,seed", [(48, 32, 64, 0), (77, 45, 300, 1), (5, 70, 40, 2), (130, 3, 30, 3)])
def test_matches_reference(width: int, height: int, n: int, seed: int) -> None:
    g = random_gaussians(n, width, height, seed)
    ref = reference(*g.tensors(), width, height).numpy()
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
def test_thin_sheared_and_band_straddling_gaussians(shear: float) -> None:
    # thin sheared Gaussians (disjoint spans in consecutive rows, tilted strips),
    # one-row ones, odd row counts and Gaussians across a band edge must give
    # exactly the reference's mask and values
    import numba

    from gscodec.raster.footprint import prepare_footprints
    from gscodec.raster.forward import _band_bounds, _band_count

    height = 300
    gen = torch.Generator().manual_seed(int(abs(shear)) + 7)
    n = 60
    means = torch.rand(n, 2, generator=gen) * torch.tensor([90.0, float(height)])
    l22 = 0.2 + 2.0 * torch.rand(n, generator=gen)
    l22[10:20] = 0.05  # a single row or two
    chol = torch.stack([0.3 + 6 * torch.rand(n, generator=gen), shear * l22, l22], 1)
    colors = torch.rand(n, 3, generator=gen)
    m, l = means.numpy(), chol.numpy()
    pads, rows = np.empty((1, n)), np.zeros((1, n, 2), dtype=np.int64)
    prepare_footprints(m[None], l[None], np.array([n]), height, pads, rows)
    bounds = _band_bounds(m, l, pads[0], rows[0], 90, height, _band_count(height, numba.get_num_threads()))
    inner = bounds[1:-1]
    assert len(inner) and any(((rows[0, :, 0] < e) & (rows[0, :, 1] > e)).any() for e in inner)  # some straddle
    ref = reference(means, chol, colors, 90, height).numpy()
    out = render_numpy(means.numpy(), chol.numpy(), colors.numpy(), 90, height)
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
    g = random_gaussians(80, 48, 32, 7)
    kwargs = {} if size is None else {"width": size[0], "height": size[1]}
    fast = gscodec.render(g, **kwargs).astype(int)
    slow = gscodec.render(g, backend="torch", **kwargs).astype(int)
    assert fast.shape == slow.shape and np.abs(fast - slow).max() <= 1
    np.testing.assert_allclose(gscodec.render_float(g, **kwargs),
                               gscodec.render_float(g, backend="torch", **kwargs), rtol=1e-5, atol=1e-5)


def test_exp_neg_half_accuracy() -> None:
    from gscodec.raster.strips import exp_neg_half

    d2 = np.linspace(0.0, 9.0, 4001, dtype=np.float32)
    got = np.array([exp_neg_half(v) for v in d2], dtype=np.float64)
    want = np.exp(-d2.astype(np.float64) / 2)
    assert np.max(np.abs(got - want) / want) < 4e-7


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_row_recurrence_matches_reference(seed: int) -> None:
    # |l22| >= MIN_RECURRENCE_L22 takes the weight recurrence: tall, wide, sheared and
    # negative-factor Gaussians over several restart blocks and bands, odd row counts
    from gscodec.raster.strips import MIN_RECURRENCE_L22

    gen = torch.Generator().manual_seed(seed)
    n = 40
    means = torch.rand(n, 2, generator=gen) * torch.tensor([150.0, 140.0]) - 5
    l22 = MIN_RECURRENCE_L22 + 40 * torch.rand(n, generator=gen) ** 2
    l22[:4] = torch.tensor([MIN_RECURRENCE_L22, -MIN_RECURRENCE_L22, 0.999 * MIN_RECURRENCE_L22, -60.0])
    l11 = 0.4 + 50 * torch.rand(n, generator=gen) ** 2
    l11[4:8] = -l11[4:8]
    l21 = 30 * torch.randn(n, generator=gen)
    colors = torch.rand(n, 3, generator=gen) - 0.3
    chol = torch.stack([l11, l21, l22], 1)
    ref = reference(means, chol, colors, 141, 133).numpy()
    out = render_numpy(means.numpy(), chol.numpy(), colors.numpy(), 141, 133)
    np.testing.assert_array_equal(out != 0, ref != 0)
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)
    # one Gaussian at a time: the weights themselves, not a sum that could hide an error
    for k in range(0, n, 7):
        one = [t[k:k + 1] for t in (means, chol, colors)]
        np.testing.assert_allclose(render_numpy(*(t.numpy() for t in one), 141, 133),
                                   reference(*one, 141, 133).numpy(), rtol=2e-5, atol=1e-7)


def test_uint8_write_out_is_the_float_images() -> None:
    # the 8-pixel packing and the scalar tail (odd width): NaN, negative and above-1 values
    g = random_gaussians(50, 61, 19, 11)
    m, l, c = _arrays(g)
    c = c * 4 - 1
    c[3] = np.nan
    floats = render_numpy(m, l, c, 61, 19)
    assert np.isnan(floats).any() and (floats < 0).any() and (floats > 1).any()
    expected = np.floor(np.clip(np.nan_to_num(floats, nan=0.0), 0, 1) * np.float32(255) + np.float32(0.5))
    got = render_numpy(m, l, c, 61, 19, uint8=True)
    np.testing.assert_array_equal(got, expected.astype(np.uint8))


def test_strip_weights_are_the_scalar_polynomial_bit_for_bit() -> None:
    # |l22| < MIN_RECURRENCE_L22: every weight is the vector polynomial; colour 1 adds it unrounded
    from gscodec.raster.strips import MIN_RECURRENCE_L22, exp_neg_half

    means = np.array([[10.3, 7.6], [30.1, 9.2]], np.float32)
    chol = np.array([[2.5, 0.7, 0.9 * MIN_RECURRENCE_L22], [6.0, -3.0, 0.5]], np.float32)
    for k in range(2):
        out = render_numpy(means[k:k + 1], chol[k:k + 1], np.ones((1, 3), np.float32), 41, 19)
        j, i = np.meshgrid(np.arange(41, dtype=np.float32) + np.float32(0.5), np.arange(19, dtype=np.float32) + np.float32(0.5))
        z1 = (j - means[k, 0]) / chol[k, 0]
        z2 = ((i - means[k, 1]) - chol[k, 1] * z1) / chol[k, 2]
        d2 = z1 * z1 + z2 * z2
        want = np.where(d2 <= 9, np.array([exp_neg_half(v) for v in d2.ravel()], np.float32).reshape(d2.shape), 0)
        assert (d2 <= 9).sum() > 20
        np.testing.assert_array_equal(out[..., 0], want)
        np.testing.assert_array_equal(out[..., 2], want)


def test_extreme_shapes_match_reference() -> None:
    # log-uniform scales over five decades, both signs, strong shear, means off the image:
    # the block row ranges, both weight paths and the masks against the dense reference
    for seed in range(24):
        rng = np.random.default_rng(seed)
        width, height, n = int(rng.integers(1, 90)), int(rng.integers(1, 150)), int(rng.integers(1, 40))
        means = (rng.random((n, 2)) * [width * 1.4, height * 1.4] - [width * 0.2, height * 0.2]).astype(np.float32)
        l11, l22 = (10 ** rng.uniform(-2.5, 2.5, (2, n)) * rng.choice([-1, 1], (2, n))).astype(np.float32)
        l21 = (rng.standard_normal(n) * 10 ** rng.uniform(-2, 2.5, n)).astype(np.float32)
        chol = np.stack([l11, l21, l22], 1)
        colors = (rng.random((n, 3)) * 2 - 0.5).astype(np.float32)
        ref = reference(*(torch.from_numpy(a) for a in (means, chol, colors)), width, height).numpy()
        out = render_numpy(means, chol, colors, width, height)
        np.testing.assert_array_equal(out != 0, ref != 0, err_msg=f"seed {seed}")
        np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5, err_msg=f"seed {seed}")


@pytest.mark.parametrize("height,threads,count", [(512, 2, 4), (224, 2, 2), (1500, 2, 12), (300, 1, 3),
                                                  (7, 2, 2), (1, 2, 1), (128, 1, 1)])
def test_band_count_is_a_multiple_of_the_threads(height: int, threads: int, count: int) -> None:
    from gscodec.raster.forward import _band_count

    assert _band_count(height, threads) == count


def test_band_bounds_balance_the_work() -> None:
    # all the Gaussians in the top 64 rows of 600: the bands there are short, the empty ones
    # below tall but at most 2 * _MAX_BAND_ROWS; the bounds cover every row once
    from gscodec.raster.footprint import prepare_footprints
    from gscodec.raster.forward import _MAX_BAND_ROWS, _band_bounds

    g = random_gaussians(300, 200, 64, 3)
    m, l = g.means, g.chol
    pads, rows = np.empty((1, 300)), np.zeros((1, 300, 2), dtype=np.int64)
    prepare_footprints(m[None], l[None], np.array([300]), 600, pads, rows)
    bounds = _band_bounds(m, l, pads[0], rows[0], 200, 600, 4)
    heights = np.diff(bounds)
    assert bounds[0] == 0 and bounds[-1] == 600 and (heights > 0).all() and (heights <= 2 * _MAX_BAND_ROWS).all()
    assert heights[0] < 64 and heights.max() > _MAX_BAND_ROWS
    empty = _band_bounds(m[:0], l[:0], pads[0, :0], rows[0, :0], 200, 600, 4)
    np.testing.assert_array_equal(empty, [0, 150, 300, 450, 600])  # no Gaussians: equal bands


def test_footprint_pixels_bounds_the_visited_pixels() -> None:
    from gscodec.render import footprint_pixels

    one = gscodec.GaussianImage(40, 30, torch.tensor([[10.0, 10.0]]), torch.tensor([[1.0, 0.0, 2.0]]), torch.ones(1, 3))
    assert footprint_pixels(one) == (6 + 1) * (12 + 1)  # the box, plus one pixel of rounding per side
    outside = gscodec.GaussianImage(40, 30, torch.tensor([[-10.0, 10.0]]), torch.tensor([[1.0, 0.0, 1.0]]), torch.ones(1, 3))
    assert footprint_pixels(outside) == 0
    assert footprint_pixels(decompression_bomb(10)) == 10 * 65 * 65
    g = random_gaussians(80, 48, 32, 7)
    visited = sum(int((render_numpy(*(t[k:k + 1] for t in (g.means, g.chol, np.ones((80, 3), np.float32))), 48, 32)[..., 0] > 0).sum())
                  for k in range(80))
    assert 0 < visited <= footprint_pixels(g)


def test_decompression_bomb_is_refused_unless_allowed() -> None:
    from gscodec.limits import MIN_RENDER_BUDGET

    bomb = decompression_bomb(color=1e-6)
    assert bomb.count * 64 * 64 > MIN_RENDER_BUDGET
    for fn in (gscodec.render, gscodec.render_float):
        with pytest.raises(gscodec.RenderBudgetError, match="decompression bomb"):
            fn(bomb)
    with pytest.raises(gscodec.RenderBudgetError):
        gscodec.render(bomb, backend="torch")
    assert gscodec.render(bomb, max_overlap=None).shape == (64, 64, 3)  # rendered on request
    assert gscodec.render(decompression_bomb(1000, color=1e-6)).shape == (64, 64, 3)  # under the budget: rendered


def test_flush_to_zero_is_restored_on_every_thread() -> None:
    """The decoder's recurrence kernels run with flush-to-zero set around each band's Gaussians: afterwards every
    numba thread's SSE control register is as before, and denormals survive arithmetic again."""
    from numba import njit, prange

    from gscodec.raster.strips import MXCSR_FTZ, mxcsr

    @njit(parallel=True)
    def controls(n: int) -> np.ndarray:
        out = np.empty(n, np.int64)
        for i in prange(n):
            out[i] = mxcsr()
        return out

    before = set(controls(64).tolist())
    g = random_gaussians(300, 120, 200, 4)
    render_numpy(*_arrays(g), 120, 200, uint8=True)
    render_numpy(*_arrays(g), 120, 200)
    after = set(controls(64).tolist())
    assert after == before and not any(v & MXCSR_FTZ for v in after)
    assert np.float32(1e-38) * np.float32(0.01) > 0
