"""The numba CPU rasterizer against the dense PyTorch reference: values, masks and gradients."""

from __future__ import annotations


import numpy as np
import pytest
import torch

from gscodec.raster import rasterize_sum as public_rasterize_sum
from gscodec.raster.cpu import rasterize_sum, squared_error_grad, target_blocks
from gscodec.raster.reference import rasterize_sum as reference

from .conftest import Params, random_params

def assert_matches_reference(
    params: Params, width: int, height: int, counts: torch.Tensor | None = None, seed: int = 0
) -> None:
    """Values match the float32 reference; gradients match the float64 reference (random upstream gradient)."""
    means, chol, colors = params
    out = rasterize_sum(means, chol, colors, width, height, counts)
    expected = reference(means, chol, colors, width, height, counts)
    assert out.dtype == torch.float32 and out.shape == expected.shape
    scale = max(1.0, expected.abs().max().item())
    torch.testing.assert_close(out, expected, rtol=0.0, atol=1e-5 * scale)

    leaves = [p.detach().clone().requires_grad_(True) for p in params]
    grad_out = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed + 1))
    grads = torch.autograd.grad(rasterize_sum(*leaves, width, height, counts), leaves, grad_out)
    leaves64 = [p.detach().double().requires_grad_(True) for p in params]
    expected_grads = torch.autograd.grad(
        reference(*leaves64, width, height, counts), leaves64, grad_out.double()
    )
    for name, got, want in zip(("means", "chol", "colors"), grads, expected_grads):
        assert got.dtype == torch.float32 and got.shape == want.shape, name
        tol = 1e-4 * max(want.abs().max().item(), 1e-6)
        torch.testing.assert_close(got.double(), want, rtol=1e-4, atol=tol, msg=lambda m: f"{name}: {m}")


@pytest.mark.parametrize(
    ("n", "width", "height", "seed"),
    [(300, 64, 48, 0), (40, 17, 9, 1), (7, 1, 1, 2), (12, 1, 13, 3), (25, 31, 2, 4), (1, 20, 20, 5)],
)
def test_random_cases(n: int, width: int, height: int, seed: int) -> None:
    assert_matches_reference(random_params(n, width, height, seed), width, height, seed=seed)


def test_real_image_like() -> None:
    """64x48 with 300 smallish Gaussians: the density of a real fit."""
    g = torch.Generator().manual_seed(10)
    n, width, height = 300, 64, 48
    means = torch.rand(n, 2, generator=g) * torch.tensor([width, height])
    l11 = 1.5 * torch.exp(0.4 * torch.randn(n, generator=g))
    l22 = 1.5 * torch.exp(0.4 * torch.randn(n, generator=g))
    l21 = 0.6 * torch.randn(n, generator=g)
    colors = 0.3 * torch.randn(n, 3, generator=g) + 0.1
    assert_matches_reference((means, torch.stack([l11, l21, l22], -1), colors), width, height, seed=10)


def test_border_and_off_image() -> None:
    width, height = 23, 15
    means = torch.tensor(
        [[0.0, 0.0], [23.0, 15.0], [-2.0, 7.0], [11.5, -3.0], [25.0, 3.0], [-30.0, -30.0], [100.0, 7.0], [11.0, 90.0]]
    )
    chol = torch.tensor([[2.0, 0.5, 1.5]] * 8)
    colors = torch.randn(8, 3, generator=torch.Generator().manual_seed(3))
    assert_matches_reference((means, chol, colors), width, height, seed=3)

    off = [p[5:].clone().requires_grad_(True) for p in (means, chol, colors)]
    out = rasterize_sum(*off, width, height)
    assert torch.count_nonzero(out) == 0
    for grad in torch.autograd.grad(out, off, torch.ones_like(out)):
        assert torch.count_nonzero(grad) == 0


def test_tiny_gaussians() -> None:
    """l ~ 0.05 px: only pixel centres within ~0.15 px of the mean are hit."""
    g = torch.Generator().manual_seed(4)
    n, width, height = 30, 12, 10
    centres = torch.stack([torch.randint(0, width, (n,), generator=g), torch.randint(0, height, (n,), generator=g)], -1)
    means = centres.float() + 0.5 + 0.08 * torch.randn(n, 2, generator=g)
    chol = torch.stack([0.05 + 0.01 * torch.rand(n, generator=g), 0.02 * torch.randn(n, generator=g),
                        0.05 + 0.01 * torch.rand(n, generator=g)], -1)
    colors = torch.randn(n, 3, generator=g)
    out = rasterize_sum(means, chol, colors, width, height)
    assert torch.count_nonzero(out.abs().sum(-1)) > 0
    assert_matches_reference((means, chol, colors), width, height, seed=4)


