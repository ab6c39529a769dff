"""The dense PyTorch baseline of benchmarks/bench_dense_fit.py is the same algorithm as the fitter."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from bench_dense_fit import DenseFitter, initial_params, load_image, timing_config  # noqa: E402

from gscodec.fit import fit  # noqa: E402
from gscodec.fit.targets import as_target  # noqa: E402
from gscodec.fit.init import chol_from_shape  # noqa: E402
from gscodec.fit.optimize import color_l1_weight  # noqa: E402
from gscodec.raster import rasterize_sum  # noqa: E402

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    return load_image(DATA / "chelsea.png", 32, 24)


def _grads(fitter: DenseFitter) -> tuple[float, list[torch.Tensor]]:
    loss = fitter.loss()
    grads = torch.autograd.grad(loss, (fitter.means, fitter.shape, fitter.colors))
    return float(loss.detach()), list(grads)


def test_dense_loss_and_gradients_match_numba_step(image: np.ndarray) -> None:
    cfg = timing_config(40, 5)
    target = as_target(image)
    dense = DenseFitter(target, *initial_params(target, cfg), cfg)
    loss_d, grads_d = _grads(dense)
    # the fitter's step: the same loss rendered by the numba kernels and their hand-written backward
    chol = chol_from_shape(dense.shape)
    render = rasterize_sum(dense.means, chol, dense.colors, dense.w, dense.h, backend="cpu")
    reg = color_l1_weight(cfg, dense.w, dense.h)
    loss_n = ((render - target) ** 2).sum() + reg * dense.colors.abs().sum()
    grads_n = torch.autograd.grad(loss_n, (dense.means, dense.shape, dense.colors))
    assert loss_d == pytest.approx(float(loss_n.detach()), rel=1e-5)
    for gd, gn in zip(grads_d, grads_n):
        torch.testing.assert_close(gd, gn, rtol=1e-3, atol=1e-3 * float(gn.abs().max()))


def test_dense_trajectory_matches_fit(image: np.ndarray) -> None:
    cfg = timing_config(40, 6)
    result = fit(image, cfg).gaussians
    target = as_target(image)
    dense = DenseFitter(target, *initial_params(target, cfg), cfg)
    for _ in range(cfg.iterations):
        dense.step()
    means, chol, colors = result.tensors()
    moved = (means - initial_params(target, cfg)[0]).abs().max()
    assert moved > 0.05  # the steps did something, so agreeing below means something
    torch.testing.assert_close(means, dense.means.detach(), rtol=0, atol=1e-3)
    torch.testing.assert_close(chol, chol_from_shape(dense.shape.detach()), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(colors, dense.colors.detach(), rtol=1e-4, atol=1e-4)


def _backward_grads(fitter: DenseFitter) -> tuple[float, list[torch.Tensor]]:
    loss = fitter.backward()
    return loss, [p.grad for p in (fitter.means, fitter.shape, fitter.colors)]


def test_checkpointed_step_has_the_same_gradients(image: np.ndarray) -> None:
    cfg = timing_config(40, 5)
    target = as_target(image)
    params = initial_params(target, cfg)
    whole = DenseFitter(target, *params, cfg)
    chunked = DenseFitter(target, *params, cfg, memory_gb=7 * 34 * 32 * 24 / 1e9)
    assert not whole.checkpointed and chunked.checkpointed and chunked.chunk == 7
    loss_w, grads_w = _backward_grads(whole)
    loss_c, grads_c = _backward_grads(chunked)
    assert loss_c == pytest.approx(loss_w, rel=1e-6)
    for gw, gc in zip(grads_w, grads_c):
        torch.testing.assert_close(gc, gw, rtol=1e-4, atol=1e-5 * float(gw.abs().max()))
