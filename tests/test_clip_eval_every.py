"""Held-out metrics while training a head: ``gsi train-head --eval-data --eval-every`` and
:func:`gscodec.clip.fidelity.evaluator` with the teacher in the loop (tiny configs, random weights, offline)."""

from __future__ import annotations

import io
import json
import os
import tarfile
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"

import pytest
import torch
from click.testing import CliRunner
from PIL import Image

import gscodec
from gscodec.clip import create_head, open_dataset
from gscodec.clip.fidelity import embed_dataset, evaluator

from .conftest import random_gaussians
from .test_clip import _offline, _write_set  # noqa: F401  (_offline: the autouse no-network fixture)

EVAL_KEYS = {"step", "seconds", "images", "cosine", "retrieval_at_1", "zero_shot_agreement"}


@pytest.fixture(scope="module")
def sets(tmp_path_factory) -> Path:
    """``ROOT/train`` (6 `.gsi` with originals) and ``ROOT/held`` (4 others)."""
    root = tmp_path_factory.mktemp("eval-sets")
    _write_set(root / "train", n=6)
    _write_set(root / "held", n=4, seed=50)
    return root


def _train(sets: Path, tmp_path: Path, *extra: str):
    from gscodec_cli.clip_commands import train_head

    args = [str(sets / "train"), "-o", str(tmp_path / "head.safetensors"), "--head-config", "gsi-tiny",
            "--pretrained", "none", "--steps", "4", "--batch-size", "3", *extra]
    return CliRunner().invoke(train_head, args)


def test_eval_every_logs_and_reports_held_out_metrics(sets: Path, tmp_path: Path) -> None:
    result = _train(sets, tmp_path, "--eval-data", str(sets / "held"), "--eval-every", "2", "--json")
    assert result.exit_code == 0, result.output
    [record] = json.loads(result.stdout)["records"]
    evals = record["evaluations"]
    assert [e["step"] for e in evals] == [2, 4]  # every 2 steps; the last one also ends the run
    for e in evals:
        assert set(e) == EVAL_KEYS and e["images"] == 4
        assert -1 <= e["cosine"] <= 1 and 0 <= e["retrieval_at_1"] <= 1 and 0 <= e["zero_shot_agreement"] <= 1
    lines = [ln for ln in result.stderr.splitlines() if "held-out cosine" in ln]
    assert [ln.split(":")[0] for ln in lines] == ["step 2/4", "step 4/4"]
    assert "retrieval@1" in lines[0] and "zero-shot agreement" in lines[0] and "(4 images)" in lines[0]


def test_eval_data_alone_evaluates_once_at_the_end(sets: Path, tmp_path: Path) -> None:
    result = _train(sets, tmp_path, "--eval-data", str(sets / "held"), "--json")
    assert result.exit_code == 0, result.output
    assert [e["step"] for e in json.loads(result.stdout)["records"][0]["evaluations"]] == [4]
    result = _train(sets, tmp_path, "--json")  # without held-out data: no evaluation, the key stays
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["records"][0]["evaluations"] == []


def test_eval_every_without_eval_data_is_a_usage_error(sets: Path, tmp_path: Path) -> None:
    result = _train(sets, tmp_path, "--eval-every", "2", "--json")
    assert result.exit_code == 2 and result.stdout == ""
    assert "--eval-every needs --eval-data" in result.stderr
    result = _train(sets, tmp_path, "--eval-data", str(sets / "held"), "--eval-every", "0")
    assert result.exit_code == 2 and "--eval-every" in result.stderr
    assert not (tmp_path / "head.safetensors").exists()


def test_eval_data_without_originals_fails_in_one_line(sets: Path, tmp_path: Path) -> None:
    _write_set(tmp_path / "bare", n=2, originals=False)
    result = _train(sets, tmp_path, "--eval-data", str(tmp_path / "bare"), "--eval-every", "2", "--json")
    assert result.exit_code == 1 and result.stdout == ""
    assert "original images" in result.stderr and "Traceback" not in result.output
    assert not (tmp_path / "head.safetensors").exists()


def _tar_set(path: Path, n: int) -> None:
    """A tar shard of ``KEY.gsi`` + ``KEY.png`` (the rendered pixels) samples."""
    with tarfile.open(path, "w") as tar:
        for i in range(n):
            g = random_gaussians(20 + 3 * i, 40, 36, 100 + i)
            png = io.BytesIO()
            Image.fromarray(gscodec.render(g)).save(png, format="PNG")
            for name, data in ((f"s{i:03d}.gsi", gscodec.encode(g)), (f"s{i:03d}.png", png.getvalue())):
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))


def test_evaluator_runs_the_teacher_once_per_sample(tmp_path: Path, monkeypatch) -> None:
    torch.manual_seed(0)
    head, clip = create_head("gsi-tiny", pretrained="none")
    _tar_set(tmp_path / "held.tar", 5)
    data = open_dataset([str(tmp_path / "held.tar")], image_transform=clip.preprocess, shuffle_buffer=0)
    calls = []
    encode = clip.model.encode_image
    monkeypatch.setattr(clip.model, "encode_image", lambda x, **kw: calls.append(len(x)) or encode(x, **kw))
    evaluate = evaluator(data, clip=clip, batch_size=2)
    first, second = evaluate(head), evaluate(head)
    assert sum(calls) == 5 and first == second and first["gallery"] == 5
    emb, targets = embed_dataset(head, data, clip=clip)  # a fresh cache: the teacher embeds the images again
    assert sum(calls) == 10 and emb.shape == targets.shape == (5, clip.embed_dim)
    assert torch.allclose(targets.norm(dim=-1), torch.ones(5), atol=1e-5)
    with pytest.raises(ValueError, match="teacher"):
        embed_dataset(head, data)  # neither cached targets nor a teacher
