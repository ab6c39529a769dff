"""The compressed-domain CLIP head (gscodec.clip, gsi train-head, gsi classify) with tiny configs.

Nothing here touches the network: the Hugging Face hub is put in offline mode
and the only weights used are random initialisations of tiny open_clip models.
"""

from __future__ import annotations

import copy
import io
import json
import os
import tarfile

os.environ["HF_HUB_OFFLINE"] = "1"

import pytest
import torch
from click.testing import CliRunner
from PIL import Image

import gscodec
from gscodec.clip import (ConfigError, GsiDataset, GsiTarDataset, UnknownHeadError, UnknownModelError,
                          WeightsUnavailableError, batch_from_gaussians, collate_splats, create_head, embed_gaussians,
                          get_templates, list_heads, load_clip, load_head, open_dataset, read_head_metadata,
                          save_head)
from gscodec.clip.data import read_pairs_csv
from gscodec.clip.train import TrainConfig, Trainer, trainable_summary
from gscodec.clip.zeroshot import predict, text_classifier

from .conftest import decompression_bomb, random_gaussians

ATOL = 2e-5


@pytest.fixture(autouse=True)
def _offline(monkeypatch, tmp_path_factory):
    """No network: hub offline mode and an empty, private Hugging Face cache."""
    cache = tmp_path_factory.getbasetemp() / "hf-cache"
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(cache))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache / "hub"))
    import huggingface_hub.constants as hc

    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(cache / "hub"))


@pytest.fixture(scope="module")
def tiny():
    """A tiny head on a random gsi-tiny-vit teacher: ``(head, clip)``."""
    torch.manual_seed(0)
    return create_head("gsi-tiny", pretrained="none")


@pytest.fixture(scope="module", params=["gsi-tiny", "gsi-tiny-cells"])
def pooled(request):
    """A tiny head of each pooling (resampler, cells) on a random gsi-tiny-vit teacher: ``(head, clip)``."""
    torch.manual_seed(0)
    return create_head(request.param, pretrained="none")


def _write_set(folder, n=6, captions=True, originals=True, seed=0):
    """``n`` random `.gsi` files with captions and rendered-PNG originals next to them."""
    folder.mkdir(parents=True, exist_ok=True)
    words = ["cat", "dog", "car", "tree", "boat", "house"]
    paths = []
    for i in range(n):
        g = random_gaussians(30 + 5 * i, 40 + 4 * i, 36, seed + i)
        p = folder / f"img{i}.gsi"
        gscodec.write(g, p)
        if captions:
            (folder / f"img{i}.txt").write_text(f"a photo of a {words[i % len(words)]}")
        if originals:
            Image.fromarray(gscodec.render(g)).save(folder / f"img{i}.png")
        paths.append(p)
    return paths


# --- model ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("k", [16, 98, 196])
def test_shapes(tiny, images, k):
    head, clip = tiny
    if k != head.num_tokens:
        head, _ = create_head("gsi-tiny", clip=clip, num_tokens=k)
    batch = batch_from_gaussians(images)
    assert batch.params.shape == (3, 90, 8) and batch.mask.shape == (3, 90) and batch.sizes.shape == (3, 2)
    assert batch.mask.sum(1).tolist() == [40, 90, 7]
    tokens = head.tokens(batch.params, batch.mask, batch.sizes)
    assert tokens.shape == (3, k, head.width)
    emb = head.encode(batch)
    assert emb.shape == (3, clip.embed_dim) == (3, 32)
    assert torch.allclose(emb.norm(dim=-1), torch.ones(3), atol=1e-5)


def test_padding_never_changes_the_embedding(pooled, images):
    head, _ = pooled
    head.eval()
    alone = embed_gaussians(head, images[2:])
    in_batch = embed_gaussians(head, images)[2:]  # padded from 7 to 90 Gaussians
    assert torch.allclose(alone, in_batch, atol=ATOL)
    batch = batch_from_gaussians(images[2:])
    params = torch.cat([batch.params, torch.randn(1, 500, 8).abs() + 0.5], 1)  # odd but finite padding values
    mask = torch.cat([batch.mask, torch.zeros(1, 500, dtype=torch.bool)], 1)
    with torch.no_grad():
        padded = head(params, mask, batch.sizes, normalize=True)
    assert torch.allclose(alone, padded, atol=ATOL)


