"""Cell pooling (gscodec.clip.cells): tokens as sums of per-Gaussian, per-cell terms, with tiny configs."""

from __future__ import annotations

import json
import os

os.environ["HF_HUB_OFFLINE"] = "1"

import pytest
import torch

from gscodec.clip import (ConfigError, HeadConfig, batch_from_gaussians, create_head, embed_gaussians, list_heads,
                          load_head, save_head)
from gscodec.clip.cells import cell_pairs, cell_sums, pair_footprints
from gscodec.render import render_float

from .conftest import random_gaussians


@pytest.fixture(scope="module")
def cells():
    """A tiny cell-pooling head on a random gsi-tiny-vit teacher (4x4 patch grid of 16 pixels): ``(head, clip)``."""
    torch.manual_seed(0)
    return create_head("gsi-tiny-cells", pretrained="none")


def _params(*gaussians: list[float]) -> torch.Tensor:
    return torch.tensor([list(g) for g in gaussians], dtype=torch.float32).unsqueeze(0)


def test_listed_with_its_pooling(cells):
    head, _ = cells
    assert {"gsi-tiny-cells", "gsi-small-cells"} <= set(list_heads())
    assert head.config.pooling == "cells" and head.stem is None and head.resampler is None
    counts = head.parameter_counts()
    assert set(counts) == {"cells", "trunk", "total", "trainable"} and counts["cells"] > 0


def test_pairs_cover_the_three_sigma_box():
    # 64x64 image, 4x4 cells of 16 px. A Gaussian at (20, 40) with sigma 2 (x) and 5 (y): its box spans
    # x 14..26 (cells 0, 1) and y 25..55 (cells 1, 2, 3).
    params = _params([20.0, 40.0, 2.0, 0.0, 5.0, 1.0, 0.5, 0.25])
    g, cell, offset = cell_pairs(params, torch.ones(1, 1, dtype=torch.bool), torch.tensor([[64, 64]]), (4, 4))
    assert sorted(cell.tolist()) == [4, 5, 8, 9, 12, 13]
    assert g.tolist() == [0] * 6
    for c, (dx, dy) in zip(cell.tolist(), offset.tolist()):
        row, col = divmod(c, 4)
        assert dx == pytest.approx(20 / 16 - (col + 0.5)) and dy == pytest.approx(40 / 16 - (row + 0.5))


def test_padding_and_hostile_values_make_no_pairs_or_bounded_ones():
    params = _params([8.0, 8.0, 1.0, 0.0, 1.0, 1.0, 1.0, 1.0],
                     [float("nan"), float("inf"), float("inf"), -float("inf"), 1e30, 1.0, 1.0, 1.0],
                     [-1e30, 1e30, 1e-30, 0.0, 0.0, 1.0, 1.0, 1.0],
                     [8.0, 8.0, 1e30, 1e30, 1e30, 1.0, 1.0, 1.0])
    mask = torch.tensor([[True, True, True, False]])
    g, cell, offset = cell_pairs(params, mask, torch.tensor([[64, 64]]), (4, 4))
    assert 3 not in g.tolist()  # padding
    assert cell.numel() <= 3 * 16 and int(cell.min()) >= 0 and int(cell.max()) < 16
    assert torch.isfinite(offset).all()


def test_too_many_pairs_is_a_clear_error_before_allocating(cells, monkeypatch):
    """A bomb (many Gaussians that each cover the whole image) is refused by the pair count, and a batch of
    more pairs than one MLP chunk gives the same tokens as the pairs in one go."""
    import gscodec.clip.cells as cells_mod
    from gscodec.clip.cells import CellPairsError

    head, _ = cells
    n = 5000
    params = torch.tensor([[32.0, 32.0, 40.0, 0.0, 40.0, 0.1, 0.1, 0.1]]).repeat(n, 1).unsqueeze(0)
    mask = torch.ones(1, n, dtype=torch.bool)
    sizes = torch.tensor([[64, 64]])
    monkeypatch.setattr(cells_mod, "MAX_CELL_PAIRS", 16 * n - 1)
    with pytest.raises(CellPairsError, match="pairs"):
        head.tokens(params, mask, sizes)
    monkeypatch.setattr(cells_mod, "MAX_CELL_PAIRS", 16 * n)
    with torch.no_grad():
        whole = head.tokens(params[:, :100], mask[:, :100], sizes)
        monkeypatch.setattr(cells_mod, "CHUNK_PAIRS", 7)
        chunked = head.tokens(params[:, :100], mask[:, :100], sizes)
    assert torch.allclose(whole, chunked, atol=1e-4)


