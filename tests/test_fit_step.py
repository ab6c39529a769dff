"""The fitter's numba helpers against their plain torch references: the fused Adam step and the blur."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from gscodec.fit.init import SHEAR_LIMIT
from gscodec.fit.optimize import _adam, _adam_torch, _chol, _State
from gscodec.fit.targets import gaussian_blur


def _state(seed: int, counts: list[int], n: int) -> _State:
    g = torch.Generator().manual_seed(seed)
    b = len(counts)
    means = torch.rand((b, n, 2), generator=g) * torch.tensor([40.0, 30.0])
    shape = torch.randn((b, n, 3), generator=g) * 0.5
    colors = torch.randn((b, n, 3), generator=g) * 0.3
    colors[0, 0] = 0.0  # sign(0) = 0: no L1 pull
    return _State(means, shape, colors, torch.tensor(counts))


def test_fused_adam_matches_torch_steps():
    counts, n = [7, 4], 7
    a, b = _state(0, counts, n), _state(0, counts, n)
    bounds = np.array([40.0, 30.0, math.log(0.3), math.log(80.0), SHEAR_LIMIT])
    g = torch.Generator().manual_seed(1)
    pad = {k: v[1, 4:].clone() for k, v in a.p.items()}
    for step in range(12):
        grads = [torch.randn((2, n, k), generator=g) * s for k, s in ((2, 3.0), (3, 2.0), (3, 1.0))]
        for x in grads:
            x[1, 4:] = 0.0  # padding slots get no gradient from the rasterizer
        lrs = np.array([[0.5, 0.1, 0.02], [0.25, 0.05, 0.01]]) * (1.0 - step / 20)
        _adam(a, grads[0], grads[1], _chol(a.p["shape"]), grads[2], lrs, (0.9, 0.999), 0.01, bounds)
        _adam_torch(b, grads[0], grads[1], _chol(b.p["shape"]), grads[2], lrs, (0.9, 0.999), 0.01, bounds)
    for k in a.GROUPS:
        torch.testing.assert_close(a.p[k][:, :4], b.p[k][:, :4], rtol=2e-5, atol=2e-5)
        torch.testing.assert_close(a.p[k][0], b.p[k][0], rtol=2e-5, atol=2e-5)
        assert torch.equal(a.p[k][1, 4:], pad[k])  # padding stays put
    torch.testing.assert_close(a.steps, b.steps)
    assert float(a.p["means"][..., 0].max()) <= 40.0 and float(a.p["means"].min()) >= 0.0
    assert float(a.p["shape"][..., 1].abs().max()) <= SHEAR_LIMIT


def _blur_reference(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """The plain definition: zero-padded separable convolution divided by the blurred all-ones image."""
    radius = max(1, int(math.ceil(3 * sigma)))
    k = torch.exp(-0.5 * (torch.arange(-radius, radius + 1, dtype=torch.float64) / sigma) ** 2)
    k = k / k.sum()
    b, c, h, w = x.shape

    def sep(t: torch.Tensor) -> torch.Tensor:
        t = F.conv2d(t, k.view(1, 1, 1, -1), padding=(0, radius))
        return F.conv2d(t, k.view(1, 1, -1, 1), padding=(radius, 0))

    planes = x.double().reshape(b * c, 1, h, w)
    return (sep(planes) / sep(torch.ones((1, 1, h, w), dtype=torch.float64))).reshape(b, c, h, w)


@pytest.mark.parametrize("shape,sigma", [((2, 3, 17, 23), 0.7), ((1, 1, 40, 9), 2.0), ((1, 2, 3, 2), 1.0),
                                         ((1, 1, 1, 1), 0.5), ((3, 1, 5, 30), 2.9)])
def test_gaussian_blur_matches_reference(shape, sigma):
    x = torch.rand(shape, generator=torch.Generator().manual_seed(2))
    out = gaussian_blur(x, sigma)
    assert out.shape == x.shape and out.dtype == torch.float32
    torch.testing.assert_close(out.double(), _blur_reference(x, sigma), rtol=1e-5, atol=1e-6)


def test_gaussian_blur_keeps_constants():
    x = torch.full((1, 2, 33, 21), 0.37)
    for sigma in (0.5, 1.5, 3.0, 6.0):
        torch.testing.assert_close(gaussian_blur(x, sigma), x, rtol=1e-5, atol=1e-6)
    assert gaussian_blur(x, 0.0) is x


def test_distinct_draws_follow_sequential_sampling_without_replacement():
    from gscodec.fit.init import _draw_distinct

    g = torch.Generator().manual_seed(3)
    w = torch.tensor([0.5, 0.0, 0.3, 0.2], dtype=torch.float64)
    pairs = np.zeros((4, 4))
    trials = 3000
    for _ in range(trials):
        a, b = _draw_distinct(w, 2, g).tolist()
        assert a != b and 1 not in (a, b)  # distinct, never a zero weight
        pairs[a, b] += 1
    # P(first a, then b) = w_a * w_b / (1 - w_a)
    expected = np.array([[w[a] * w[b] / (1 - w[a]) if a != b else 0.0 for b in range(4)] for a in range(4)])
    assert np.abs(pairs / trials - expected).max() < 0.03
    many = _draw_distinct(torch.rand(5000, generator=g, dtype=torch.float64), 4000, g)
    assert len(set(many.tolist())) == 4000