def test_permutation_invariance(pooled, images):
    head, _ = pooled
    g = images[1]
    shuffled = g.permuted(torch.randperm(g.count, generator=torch.Generator().manual_seed(3)))
    a, b = embed_gaussians(head, [g, shuffled])
    assert not torch.equal(batch_from_gaussians([g]).params, batch_from_gaussians([shuffled]).params)
    assert torch.allclose(a, b, atol=ATOL)


def test_any_size_and_aspect(pooled, images):
    """Positions and shapes are normalized by the image size: a rescaled image embeds the same."""
    head, _ = pooled
    g = images[0]
    a, b, c = embed_gaussians(head, [g, g.scaled(g.width * 3, g.height * 3), g.scaled(200, 17)])
    assert torch.allclose(a, b, atol=1e-4) and torch.allclose(a, c, atol=1e-4)


def test_empty_image_is_finite(pooled):
    head, _ = pooled
    empty = gscodec.GaussianImage(8, 8, torch.zeros(0, 2), torch.zeros(0, 3), torch.zeros(0, 3))
    emb = embed_gaussians(head, [empty])
    assert torch.isfinite(emb).all()


def test_factory_lists_valid_names():
    assert {"gsi-tiny", "gsi-vit-b-16-k196", "gsi-vit-b-16-k98"} <= set(list_heads())
    with pytest.raises(UnknownHeadError) as info:
        create_head("gsi-nonexistent")
    for name in list_heads():
        assert name in str(info.value)


def test_unknown_model_and_tag():
    with pytest.raises(UnknownModelError, match="ViT-B-16"):
        load_clip("ViT-B-61", "none")
    with pytest.raises(ConfigError, match="laion2b_s34b_b79k"):
        load_clip("ViT-B-32", "no-such-tag")


# --- weights --------------------------------------------------------------------------------------------


def test_missing_weights_mocked_hub(monkeypatch):
    import open_clip.pretrained as op

    calls = []

    def fail(*args, **kwargs):
        calls.append(kwargs.get("filename"))
        raise AssertionError("no download may be tried offline")

    monkeypatch.setattr(op, "hf_hub_download", fail)
    with pytest.raises(WeightsUnavailableError) as info:
        load_clip("ViT-B-32", "laion2b_s34b_b79k")
    text = str(info.value)
    assert not calls  # offline and not cached: the hub is not asked (it would retry for about a minute)
    for needle in ("ViT-B-32", "laion2b_s34b_b79k", "laion/CLIP-ViT-B-32-laion2B-s34B-b79K", "--pretrained",
                   "HF_HOME"):
        assert needle in text
    assert info.value.__cause__ is None and (info.value.__context__ is None or info.value.__suppress_context__)


def test_missing_weights_offline_cache():
    with pytest.raises(WeightsUnavailableError, match="offline"):
        load_clip("ViT-B-16", "openai")
    with pytest.raises(WeightsUnavailableError, match="does not exist"):
        load_clip("gsi-tiny-vit", "/nonexistent/open_clip_pytorch_model.bin")


def test_checkpoint_path_weights(tmp_path, tiny):
    """--pretrained /path: the teacher's weights load from a file."""
    _, clip = tiny
    path = tmp_path / "tiny.pt"
    torch.save(clip.model.state_dict(), path)
    other = load_clip("gsi-tiny-vit", str(path))
    assert other.pretrained == str(path)
    for (k, a), (_, b) in zip(clip.model.state_dict().items(), other.model.state_dict().items()):
        assert torch.equal(a, b), k


# --- data -----------------------------------------------------------------------------------------------


def test_dataset_collate_and_bad_files(tmp_path):
    paths = _write_set(tmp_path / "d", n=3)
    (tmp_path / "d" / "bad.gsi").write_bytes(b"not a gsi file")
    ds = GsiDataset(paths + [tmp_path / "d" / "bad.gsi"])
    with pytest.warns(UserWarning, match="bad.gsi"):
        batch = collate_splats([ds[i] for i in range(len(ds))])
    assert len(batch) == 3 and batch.params.shape[1] == max(int(ds[i]["params"].shape[0]) for i in range(3))
    assert batch.mask.dtype == torch.bool
    assert torch.isfinite(batch.params).all()
    assert collate_splats([None]) is None