def test_huge_gaussians() -> None:
    """l ~ 3x the image: every pixel is inside every ellipse."""
    width, height = 19, 14
    means, chol, colors = random_params(6, width, height, seed=5, sigma=3.0 * width)
    assert_matches_reference((means, chol, colors), width, height, seed=5)


def test_anisotropic_large_l21() -> None:
    width, height = 40, 30
    g = torch.Generator().manual_seed(6)
    n = 20
    means = torch.rand(n, 2, generator=g) * torch.tensor([width, height])
    l11 = 0.5 + 3.0 * torch.rand(n, generator=g)
    l21 = 12.0 * torch.randn(n, generator=g)
    l22 = 0.2 + 0.5 * torch.rand(n, generator=g)
    colors = torch.randn(n, 3, generator=g)
    assert_matches_reference((means, torch.stack([l11, l21, l22], -1), colors), width, height, seed=6)


def _unit_gaussian_per_image(means: torch.Tensor, chol: torch.Tensor, width: int, height: int) -> None:
    """Forward and backward footprints of one unit-colour Gaussian per image equal the float32 reference mask."""
    colors = torch.ones(means.shape[0], 1, 3, requires_grad=True)
    out = rasterize_sum(means, chol, colors, width, height)
    expected = reference(means, chol, colors.detach(), width, height)
    assert torch.equal(out > 0, expected > 0)
    # the forward pass is the decoder's strip renderer: weights within its ~1e-5 (row recurrence; where
    # its restarts fall depends on the band edges, as in test_raster_forward's 2e-5 case)
    torch.testing.assert_close(out, expected, rtol=2e-5, atol=1e-7)
    # With an all-ones upstream gradient, dL/dcolor is the sum of the weights over the backward's footprint.
    (grad,) = torch.autograd.grad(out, colors, torch.ones_like(out))
    want = expected.double().sum((1, 2))[:, None, :]
    torch.testing.assert_close(grad.double(), want, rtol=1e-5, atol=1e-5)


def test_mask_is_bit_exact_random() -> None:
    batch, width, height = 64, 29, 21
    means, chol, _ = random_params(1, width, height, seed=7, sigma=4.0, batch=batch)
    chol[::3, :, 1] *= 6.0
    chol[1::3, :, 2] *= 0.1
    _unit_gaussian_per_image(means, chol, width, height)


def test_mask_is_bit_exact_near_ties() -> None:
    """Centres on pixel centres and l in thirds, sixths, ...: hundreds of pixels have d2 within 1e-5 of 9.

    Comparing a float64 d2 with the cutoff instead of the reference's float32 one flips 84 of them.
    """
    sizes = [1 / 3, 0.6, 0.75, 1.0, 1.5, 3 / 2**0.5, 5 / 3, 2 / 3, 1 / 6]
    chol = torch.tensor([[a, c, b] for a in sizes for b in sizes for c in (0.0, 0.5, -1.0, 1 / 3)])[:, None, :]
    means = torch.full((chol.shape[0], 1, 2), 8.5)
    means[1::2] += torch.tensor([0.25, -0.5])
    _unit_gaussian_per_image(means, chol, 16, 16)


def test_single_and_empty() -> None:
    width, height = 9, 7
    assert_matches_reference(random_params(1, width, height, seed=8, sigma=2.0), width, height, seed=8)

    empty = [torch.zeros(0, 2, requires_grad=True), torch.zeros(0, 3, requires_grad=True),
             torch.zeros(0, 3, requires_grad=True)]
    out = rasterize_sum(*empty, width, height)
    assert out.shape == (height, width, 3) and torch.count_nonzero(out) == 0
    grads = torch.autograd.grad(out, empty, torch.ones_like(out))
    assert [tuple(g.shape) for g in grads] == [(0, 2), (0, 3), (0, 3)]
    assert rasterize_sum(*(p[None] for p in empty), width, height).shape == (1, height, width, 3)


def test_batched_with_counts() -> None:
    batch, n, width, height = 4, 50, 21, 16
    means, chol, colors = random_params(n, width, height, seed=9, batch=batch)
    means[2, 30:] = float("nan")  # padding is never read
    counts = torch.tensor([50, 0, 30, 1])
    assert_matches_reference((means.nan_to_num(), chol, colors), width, height, counts=counts, seed=9)

    leaves = [p.clone().requires_grad_(True) for p in (means, chol, colors)]
    out = rasterize_sum(*leaves, width, height, counts)
    assert torch.isfinite(out).all() and torch.count_nonzero(out[1]) == 0
    for grad in torch.autograd.grad(out, leaves, torch.randn(out.shape)):
        assert torch.count_nonzero(grad[1]) == 0 and torch.count_nonzero(grad[2, 30:]) == 0
        assert torch.count_nonzero(grad[3, 1:]) == 0 and torch.isfinite(grad).all()

    full = rasterize_sum(means.nan_to_num(), chol, colors, width, height)
    torch.testing.assert_close(full, reference(means.nan_to_num(), chol, colors, width, height), rtol=0, atol=1e-4)


