"""Head files that lie (issue 19): configs checked against the limits and tensors against the config first."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file, save_file

import gscodec
from gscodec.clip import create_head, load_head, read_head_metadata, save_head
from gscodec.clip import factory
from gscodec.clip.config import ConfigError, HeadConfig, ResamplerConfig
from gscodec_cli.main import cli

from .conftest import random_gaussians


@pytest.fixture(scope="module")
def head_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    head, clip = create_head("gsi-tiny", pretrained="none")
    path = tmp_path_factory.mktemp("head") / "head.safetensors"
    save_head(head, path, clip)
    return path


def _lying(src: Path, dest: Path, config: dict | None = None, tensors: dict | None = None) -> Path:
    meta = read_head_metadata(src)
    data = load_file(str(src))
    if config is not None:
        cfg = json.loads(meta["config"])
        for key, value in config.items():
            section, _, name = key.rpartition(".")
            (cfg[section] if section else cfg)[name] = value
        meta["config"] = json.dumps(cfg)
    data.update(tensors or {})
    save_file(data, str(dest), metadata=meta)
    return dest


@pytest.mark.parametrize("change, message", [
    ({"resampler.depth": 100000}, "resampler.depth is 100,000, over the limit of 64"),   # the examples
    ({"resampler.attn_dim": 1e6}, "resampler.attn_dim must be a whole number"),
    ({"resampler.attn_dim": 1000000}, "resampler.attn_dim is 1,000,000, over the limit"),
    ({"clip_model": "ViT-B-16"}, "names the model 'ViT-B-16' but the file records 'gsi-tiny-vit'"),
    ({"stem.hidden": 16384, "resampler.attn_dim": 16384, "resampler.depth": 64}, "parameters, over the limit"),
])
def test_lying_configs_are_refused_before_building(head_file: Path, tmp_path: Path, change: dict,
                                                   message: str) -> None:
    path = _lying(head_file, tmp_path / "bad.safetensors", config=change)
    with pytest.raises(factory.HeadFileError, match=message):
        load_head(path)


def test_a_tensor_of_the_wrong_shape_is_named(head_file: Path, tmp_path: Path) -> None:
    data = load_file(str(head_file))
    key = next(k for k in sorted(data) if k.startswith("resampler.") and data[k].ndim == 2)
    path = _lying(head_file, tmp_path / "bad.safetensors", tensors={key: torch.zeros(3, 5)})
    with pytest.raises(factory.HeadFileError, match=f"tensor {key} has shape \\(3, 5\\)"):
        load_head(path)


def test_classify_reports_a_lying_head_in_one_line(head_file: Path, tmp_path: Path) -> None:
    bad = _lying(head_file, tmp_path / "bad.safetensors", config={"resampler.depth": 100000})
    gscodec.write(random_gaussians(), tmp_path / "x.gsi")
    result = CliRunner().invoke(cli, ["classify", str(tmp_path / "x.gsi"), "--head", str(bad), "--labels", "a,b"])
    assert result.exit_code == 1 and "over the limit of 64" in result.output and "Traceback" not in result.output


def test_head_limits_on_each_side(monkeypatch: pytest.MonkeyPatch) -> None:
    base = HeadConfig("gsi-tiny-vit", resampler=ResamplerConfig(depth=64, attn_dim=64))
    factory.check_head_config(base)  # at the depth limit
    with pytest.raises(ConfigError, match="over the limit of 64"):
        factory.check_head_config(replace(base, resampler=ResamplerConfig(depth=65, attn_dim=64)))
    n = factory._head_parameters(base, 64)
    monkeypatch.setattr(factory, "MAX_HEAD_PARAMETERS", n)
    factory.check_head_config(base, trunk_width=64)
    monkeypatch.setattr(factory, "MAX_HEAD_PARAMETERS", n - 1)
    with pytest.raises(ConfigError, match="parameters, over the limit"):
        factory.check_head_config(base, trunk_width=64)


def test_the_estimate_bounds_the_real_head() -> None:
    torch.manual_seed(0)
    head, clip = create_head("gsi-tiny", pretrained="none")
    own = sum(p.numel() for k, p in head.named_parameters() if not k.startswith("trunk."))
    assert own <= factory._head_parameters(head.config, clip.model.visual.transformer.width)


def test_labels_given_empty_is_a_usage_error(tmp_path: Path) -> None:
    gscodec.write(random_gaussians(), tmp_path / "x.gsi")
    result = CliRunner().invoke(cli, ["classify", str(tmp_path / "x.gsi"), "--rgb", "--labels", ""])
    assert result.exit_code == 2 and "--labels has no labels" in result.output
    result = CliRunner().invoke(cli, ["classify", str(tmp_path / "x.gsi"), "--rgb", "--labels", " , "])
    assert result.exit_code == 2