def test_folder_csv_and_tar_sources(tmp_path):
    paths = _write_set(tmp_path / "d", n=4)
    folder = open_dataset([tmp_path / "d"], need_caption=True)
    assert len(folder) == 4 and folder[0]["caption"].startswith("a photo of")
    csv_path = tmp_path / "pairs.csv"
    csv_path.write_text("path,caption\nd/img0.gsi,a red car\nd/img1.gsi,\"a cat, sleeping\"\n")
    rows = read_pairs_csv(csv_path)
    assert rows[1]["caption"] == "a cat, sleeping" and os.path.isabs(rows[0]["path"])
    csv_ds = open_dataset([csv_path], need_caption=True)
    assert len(csv_ds) == 2 and csv_ds[1]["caption"] == "a cat, sleeping"
    distill = open_dataset([tmp_path / "d"], image_transform=lambda im: torch.zeros(3, 8, 8))
    assert distill[0]["image"].shape == (3, 8, 8)
    shard = tmp_path / "shard-000.tar"
    with tarfile.open(shard, "w") as tf:
        for i, p in enumerate(paths):
            for name, data in ((f"s{i:03d}.gsi", p.read_bytes()), (f"s{i:03d}.txt", f"caption {i}".encode())):
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
    stream = open_dataset([shard], need_caption=True, shuffle_buffer=0)
    assert isinstance(stream, GsiTarDataset)
    samples = list(stream)
    assert [s["caption"] for s in samples] == [f"caption {i}" for i in range(4)]
    assert torch.equal(samples[2]["params"], GsiDataset([paths[2]])[0]["params"])


# --- training -------------------------------------------------------------------------------------------


def _distill_set(tmp_path, clip):
    _write_set(tmp_path / "train", n=6)
    return open_dataset([tmp_path / "train"], image_transform=clip.preprocess)


