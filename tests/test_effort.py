"""Effort levels: the rows, how FitConfig resolves them, and `gsi encode/bench --effort`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import gscodec
from gscodec.fit import FitConfig
from gscodec.fit.effort import DEFAULT_EFFORT, EFFORT_FIELDS, EFFORTS, effort_row
from gscodec_cli.main import cli


def _photo(path: Path, w: int = 32, h: int = 24) -> Path:
    y, x = np.mgrid[0:h, 0:w]
    img = np.stack([x * 255 // w, y * 255 // h, (x * y) % 256], -1).astype(np.uint8)
    Image.fromarray(img).save(path)
    return path


def test_levels_one_to_nine_with_the_same_fields() -> None:
    assert sorted(EFFORTS) == list(range(1, 10))
    for row in EFFORTS.values():
        assert tuple(row) == EFFORT_FIELDS


def test_higher_levels_never_do_less_work() -> None:
    def cost(row) -> float:  # full-size step equivalents: a half-size step costs about a third
        return row["iterations"] * (1 - row["coarse"] * 2 / 3) + row["refit_shape_iters"]

    costs = [cost(EFFORTS[k]) for k in sorted(EFFORTS)]
    assert costs == sorted(costs) and costs[0] < costs[-1]
    for name in ("iterations", "refit_shape_iters", "refit_iters", "code_sweeps", "grid_sweeps"):
        values = [EFFORTS[k][name] for k in sorted(EFFORTS)]
        assert values == sorted(values), name


def test_fitconfig_takes_unset_fields_from_its_level() -> None:
    default = FitConfig()
    assert default.effort == DEFAULT_EFFORT
    for name in EFFORT_FIELDS:
        assert getattr(default, name) == EFFORTS[DEFAULT_EFFORT][name]
    fast = FitConfig(effort=1)
    assert fast.iterations == EFFORTS[1]["iterations"] and fast.coarse == EFFORTS[1]["coarse"]
    # an explicit field overrides the level; the rest of the row still applies
    mixed = FitConfig(effort=1, iterations=777)
    assert mixed.iterations == 777
    assert mixed.refit_shape_iters == EFFORTS[1]["refit_shape_iters"]


@pytest.mark.parametrize("bad", [0, 10, -1, 2.5, "5", True, None])
def test_unknown_level_is_a_value_error(bad) -> None:
    with pytest.raises(ValueError, match="effort must be an integer from 1 to 9"):
        effort_row(bad)
    with pytest.raises(ValueError, match="effort"):
        FitConfig(effort=bad)


@pytest.mark.parametrize("effort", sorted(EFFORTS))
def test_every_level_encodes_a_valid_file(tmp_path: Path, effort: int) -> None:
    src = _photo(tmp_path / "tiny.png")
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["encode", str(src), "-o", f"{out}/", "--points", "8", "--effort", str(effort)])
    assert result.exit_code == 0, result.output
    f = gscodec.read(out / "tiny.gsi")
    assert f.gaussians.count == 8
    pixels = gscodec.render(f.gaussians)
    assert pixels.shape == (24, 32, 3)
    target = np.asarray(Image.open(src).convert("RGB"))
    assert gscodec.fit.psnr(pixels, target) > 15.0  # a fit, not noise


@pytest.mark.parametrize("value", ["0", "10", "fast", "-3"])
def test_cli_unknown_level_is_a_usage_error(tmp_path: Path, value: str) -> None:
    src = _photo(tmp_path / "tiny.png")
    runner = CliRunner()
    enc = runner.invoke(cli, ["encode", str(src), "-o", str(tmp_path / "o"), "--effort", value])
    assert enc.exit_code == 2 and "effort" in enc.output
    assert not (tmp_path / "o").exists()
    bench = runner.invoke(cli, ["bench", str(tmp_path), "-o", str(tmp_path / "b"), "--effort", value])
    assert bench.exit_code == 2 and "effort" in bench.output


def test_bench_codec_names_its_effort() -> None:
    from gscodec.bench import make_codec

    assert "effort 2 " in make_codec("gsi", (0.01,), effort=2).description()
    assert make_codec("gsi", (0.01,), effort=2).description() != make_codec("gsi", (0.01,), effort=3).description()
    with pytest.raises(ValueError, match="effort"):
        make_codec("gsi", (0.01,), effort=12)


@pytest.mark.parametrize("command", ["encode", "bench"])
def test_help_states_the_default_level(command: str) -> None:
    # the CLI keeps gscodec.fit (torch) out of its import, so the help text carries the number itself
    result = CliRunner().invoke(cli, [command, "--help"], terminal_width=200)
    assert result.exit_code == 0
    option = result.output.split("-e, --effort", 1)[1]
    stated = option.split("[default: ", 1)[1].split("]", 1)[0]
    assert stated == str(DEFAULT_EFFORT)
