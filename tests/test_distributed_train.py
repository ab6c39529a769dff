"""Data-parallel `gsi train-head` under torchrun (2 CPU processes, gloo) on a tiny random-weights model.

Nothing touches the network: the teacher is ``gsi-tiny-vit`` with random weights
and the Hugging Face hub is in offline mode.
"""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import torch

import gscodec
from gscodec.clip import GsiTarDataset
from gscodec.clip.train import EpochSampler

from .conftest import random_gaussians

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
            "-m", "gscodec_cli.main"]


def _shards(folder: Path, shards: int = 2, per_shard: int = 4) -> list[Path]:
    """Tar shards of random `.gsi` files with captions (KEY.gsi + KEY.txt)."""
    folder.mkdir(parents=True, exist_ok=True)
    words = ["cat", "dog", "car", "tree", "boat", "house", "bird", "fish"]
    paths = []
    for s in range(shards):
        path = folder / f"{s:03d}.tar"
        with tarfile.open(path, "w") as tf:
            for i in range(per_shard):
                key = f"{s:03d}{i:03d}"
                g = random_gaussians(20 + 3 * i, 32, 32, seed=10 * s + i)
                for name, data in ((f"{key}.gsi", gscodec.encode(g)),
                                   (f"{key}.txt", f"a photo of a {words[(s + i) % len(words)]}".encode())):
                    info = tarfile.TarInfo(name)
                    info.size = len(data)
                    tf.addfile(info, io.BytesIO(data))
        paths.append(path)
    return paths


def test_tar_dataset_splits_by_rank_and_worker(tmp_path: Path) -> None:
    shards = _shards(tmp_path / "s", shards=5, per_shard=2)
    ds = GsiTarDataset(shards)
    everything = sorted(s["key"] for s in ds)
    parts = []
    for rank in range(2):
        ds.set_rank(rank, 2)
        parts.append(sorted(s["key"] for s in ds))
        assert ds.rank_shards() == [str(p) for p in shards[rank::2]]
    assert not set(parts[0]) & set(parts[1]) and sorted(parts[0] + parts[1]) == everything
    ds.set_rank(1, 2)
    loader = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=2)
    assert sorted(s["key"] for s in loader) == parts[1]  # rank 1's shards, divided between its two workers
    with pytest.raises(ValueError):
        ds.set_rank(2, 2)


def test_epoch_sampler_slices_are_disjoint() -> None:
    parts = [list(EpochSampler(11, seed=3, epoch=1, rank=r, world_size=3)) for r in range(3)]
    assert sorted(sum(parts, [])) == list(range(11)) and [len(p) for p in parts] == [4, 4, 3]
    assert list(EpochSampler(11, 3, 1)) == list(EpochSampler(11, 3, 1, rank=0, world_size=1))
    assert list(EpochSampler(11, 3, 1, start=2, rank=1, world_size=3)) == parts[1][2:]


def _train(tmp_path: Path, steps: int, *extra: str) -> subprocess.CompletedProcess:
    cache = tmp_path / "hf"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_HOME": str(cache),
           "HF_HUB_CACHE": str(cache / "hub")}
    cmd = [*TORCHRUN, "train-head", str(tmp_path / "shards" / "*.tar"), "--stage", "contrastive",
           "--head-config", "gsi-tiny", "--pretrained", "none", "--batch-size", "2", "--lr", "1e-3",
           "--steps", str(steps), "--checkpoint-dir", str(tmp_path / "ck"), "--checkpoint-every", "1",
           "-o", str(tmp_path / f"head-{steps}.safetensors"), "--json", *extra]
    return subprocess.run(cmd, capture_output=True, env=env, timeout=300, cwd=tmp_path)

@pytest.mark.slow
def test_torchrun_train_head_resumes_and_ranks_stay_in_sync(tmp_path: Path) -> None:
    _shards(tmp_path / "shards")
    first = _train(tmp_path, 2)
    assert first.returncode == 0, first.stderr.decode()
    [a] = json.loads(first.stdout)["records"]  # one JSON document: rank 0 alone prints and writes
    assert a["steps"] == 2 and a["world_size"] == 2
    assert len(a["parameter_digests"]) == 2 and len(set(a["parameter_digests"])) == 1
    ckpt = torch.load(tmp_path / "ck" / "last.pt", weights_only=True)
    assert ckpt["step"] == 2 and ckpt["world_size"] == 2 and len(ckpt["ranks"]) == 2

    second = _train(tmp_path, 4, "--resume", str(tmp_path / "ck" / "last.pt"))
    assert second.returncode == 0, second.stderr.decode()
    assert "resuming at step 2" in second.stderr.decode()
    [b] = json.loads(second.stdout)["records"]
    assert b["steps"] == 4 and len(set(b["parameter_digests"])) == 1  # both ranks identical after training
    assert b["parameter_digests"] != a["parameter_digests"]  # and it trained on from step 2
    ckpt = torch.load(tmp_path / "ck" / "last.pt", weights_only=True)
    # each rank streams its own shard (2 batches of 2): after 4 steps both are at the end of their second pass
    assert ckpt["step"] == 4 and [(r["epoch"], r["batch_in_epoch"]) for r in ckpt["ranks"]] == [(1, 2), (1, 2)]
    assert (tmp_path / "head-2.safetensors").is_file() and (tmp_path / "head-4.safetensors").is_file()

    from click.testing import CliRunner

    from gscodec_cli.clip_commands import train_head

    alone = CliRunner().invoke(train_head, [str(tmp_path / "shards" / "*.tar"), "--stage", "contrastive",
                                            "--head-config", "gsi-tiny", "--pretrained", "none", "--batch-size",
                                            "2", "--steps", "6", "-o", str(tmp_path / "h.safetensors"),
                                            "--resume", str(tmp_path / "ck" / "last.pt")])
    assert alone.exit_code == 1 and "2 process(es) != 1" in alone.stderr