def _snapshot(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def test_frozen_parameters_stay_frozen(tmp_path, tiny):
    head0, clip = tiny
    ds = _distill_set(tmp_path, clip)
    teacher_before = _snapshot(clip.model)
    for stage in ("distill", "contrastive"):
        head = copy.deepcopy(head0)
        before = _snapshot(head)
        data = ds if stage == "distill" else open_dataset([tmp_path / "train"], need_caption=True)
        trainer = Trainer(head, clip, data, TrainConfig(stage=stage, steps=1, batch_size=4, lr=1e-2), device="cpu")
        trainer.run()
        after = head.state_dict()
        changed = {k for k in before if not torch.equal(before[k], after[k])}
        trainable = {"stem.", "resampler."} | ({"trunk.transformer.resblocks.0.", "trunk.ln_post.", "trunk.proj"}
                                               if stage == "contrastive" else set())
        frozen = [k for k in before if not any(k.startswith(t) for t in trainable)]
        assert not changed & set(frozen), f"{stage}: frozen parameters changed: {sorted(changed & set(frozen))}"
        assert any(k.startswith("stem.proj") for k in changed) and any(k.startswith("resampler.") for k in changed)
        if stage == "contrastive":
            assert "trunk.proj" in changed and any(k.startswith("trunk.transformer.resblocks.0.") for k in changed)
            assert not any(k.startswith("trunk.transformer.resblocks.1.") for k in changed)
        assert all(not p.requires_grad for n, p in head.named_parameters() if n in frozen)
    for k, v in clip.model.state_dict().items():
        assert torch.equal(v, teacher_before[k]), f"teacher parameter {k} changed"
    summary = trainable_summary(head, clip)
    assert 0 < summary["fraction_of_model"] < summary["fraction_of_head"] < 1


def test_checkpoint_resumes_exactly(tmp_path, tiny):
    head0, clip = tiny
    ds = _distill_set(tmp_path, clip)
    cfg = TrainConfig(stage="distill", steps=3, batch_size=4, lr=3e-3, warmup_steps=1, seed=5)
    straight = Trainer(copy.deepcopy(head0), clip, ds, cfg, device="cpu")
    straight.run()  # 6 images, batches of 4: step 3 starts the second epoch
    first = Trainer(copy.deepcopy(head0), clip, ds, cfg, device="cpu")
    first.run(until=2)
    first.save_checkpoint(tmp_path / "ckpt" / "last.pt")
    resumed = Trainer(copy.deepcopy(head0), clip, ds, cfg, device="cpu").resume(tmp_path / "ckpt" / "last.pt")
    assert resumed.step == 2
    resumed.run()
    assert resumed.step == straight.step == 3
    for (k, a), (_, b) in zip(straight.head.state_dict().items(), resumed.head.state_dict().items()):
        assert torch.equal(a, b), k
    sa, sb = straight.optimizer.state_dict()["state"], resumed.optimizer.state_dict()["state"]
    assert all(torch.equal(sa[i]["exp_avg_sq"], sb[i]["exp_avg_sq"]) for i in sa)
    assert straight.scheduler.get_last_lr() == resumed.scheduler.get_last_lr()
    assert straight.last_loss == resumed.last_loss
    other = TrainConfig(stage="distill", steps=3, batch_size=2, seed=5)
    with pytest.raises(Exception, match="batch_size"):
        Trainer(copy.deepcopy(head0), clip, ds, other, device="cpu").resume(tmp_path / "ckpt" / "last.pt")


def test_tar_stream_contrastive_resumes_exactly(tmp_path, tiny):
    head0, clip = tiny
    paths = _write_set(tmp_path / "d", n=6, originals=False)
    shard = tmp_path / "shard.tar"
    with tarfile.open(shard, "w") as tf:
        for p in paths:
            tf.add(p, arcname=p.name)
            tf.add(p.with_suffix(".txt"), arcname=p.with_suffix(".txt").name)
    ds = open_dataset([shard], need_caption=True, shuffle_buffer=3)
    cfg = TrainConfig(stage="contrastive", steps=3, batch_size=4, lr=1e-3, seed=1)
    straight = Trainer(copy.deepcopy(head0), clip, ds, cfg, device="cpu")
    straight.run()
    first = Trainer(copy.deepcopy(head0), clip, ds, cfg, device="cpu")
    first.run(until=2)
    first.save_checkpoint(tmp_path / "c.pt")
    resumed = Trainer(copy.deepcopy(head0), clip, ds, cfg, device="cpu").resume(tmp_path / "c.pt")
    resumed.run()
    assert resumed.epoch == straight.epoch == 1
    for (k, a), (_, b) in zip(straight.head.state_dict().items(), resumed.head.state_dict().items()):
        assert torch.equal(a, b), k


def test_head_file_roundtrip(tmp_path, tiny, images):
    head, clip = tiny
    path = tmp_path / "head.safetensors"
    save_head(head, path, clip, metadata={"stage": "distill"})
    meta = read_head_metadata(path)
    assert meta["clip_model"] == "gsi-tiny-vit" and meta["pretrained"] == "none" and meta["stage"] == "distill"
    assert json.loads(meta["config"])["num_tokens"] == head.num_tokens
    loaded, clip2 = load_head(path)
    assert torch.allclose(embed_gaussians(head, images), embed_gaussians(loaded, images), atol=1e-6)
    texts = ["a cat", "a dog"]
    assert torch.allclose(clip.encode_texts(texts), clip2.encode_texts(texts), atol=1e-6)


def test_templates_are_openai_data():
    from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES, SIMPLE_IMAGENET_TEMPLATES

    assert get_templates("openai") == [t("{c}") for t in OPENAI_IMAGENET_TEMPLATES]
    assert get_templates("simple") == [t("{c}") for t in SIMPLE_IMAGENET_TEMPLATES]
    assert len(get_templates("short")) == 1
    with pytest.raises(ConfigError, match="openai"):
        get_templates("nope")


def test_zero_shot_predict(tiny, images):
    head, clip = tiny
    classifier = text_classifier(clip, ["cat", "dog", "car"], get_templates("simple"))
    assert classifier.shape == (3, 32)
    preds = predict(embed_gaussians(head, images), classifier, ["cat", "dog", "car"], top_k=2)
    assert len(preds) == 3 and all(len(p) == 2 for p in preds)
    for p in preds:
        probs = [x.probability for x in p]
        assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-6
    full = predict(embed_gaussians(head, images), classifier, ["cat", "dog", "car"], top_k=10)
    assert all(len(p) == 3 and abs(sum(x.probability for x in p) - 1) < 1e-5 for p in full)


# --- command line ---------------------------------------------------------------------------------------


def test_cli_train_head_and_classify(tmp_path):
    from gscodec_cli.clip_commands import classify, train_head

    _write_set(tmp_path / "data", n=5)
    runner = CliRunner()
    head_path = tmp_path / "head.safetensors"
    result = runner.invoke(train_head, [str(tmp_path / "data"), "-o", str(head_path), "--head-config", "gsi-tiny",
                                        "--pretrained", "none", "--steps", "2", "--batch-size", "3", "--json",
                                        "--checkpoint-dir", str(tmp_path / "ck"), "--checkpoint-every", "1"])
    assert result.exit_code == 0, result.output
    [summary] = json.loads(result.stdout)["records"]
    assert summary["steps"] == 2 and summary["stage"] == "distill" and head_path.is_file()
    assert (tmp_path / "ck" / "last.pt").is_file()
    assert read_head_metadata(head_path)["stage"] == "distill"

    stage2 = tmp_path / "head2.safetensors"
    result = runner.invoke(train_head, [str(tmp_path / "data"), "--stage", "contrastive", "--init-head",
                                        str(head_path), "-o", str(stage2), "--steps", "1", "--batch-size", "4"])
    assert result.exit_code == 0, result.output
    assert "trainable:" in result.stderr
    assert read_head_metadata(stage2)["previous_stages"] == "distill"

    bad = tmp_path / "data" / "broken.gsi"
    bad.write_bytes(b"GSI?")
    files = [str(tmp_path / "data" / f"img{i}.gsi") for i in range(3)] + [str(bad)]
    result = runner.invoke(classify, files + ["--head", str(stage2), "--labels", "cat,dog,car", "--top-k", "2",
                                              "--json"])
    assert result.exit_code == 1
    assert "broken.gsi" in result.stderr and "Traceback" not in result.output
    doc = json.loads(result.stdout)
    assert [(r["file"], r["status"]) for r in doc["records"]] == [(f, "ok") for f in files[:3]] + [(str(bad), "failed")]
    assert not doc["ok"] and doc["records"][3]["error"] and doc["records"][3]["predictions"] == []
    rows = doc["records"][:3]
    assert all(len(r["predictions"]) == 2 and r["predictions"][0]["label"] in {"cat", "dog", "car"} for r in rows)

    result = runner.invoke(classify, files[:2] + ["--head", str(stage2), "--labels", "cat,dog", "--top-k", "1"])
    assert result.exit_code == 0, result.output
    assert "img0.gsi" in result.stdout

    result = runner.invoke(classify, files[:1] + ["--rgb", "--model", "gsi-tiny-vit", "--pretrained", "none",
                                                  "--labels", "cat,dog", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["records"][0]["mode"] == "rgb"

    # a decompression bomb among the files: reported and skipped before rendering
    (tmp_path / "bomb.gsi").write_bytes(gscodec.encode(decompression_bomb()))
    result = runner.invoke(classify, files[:1] + [str(tmp_path / "bomb.gsi"), "--rgb", "--model", "gsi-tiny-vit",
                                                  "--pretrained", "none", "--labels", "cat,dog", "--json"])
    assert result.exit_code == 1 and "bomb.gsi" in result.stderr and "decompression bomb" in result.stderr
    assert [r["file"] for r in json.loads(result.stdout)["records"] if r["status"] == "ok"] == files[:1]


def test_cli_train_head_cells_pretrains_footprints(tmp_path):
    from gscodec_cli.clip_commands import train_head

    _write_set(tmp_path / "data", n=3, captions=False)
    runner = CliRunner()
    out = tmp_path / "cells.safetensors"
    args = [str(tmp_path / "data"), "-o", str(out), "--head-config", "gsi-tiny-cells", "--pretrained", "none",
            "--steps", "1", "--batch-size", "3", "--json"]
    result = runner.invoke(train_head, args + ["--footprint-steps", "5"])
    assert result.exit_code == 0, result.output
    [row] = json.loads(result.stdout)["records"]
    assert row["head_config"] == "gsi-tiny-cells" and 0 < row["footprint_error"] < 10
    assert "footprint pretraining" in result.stderr
    result = runner.invoke(train_head, args + ["--footprint-steps", "0"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["records"][0]["footprint_error"] is None
    result = runner.invoke(train_head, args[:-1] + ["--footprint-steps", "-1"])
    assert result.exit_code == 2


def test_cli_missing_weights_is_a_clear_error(tmp_path):
    from gscodec_cli.clip_commands import classify

    _write_set(tmp_path / "d", n=1, captions=False, originals=False)
    result = CliRunner().invoke(classify, [str(tmp_path / "d" / "img0.gsi"), "--rgb", "--model", "ViT-B-16",
                                           "--pretrained", "openai", "--labels", "cat,dog"])
    assert result.exit_code == 1
    assert "ViT-B-16" in result.stderr and "openai" in result.stderr and "--pretrained" in result.stderr
    assert "Traceback" not in result.output
    result = CliRunner().invoke(classify, [str(tmp_path / "d" / "img0.gsi"), "--labels", "a"])
    assert result.exit_code == 2 and "--head" in result.output