def test_forward_equals_the_sum_over_pairs(cells, images):
    """The last MLP layer applied per cell (forward) equals summing every pair's ``rgb (x) mlp(features)``."""
    head, _ = cells
    c = head.cells
    batch = batch_from_gaussians(images)
    with torch.no_grad():
        g, cell, offset = cell_pairs(batch.params, batch.mask, batch.sizes, c.slots)
        a = c.mlp(c.features(c.gaussian_terms(batch.params, batch.sizes)[g], offset))
        rgb = batch.params.flatten(0, 1)[g, 5:8]
        sums = torch.zeros(3 * 16, 3 * a.shape[1]).index_add_(0, cell, (rgb.unsqueeze(-1) * a.unsqueeze(1)).flatten(1))
        reference = c.out(sums).view(3, 16, -1)
        assert torch.allclose(c(batch.params, batch.mask, batch.sizes), reference, atol=1e-5)


def _cell_sums_reference(rgb: torch.Tensor, h: torch.Tensor, cell: torch.Tensor, cells: int) -> torch.Tensor:
    return torch.zeros(cells, 3 * h.shape[1], dtype=h.dtype).index_add(0, cell, (rgb.unsqueeze(-1) * h.unsqueeze(1)).flatten(1))


@pytest.mark.parametrize("pairs", [0, 1, 37])
def test_cell_sums_match_the_outer_products_in_values_and_gradients(pairs):
    gen = torch.Generator().manual_seed(pairs)
    rgb = torch.randn(pairs, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    h = torch.randn(pairs, 5, generator=gen, dtype=torch.float64, requires_grad=True)
    cell = torch.randint(0, 6, (pairs,), generator=gen)
    got = cell_sums(rgb, h, cell, 6)
    want = _cell_sums_reference(rgb, h, cell, 6)
    assert got.shape == (6, 15) and torch.allclose(got.double(), want, atol=1e-5)
    weights = torch.randn(6, 15, generator=gen, dtype=torch.float64)
    if pairs:
        grads = torch.autograd.grad((got.double() * weights).sum(), (rgb, h))
        want_grads = torch.autograd.grad((want * weights).sum(), (rgb, h))
        for a, b in zip(grads, want_grads):
            assert torch.allclose(a, b, atol=1e-5)
        # only the activations need a gradient (the usual training case)
        (g_h,) = torch.autograd.grad((cell_sums(rgb.detach(), h, cell, 6).double() * weights).sum(), (h,))
        assert torch.allclose(g_h, want_grads[1], atol=1e-5)


def test_cell_sums_stay_float32_under_mixed_precision(cells, images):
    # The trainer runs the head under autocast (bf16 or fp16) on a GPU; the sparse product must neither run in
    # low precision nor break the backward. CPU autocast to bf16 stands in for it here.
    head, _ = cells
    batch = batch_from_gaussians(images)
    with torch.no_grad():
        ref = head.cells(batch.params, batch.mask, batch.sizes)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = head.cells(batch.params, batch.mask, batch.sizes)
    out.float().pow(2).sum().backward()
    grads = [p.grad for p in head.cells.mlp.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert (out.float() - ref).norm() <= 0.05 * ref.norm()
    head.zero_grad(set_to_none=True)


def test_token_shapes(cells, images):
    # Padding, permutation, size and aspect, empty images: the tests of test_clip.py, run on both poolings.
    head, _ = cells
    batch = batch_from_gaussians(images)
    assert head.tokens(batch.params, batch.mask, batch.sizes).shape == (3, 16, head.width)


def test_tokens_are_linear_in_the_colours_and_local(cells):
    """A token is a sum over Gaussians of (pair term x colour): scaling or adding colours does the same to the
    tokens' Gaussian part, and a Gaussian well inside one cell moves that cell's token only."""
    head, _ = cells
    sizes = torch.tensor([[64, 64]])
    one = torch.ones(1, 2, dtype=torch.bool)
    base = _params([24.0, 40.0, 1.5, 0.3, 1.0, 0.2, 0.4, 0.6], [40.0, 10.0, 6.0, -2.0, 3.0, 0.5, 0.1, 0.3])
    with torch.no_grad():
        zero = head.tokens(base * torch.tensor([1.0] * 5 + [0.0] * 3), one, sizes)
        t1 = head.tokens(base, one, sizes) - zero
        scaled = base.clone()
        scaled[..., 5:] *= -2.5
        assert torch.allclose(head.tokens(scaled, one, sizes) - zero, -2.5 * t1, atol=1e-4)
        first = head.tokens(base[:, :1], one[:, :1], sizes) - zero
        second = head.tokens(base[:, 1:], one[:, 1:], sizes) - zero
        assert torch.allclose(first + second, t1, atol=1e-4)
    moved = (first.abs().sum(-1) > 1e-6).nonzero()[:, 1].tolist()
    assert moved == [2 * 4 + 1]  # (24, 40) lies in row 2, column 1; its 3-sigma box stays inside


def _patch_tokens(head, clip, gs):
    """The teacher's patch embedding (plus slot positions) of the unclamped renders at its input size."""
    visual = clip.model.visual
    size = tuple(visual.image_size)
    pixels = torch.stack([torch.from_numpy(render_float(g.scaled(size[1], size[0]))).permute(2, 0, 1)
                          for g in gs]).float()
    mean = torch.tensor(visual.preprocess_cfg["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(visual.preprocess_cfg["std"]).view(1, 3, 1, 1)
    with torch.no_grad():
        grid = visual.conv1((pixels - mean) / std)
        return grid.flatten(2).transpose(1, 2) + head.slot_pos_embed()


def test_exact_footprints_with_the_patch_embedding_are_the_render_path(cells):
    """The reference footprints, summed per cell with the colours and mapped by the teacher's patch embedding
    (init_from_patch_embedding), give the patch tokens of the render, at any image size."""
    head, clip = cells
    import copy

    head = copy.deepcopy(head)
    visual = clip.model.visual
    head.cells.init_from_patch_embedding(visual.conv1.weight, visual.preprocess_cfg["mean"],
                                         visual.preprocess_cfg["std"])
    gs = [random_gaussians(30, 64, 64, 11), random_gaussians(50, 96, 40, 12)]
    batch = batch_from_gaussians(gs)
    g, cell, offset = cell_pairs(batch.params, batch.mask, batch.sizes, head.slots)
    a = pair_footprints(batch.params, batch.sizes, g, offset, head.slots, head.cells.footprint)
    assert a.shape == (g.numel(), 16 * 16)
    rgb = batch.params.flatten(0, 1)[g, 5:8]
    sums = torch.zeros(2 * 16, 3 * 256).index_add_(0, cell, (rgb.unsqueeze(-1) * a.unsqueeze(1)).flatten(1))
    with torch.no_grad():
        tokens = head.cells.out(sums).view(2, 16, -1) + head.slot_pos_embed()
    target = _patch_tokens(head, clip, gs)
    assert torch.allclose(tokens, target, atol=1e-3 * float(target.abs().max()))


def test_pretrained_footprints_approach_the_render_path(cells):
    """After pretrain_footprints and the patch-embedding init, the pooled tokens are close to the patch tokens
    of the render on images not pretrained on."""
    head, clip = cells
    import copy

    from gscodec.clip.train import pretrain_footprints

    head = copy.deepcopy(head)
    visual = clip.model.visual
    train = batch_from_gaussians([random_gaussians(24, 64, 64, s) for s in range(100, 132)])
    held = [random_gaussians(24, 64, 64, s) for s in range(200, 208)]
    hb = batch_from_gaussians(held)
    target = _patch_tokens(head, clip, held)
    pos = head.slot_pos_embed().detach()

    def rel_error() -> float:
        with torch.no_grad():
            t = head.tokens(hb.params, hb.mask, hb.sizes)
        return float((t - target).pow(2).sum() / (target - pos).pow(2).sum())

    head.cells.init_from_patch_embedding(visual.conv1.weight, visual.preprocess_cfg["mean"],
                                         visual.preprocess_cfg["std"])
    head.calibrate(train.params, train.mask, train.sizes)
    before = rel_error()
    err = pretrain_footprints(head.cells, train.params, train.mask, train.sizes, steps=300, lr=3e-3, seed=0)
    after = rel_error()
    assert err < 0.25 and after < 0.25 and after < 0.2 * before, (err, after, before)


def test_head_file_roundtrip_and_config_errors(tmp_path, cells, images):
    head, clip = cells
    path = tmp_path / "head.safetensors"
    save_head(head, path, clip)
    loaded, _ = load_head(path)
    assert loaded.config.pooling == "cells"
    assert torch.allclose(embed_gaussians(head, images), embed_gaussians(loaded, images), atol=1e-6)
    d = json.loads(head.config.to_json())
    with pytest.raises(ConfigError, match="pooling"):
        HeadConfig.from_dict({**d, "pooling": "grid"})
    with pytest.raises(ConfigError, match="unknown cells"):
        HeadConfig.from_dict({**d, "cells": {"hidden": 4, "depth": 2}})
    with pytest.raises(ConfigError, match="cells.hidden"):
        HeadConfig.from_dict({**d, "cells": {"hidden": 0}})
    with pytest.raises(ConfigError, match="cells.hidden"):
        create_head(HeadConfig.from_dict({**d, "cells": {"hidden": 10 ** 6}}), clip=clip)
