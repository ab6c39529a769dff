"""Distillation sets (gscodec.clip.distill_set), Gaussian-domain augmentations, token-level training, fidelity.

Tiny everything: two committed test photos, 16x16 crops of a few Gaussians,
the gsi-tiny head on a randomly initialised gsi-tiny-vit teacher; no network.
"""

from __future__ import annotations

import json
import os
import shutil
import tarfile
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"

import numpy as np
import pytest
import torch

import gscodec
from gscodec.clip import create_head
from gscodec.clip.augment import View, apply_gaussians, apply_params, apply_pixels, color_matrix, random_view
from gscodec.clip.data import collate_splats, gaussians_to_params
from gscodec.clip.distill_set import (DistillDataset, DistillSetError, build_split, cache_targets, crop_views,
                                      load_targets, read_shard, shard_problems, targets_path)
from gscodec.clip.fidelity import evaluator, fidelity_metrics
from gscodec.clip.model import spatial_log_overlap
from gscodec.clip.ssl_teacher import nt_xent, simclr_views
from gscodec.clip.train import TrainConfig, Trainer
from gscodec.render import render_float

from .conftest import random_gaussians

DATA = Path(__file__).parent / "data"
PHOTOS = [DATA / "chelsea.png", DATA / "coffee.png"]


def _build(out: Path, logs: list[str]) -> list[Path]:
    return build_split(PHOTOS, out, "train", 2, size=16, points=6, effort=1, shard_size=2, log=logs.append)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A built split (2 photos x 2 crops in 2 shards) and the build's log."""
    out = tmp_path_factory.mktemp("set")
    logs: list[str] = []
    shards = _build(out, logs)
    return out, shards, logs


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return create_head("gsi-tiny", pretrained="none")


# --- Gaussian-domain augmentations -----------------------------------------------------------------------


def test_flip_of_parameters_renders_as_flip_of_render():
    g = random_gaussians(60, 40, 28, 3)
    view = View.identity(40, 28)
    flipped = apply_gaussians(g, View(view.box, hflip=True))
    a = np.asarray(render_float(flipped))
    b = np.asarray(render_float(g))[:, ::-1]
    assert np.allclose(a, b, atol=1e-5)


def test_colour_matrix_and_whole_pixel_shift_commute_with_rendering():
    g = random_gaussians(50, 32, 32, 4)
    m = color_matrix(0.8, 0.6, (1.05, 0.95, 1.0))
    a = np.asarray(render_float(apply_gaussians(g, View((0.0, 0.0, 32.0, 32.0), False, m))))
    b = np.asarray(render_float(g)) @ np.asarray(m, dtype=np.float32).reshape(3, 3).T
    assert np.allclose(a, b, atol=1e-5)
    shifted = np.asarray(render_float(apply_gaussians(g, View((5.0, 3.0, 32.0, 32.0)))))
    full = np.asarray(render_float(g))
    # Inside the frame the shifted render is the render moved by (5, 3) pixels; Gaussians dropped by the crop
    # lie over 3 sigma outside, so only their tails differ.
    assert np.allclose(shifted[:29, :27], full[3:, 5:], atol=2e-2)


def test_pixel_views_match_parameter_views_for_flips_and_colour():
    pixels = np.random.default_rng(0).integers(0, 256, (12, 10, 3), dtype=np.uint8)
    assert np.array_equal(apply_pixels(pixels, View((0.0, 0.0, 10.0, 12.0), True)), pixels[:, ::-1])
    view = random_view(10, 12, np.random.default_rng(1))
    assert apply_pixels(pixels, view).shape == pixels.shape
    assert View.from_list(view.to_list()) == View(tuple(float(v) for v in view.box), view.hflip,
                                                 tuple(float(np.float32(c)) for c in view.color)) or \
        np.allclose(View.from_list(view.to_list()).to_list(), view.to_list())