def test_non_contiguous_inputs_and_partial_grads() -> None:
    width, height = 27, 18
    means, chol, colors = random_params(33, width, height, seed=11)
    means_t = means.t().contiguous().t()
    chol_s = torch.cat([chol, torch.zeros_like(chol)], -1)[:, :3]
    colors_s = torch.stack([colors, colors], 0)[1]
    assert not means_t.is_contiguous() and not chol_s.is_contiguous()
    assert_matches_reference((means_t, chol_s, colors_s), width, height, seed=11)

    colors_leaf = colors.clone().requires_grad_(True)
    out = rasterize_sum(means_t, chol_s, colors_leaf, width, height)
    (grad,) = torch.autograd.grad(out.sum(), colors_leaf)  # expanded (stride 0) upstream gradient
    leaf64 = colors.double().requires_grad_(True)
    (want,) = torch.autograd.grad(reference(means.double(), chol.double(), leaf64, width, height).sum(), leaf64)
    torch.testing.assert_close(grad.double(), want, rtol=1e-4, atol=1e-4 * want.abs().max().item())


def test_public_wrapper_dispatches_here() -> None:
    params = random_params(20, 16, 12, seed=12)
    torch.testing.assert_close(
        public_rasterize_sum(*params, 16, 12, backend="cpu"), rasterize_sum(*params, 16, 12), rtol=0, atol=0
    )


def test_rejects_bad_shapes() -> None:
    means, chol, colors = random_params(5, 8, 8, seed=13)
    with pytest.raises(ValueError):
        rasterize_sum(means, chol[:4], colors, 8, 8)
    with pytest.raises(ValueError):
        rasterize_sum(means[None], chol[None], colors[None], 8, 8, counts=torch.tensor([1, 2]))


@pytest.mark.parametrize(("n", "width", "height", "seed"), [(300, 64, 48, 0), (40, 17, 9, 1), (60, 203, 35, 2)])
def test_squared_error_grad_is_the_autograd_step_bit_for_bit(n: int, width: int, height: int, seed: int) -> None:
    """The fitter's fused step equals autograd through the rasterizer with the upstream ``2 (render - target)``,
    and its squared error is the clamped render's; widths that are not a multiple of 8, padding, batches."""
    batch = 3
    means, chol, colors = random_params(n, width, height, seed=seed, batch=batch)
    counts = torch.tensor([n, n // 2, 0])
    targets = torch.rand((batch, height, width, 3), generator=torch.Generator().manual_seed(seed))
    sse, *grads = squared_error_grad(means, chol, colors, width, height, counts, target_blocks(targets))

    leaves = [p.detach().clone().requires_grad_(True) for p in (means, chol, colors)]
    out = rasterize_sum(*leaves, width, height, counts)
    want_sse = ((out.detach().clamp(0, 1) - targets) ** 2).double().sum((1, 2, 3))
    want = [2.0 * g for g in torch.autograd.grad(out, leaves, out.detach() - targets)]
    assert sse.shape == (batch,) and sse.dtype == np.float64
    np.testing.assert_allclose(sse, want_sse.numpy(), rtol=1e-12)
    for name, got, expected in zip(("means", "chol", "colors"), grads, want):
        assert got.dtype == torch.float32 and torch.equal(got, expected), name
    assert all(torch.count_nonzero(g[2]) == 0 for g in grads)  # an image with no Gaussians


def test_squared_error_grad_matches_the_reference_gradient() -> None:
    """Against the float64 dense reference: d/dparams of sum((render - target)^2)."""
    width, height, n = 30, 22, 45
    means, chol, colors = random_params(n, width, height, seed=11, batch=1)
    targets = torch.rand((1, height, width, 3), generator=torch.Generator().manual_seed(3))
    _, *grads = squared_error_grad(means, chol, colors, width, height, torch.tensor([n]), target_blocks(targets))
    leaves = [p.detach().double().requires_grad_(True) for p in (means, chol, colors)]
    loss = ((reference(*leaves, width, height) - targets.double()) ** 2).sum()
    for got, want in zip(grads, torch.autograd.grad(loss, leaves)):
        torch.testing.assert_close(got.double(), want, rtol=1e-4, atol=1e-4 * want.abs().max().item())