def _exact_resume_worker(rank: int, shards: list[str], folder: str, port: int) -> None:
    """One of two gloo processes: a straight 5-step run against 3 steps, a checkpoint and a resumed run."""
    import copy

    os.environ.update(RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port), HF_HUB_OFFLINE="1")
    torch.set_num_threads(1)
    from gscodec import distributed
    from gscodec.clip import create_head, open_dataset
    from gscodec.clip.train import TrainConfig, Trainer

    distributed.init_from_env("gloo")
    try:
        torch.manual_seed(0)
        head0, clip = create_head("gsi-tiny", pretrained="none")
        cfg = TrainConfig(stage="contrastive", steps=5, batch_size=2, lr=1e-3, seed=1)

        def trainer() -> Trainer:
            data = open_dataset(shards, need_caption=True, shuffle_buffer=3)
            return Trainer(copy.deepcopy(head0), clip, data, cfg, device="cpu")

        straight = trainer()
        straight.run()
        first = trainer()
        first.run(until=3)
        first.save_checkpoint(Path(folder) / "ck.pt")
        resumed = trainer().resume(Path(folder) / "ck.pt")
        resumed.run()
        result = {"straight": straight.parameter_digest(), "resumed": resumed.parameter_digest(),
                  "losses": [straight.last_loss, resumed.last_loss], "shards": straight.dataset.rank_shards()}
        (Path(folder) / f"rank{rank}.json").write_text(json.dumps(result))
        distributed.barrier()  # as train-head does: no rank tears gloo down while its peer still uses it
    finally:
        distributed.shutdown()


@pytest.mark.slow
def test_distributed_resume_is_exact(tmp_path: Path) -> None:
    """Two processes, unequal shard counts and a shuffle buffer: interrupted + resumed == uninterrupted."""
    shards = [str(p) for p in _shards(tmp_path / "s", shards=3, per_shard=3)]
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    torch.multiprocessing.spawn(_exact_resume_worker, args=(shards, str(tmp_path), port), nprocs=2)
    results = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert results[0]["shards"] == [shards[0], shards[2]] and results[1]["shards"] == [shards[1]]
    for r in results:
        assert r["straight"] == r["resumed"] and r["losses"][0] == r["losses"][1]
    assert results[0]["straight"] == results[1]["straight"]  # the ranks agree
    assert results[0]["losses"][0] != results[1]["losses"][0]  # on different data


def _contrastive_worker(rank: int, folder: str, port: int, rows: list[int]) -> None:
    """One of two gloo processes computing the contrastive losses of its slice of a shared batch."""
    os.environ.update(RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    from gscodec import distributed
    from gscodec.clip.train import contrastive_loss

    distributed.init_from_env("gloo")
    try:
        g = torch.Generator().manual_seed(0)
        images = torch.nn.functional.normalize(torch.randn(sum(rows), 8, generator=g), dim=-1)
        texts = torch.nn.functional.normalize(torch.randn(sum(rows), 8, generator=g), dim=-1)
        lo = sum(rows[:rank])
        mine = images[lo:lo + rows[rank]].clone().requires_grad_(True)
        clip_loss = contrastive_loss(mine, texts[lo:lo + rows[rank]], torch.tensor(10.0))
        sig_loss = contrastive_loss(mine, texts[lo:lo + rows[rank]], torch.tensor(10.0), torch.tensor(-5.0))
        clip_loss.backward()
        out = {"clip": float(clip_loss), "sigmoid": float(sig_loss), "grad": float(mine.grad.abs().sum())}
        (Path(folder) / f"loss{rank}.json").write_text(json.dumps(out))
        distributed.barrier()
    finally:
        distributed.shutdown()

@pytest.mark.slow
def test_contrastive_negatives_come_from_every_process(tmp_path: Path) -> None:
    """Two processes holding 3 and 2 pairs give, weighted by their counts, the loss of all 5 in one process."""
    from gscodec.clip.train import contrastive_loss

    rows = [3, 2]
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    torch.multiprocessing.spawn(_contrastive_worker, args=(str(tmp_path), port, rows), nprocs=2)
    parts = [json.loads((tmp_path / f"loss{r}.json").read_text()) for r in range(2)]
    g = torch.Generator().manual_seed(0)
    images = torch.nn.functional.normalize(torch.randn(5, 8, generator=g), dim=-1)
    texts = torch.nn.functional.normalize(torch.randn(5, 8, generator=g), dim=-1)
    for key, bias in (("clip", None), ("sigmoid", torch.tensor(-5.0))):
        whole = float(contrastive_loss(images, texts, torch.tensor(10.0), bias))
        split = sum(n * p[key] for n, p in zip(rows, parts)) / sum(rows)
        assert abs(whole - split) < 1e-5, (key, whole, split)
        alone = [float(contrastive_loss(images[a:b], texts[a:b], torch.tensor(10.0), bias)) for a, b in ((0, 3), (3, 5))]
        assert abs(sum(n * v for n, v in zip(rows, alone)) / 5 - whole) > 1e-3  # local negatives alone differ
    assert all(p["grad"] > 0 for p in parts)