def test_random_views_of_the_gaussians_render_as_the_views_of_the_render():
    # The teacher's target of a view is computed on apply_pixels of the crop; the head sees apply_params of its
    # Gaussians. The two must show the same picture, also where a view would reach past the border (the
    # Gaussians' sum does not stop there, the pixels do). Colour is left out: it commutes up to 8-bit clipping of
    # this test image's out-of-range sums (test above).
    g = random_gaussians(40, 32, 32, 7)
    pixels = np.asarray(gscodec.render(g))
    rng = np.random.default_rng(3)
    for _ in range(24):
        view = random_view(32, 32, rng, gain=(1.0, 1.0), saturation=(1.0, 1.0), channel=0.0)
        a = np.clip(np.asarray(render_float(apply_gaussians(g, view))) * 255.0, 0, 255)
        b = apply_pixels(pixels, view).astype(np.float32)
        psnr = 10 * np.log10(255.0 ** 2 / max(float(np.mean((a - b) ** 2)), 1e-12))
        assert psnr > 30.0, (view, psnr)


def test_crop_zoom_scales_the_covariance():
    params = torch.tensor([[8.0, 8.0, 2.0, 0.5, 1.0, 1.0, 0.0, 0.0]])
    out = apply_params(params, (16, 16), View((4.0, 4.0, 8.0, 8.0)))
    assert torch.allclose(out[0, :5], torch.tensor([8.0, 8.0, 4.0, 1.0, 2.0]))


# --- the set builder ---------------------------------------------------------------------------------------


def test_build_writes_shards_with_manifests_and_resumes(built, tmp_path):
    out, shards, logs = built
    assert len(shards) == 2 and all(s.is_file() for s in shards)
    samples = [s for shard in shards for s in read_shard(shard)]
    assert len(samples) == 4
    assert all(s.gaussians.count == 6 and s.pixels.shape == (16, 16, 3) for s in samples)
    assert {s.item["photo"] for s in samples} == {str(p.resolve()) for p in PHOTOS}
    # A second run skips both finished shards without touching them.
    mtimes = [s.stat().st_mtime_ns for s in shards]
    again: list[str] = []
    _build(out, again)
    assert [s.stat().st_mtime_ns for s in shards] == mtimes
    assert sum("complete, skipped" in m for m in again) == 2
    # An interrupted run: one shard missing -> only it is built.
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    (copy / shards[1].name).unlink()
    partial: list[str] = []
    _build(copy, partial)
    assert sum("complete, skipped" in m for m in partial) == 1
    assert (copy / shards[1].name).is_file() and not shard_problems(copy / shards[1].name)


def test_corrupt_member_is_skipped_and_the_shard_rebuilt(built, tmp_path):
    out, shards, _ = built
    copy = tmp_path / "corrupt"
    shutil.copytree(out, copy)
    shard = copy / shards[0].name
    with tarfile.open(shard) as tf:
        member = next(m for m in tf.getmembers() if m.name.endswith(".gsi"))
        offset = member.offset_data
    data = bytearray(shard.read_bytes())
    data[offset + member.size // 2] ^= 0xFF  # same size: only the digests can tell
    shard.write_bytes(bytes(data))
    problems = shard_problems(shard)
    assert len(problems) == 1 and member.name in problems[0]
    with pytest.warns(UserWarning, match="does not match its manifest digest"):
        left = read_shard(shard)
    assert len(left) == 1 and left[0].key != member.name[:-4]
    logs: list[str] = []
    _build(copy, logs)
    assert any("rebuilding" in m for m in logs)
    assert not shard_problems(shard) and len(read_shard(shard)) == 2


def test_cached_targets_match_a_recomputation(built, tiny):
    _, shards, _ = built
    _, clip = tiny
    paths = cache_targets(shards, clip, "tiny", views=3, view_seed=5, log=lambda m: None)
    assert paths == [targets_path(s, "tiny") for s in shards]
    mtime = paths[0].stat().st_mtime_ns
    cache_targets(shards, clip, "tiny", views=3, view_seed=5, log=lambda m: None)  # up to date: kept
    assert paths[0].stat().st_mtime_ns == mtime
    cached = load_targets(shards[0], "tiny", clip)
    samples = read_shard(shards[0])
    assert cached["keys"] == [s.key for s in samples]
    assert cached["targets"].shape == (2, 3, clip.embed_dim)
    for i, s in enumerate(samples):
        views = crop_views(s.key, 16, 16, 3, 5)
        assert np.allclose(cached["views"][i], np.asarray([v.to_list() for v in views], dtype=np.float32))
        inputs = torch.stack([clip.preprocess_array(apply_pixels(s.pixels, v)) for v in views])
        assert np.allclose(cached["targets"][i], clip.encode_images(inputs).numpy(), atol=1e-5)
    # Another teacher's fingerprint is refused.
    torch.manual_seed(1)
    _, other = create_head("gsi-tiny", pretrained="none")
    with pytest.raises(Exception, match="another teacher"):
        load_targets(shards[0], "tiny", other)


def test_targets_of_an_older_format_are_recomputed_and_refused(built, tiny, tmp_path):
    _, shards, _ = built
    _, clip = tiny
    shard = tmp_path / shards[0].name
    shutil.copy(shards[0], shard)
    shutil.copy(shards[0].with_name(shards[0].name[:-4] + ".manifest.json"), tmp_path)
    path = cache_targets([shard], clip, "tiny", views=2, log=lambda m: None)[0]
    with np.load(path) as z:
        old = {k: z[k] for k in z.files}
    meta = json.loads(str(old["meta"]))
    old["meta"] = np.asarray(json.dumps({**meta, "format": "gscodec-distill-targets"}))
    np.savez(path, **old)
    with pytest.raises(DistillSetError, match="format"):
        load_targets(shard, "tiny", clip)
    logs: list[str] = []
    cache_targets([shard], clip, "tiny", views=2, log=logs.append)
    assert logs and load_targets(shard, "tiny", clip)["meta"]["format"] == meta["format"]
    with np.load(path) as z:
        broken = {k: z[k] for k in z.files}
    broken["meta"] = np.asarray("[1, 2]")
    np.savez(path, **broken)
    with pytest.raises(DistillSetError, match="not a JSON object"):
        load_targets(shard, "tiny", clip)


def test_dataset_views_transform_the_gaussians(built, tiny):
    _, shards, _ = built
    _, clip = tiny
    cache_targets(shards, clip, "tiny", views=3, view_seed=5, log=lambda m: None)
    ds = DistillDataset(shards, "tiny", views=2, image_transform=clip.preprocess)
    assert ds.crops == 4 and len(ds) == 8
    first, second = ds[0], ds[1]
    base = gaussians_to_params(read_shard(shards[0])[0].gaussians)
    assert torch.equal(first["params"], base)
    view = View.from_list(load_targets(shards[0], "tiny")["views"][0][1])
    assert torch.allclose(second["params"], apply_params(base, (16, 16), view))
    assert first["image"].shape == (3, 64, 64) and first["target"].shape == (clip.embed_dim,)
    assert DistillDataset(shards, "tiny", views=1, limit=2).crops == 2


# --- training on a distillation set --------------------------------------------------------------------------


def test_token_level_training_with_eval_every_and_selection(built, tiny):
    _, shards, _ = built
    head, clip = tiny
    import copy

    head = copy.deepcopy(head)
    head_cfg = head.config
    cache_targets(shards, clip, "tiny", views=2, log=lambda m: None)
    train = DistillDataset(shards, "tiny", image_transform=clip.preprocess)
    val = DistillDataset(shards[:1], "tiny", views=1)
    cfg = TrainConfig(stage="distill", steps=4, batch_size=4, lr=1e-3, token_weight=1.0, embed_weight=0.0,
                      eval_every=2, select_metric="cosine", gaussian_dropout=0.1)
    trainer = Trainer(head, clip, train, cfg, device="cpu")
    events = []
    summary = trainer.run(progress=events.append, evaluate=evaluator(val))
    assert [h["step"] for h in trainer.history] == [2, 4]
    assert sum("eval" in e for e in events) == 2
    assert summary["best_step"] in (2, 4) and "retrieval@1" in summary["eval"]
    assert head.config == head_cfg
    # The joint loss (tokens + embedding + contrastive) runs through the trunk with the cached targets.
    cfg2 = TrainConfig(stage="distill", steps=2, batch_size=4, token_weight=0.5, contrast_weight=0.5)
    loss = Trainer(head, clip, train, cfg2, device="cpu").train_step()
    assert np.isfinite(loss)


def test_spatial_bias_prefers_the_gaussians_own_cell():
    # One small Gaussian in the top-left cell of a 4x4 slot grid over a 32x32 image.
    params = torch.tensor([[[4.0, 4.0, 1.0, 0.0, 1.0, 1.0, 1.0, 1.0]]])
    bias = spatial_log_overlap(params, torch.tensor([[32.0, 32.0]]), (4, 4), 0.5)
    assert bias.shape == (1, 16, 1)
    assert int(bias[0, :, 0].argmax()) == 0
    assert float(bias[0, 1, 0]) > float(bias[0, 5, 0]) > float(bias[0, 15, 0])
    head, clip = create_head("gsi-tiny", pretrained="none")
    from gscodec.clip.config import HeadConfig

    d = json.loads(head.config.to_json())
    d["resampler"].update(spatial_bias=True, output_norm=False)
    biased, _ = create_head(HeadConfig.from_dict(d), pretrained="none")
    g = [random_gaussians(20, 32, 32, 5), random_gaussians(9, 24, 40, 6)]
    from gscodec.clip import batch_from_gaussians

    batch = batch_from_gaussians(g)
    full = biased.encode(batch)
    one = torch.cat([biased.encode(batch_from_gaussians([x])) for x in g])
    assert torch.allclose(full, one, atol=1e-5)  # padding does not leak through the bias


def test_fidelity_metrics_and_simclr_pieces():
    t = torch.nn.functional.normalize(torch.randn(12, 8), dim=-1)
    m = fidelity_metrics(t, t, classifier=torch.randn(5, 8), gallery=4)
    assert m["cosine"] == pytest.approx(1.0) and m["retrieval@1"] == 1.0 and m["zero_shot_agreement"] == 1.0
    assert m["retrieval@1_g4"] == 1.0
    a = torch.nn.functional.normalize(torch.randn(6, 8), dim=-1)
    assert float(nt_xent(a, a, 0.1)) < float(nt_xent(a, a.flip(0), 0.1))
    photo = np.random.default_rng(0).integers(0, 256, (40, 60, 3), dtype=np.uint8)
    va, vb = simclr_views(photo, 16, np.random.default_rng(0))
    assert va.shape == vb.shape == (16, 16, 3)
    assert collate_splats([None]) is None


def test_ssl_teacher_schedule_shrink_and_view_accuracy(tmp_path, capsys):
    from gscodec.clip.ssl_teacher import _lr_factor, shrink_photo, train_ssl_teacher, view_accuracy

    assert _lr_factor(0.0) < _lr_factor(0.04) < _lr_factor(0.05) == pytest.approx(1.0)  # warm-up
    assert _lr_factor(0.525) == pytest.approx(0.51) and _lr_factor(1.0) == pytest.approx(0.02)  # cosine to the floor
    photo = np.random.default_rng(0).integers(0, 256, (90, 120, 3), dtype=np.uint8)
    assert shrink_photo(photo, 30).shape == (30, 40, 3) and shrink_photo(photo, 200) is photo
    from PIL import Image

    for i in range(2):
        Image.fromarray(np.roll(photo, 17 * i, axis=1)).save(tmp_path / f"p{i}.png")
    paths = sorted(tmp_path.glob("*.png"))
    clip, info = train_ssl_teacher(paths, "gsi-tiny-vit", steps=3, batch_size=4, short_side=48, val_photos=paths[:1],
                                   patch_dropout=0.5, log=lambda m: None)
    assert info["steps"] == 3 and set(info["view_accuracy_after"]) == {"train", "val"}
    assert isinstance(clip.model.visual.patch_dropout, torch.nn.Identity)  # dropout only while training
    assert not clip.model.training and 0.0 <= view_accuracy(clip, [photo], n=4) <= 1.0
    # a time limit ends the run, and the schedule reaches its end by then, however many steps were asked for
    _, info = train_ssl_teacher(paths, "gsi-tiny-vit", steps=10**6, batch_size=4, max_seconds=0.5, short_side=48,
                                log=lambda m: None)
    assert 1 <= info["steps"] < 10**6 and info["seconds"] < 30
    from gscodec.clip.ssl_teacher import main, save_teacher

    save_teacher(clip, tmp_path / "t.pt")
    main([str(tmp_path), str(tmp_path / "t.pt"), "--model", "gsi-tiny-vit", "--view-accuracy", "--short-side", "48"])
    assert "view accuracy" in capsys.readouterr().out


def test_cell_head_pretrains_footprints_then_trains_on_tokens(built):
    """footprint_steps: the pair MLP is pretrained and the output layer set from the teacher's patch embedding
    before the first step of a fresh run (not on resume); then token-level training goes on from there."""
    _, shards, _ = built
    torch.manual_seed(0)
    head, clip = create_head("gsi-tiny-cells", pretrained="none")
    cache_targets(shards, clip, "tiny-cells", views=1, log=lambda m: None)
    train = DistillDataset(shards, "tiny-cells", image_transform=clip.preprocess)
    cfg = TrainConfig(stage="distill", steps=2, batch_size=4, lr=1e-4, token_weight=1.0, embed_weight=0.0,
                      footprint_steps=20)
    trainer = Trainer(head, clip, train, cfg, device="cpu")
    mlp_before = [p.detach().clone() for p in head.cells.mlp.parameters()]
    trainer.train_step()
    assert trainer.footprints_done and np.isfinite(trainer.footprint_error) and trainer.footprint_error < 2.0
    assert any(not torch.equal(a, b) for a, b in zip(mlp_before, head.cells.mlp.parameters()))
    conv = clip.model.visual.conv1.weight
    std = torch.tensor(clip.model.visual.preprocess_cfg["std"]).view(1, 3, 1, 1)
    # One AdamW step at lr 1e-4 moves each weight by about 1e-4 from the patch embedding it was set to.
    assert torch.allclose(head.cells.out.weight, (conv / std).flatten(1), atol=5e-4)
    with pytest.raises(ValueError, match="footprint_steps"):
        TrainConfig(footprint_steps=-1)


def test_cli_builds_with_two_workers(tmp_path):
    """``--workers 2`` (two words) runs two processes, each with its share of the shards."""
    from gscodec.clip.distill_set import main

    photos = tmp_path / "photos"
    photos.mkdir()
    for p in PHOTOS:
        shutil.copy(p, photos / p.name)
    out = tmp_path / "set"
    with pytest.raises(SystemExit) as exc:
        main([str(photos), str(out), "--per-photo", "1", "--size", "16", "--points", "6", "--shard-size", "1",
              "--workers", "2"])
    assert exc.value.code == 0
    assert sorted(p.name for p in out.glob("*.tar")) == ["train-00000.tar", "train-00001.tar"]
    assert all(not shard_problems(p) for p in out.glob("*.tar"))
