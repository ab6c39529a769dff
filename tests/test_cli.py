"""Tests of the ``gsi`` command line (click's CliRunner; tiny images and short fits)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

import gscodec
from gscodec import GaussianImage
from gscodec import encoder
from gscodec_cli import encoding as cli_encoding
from gscodec_cli import viewer as cli_viewer
from gscodec_cli.inputs import discover
from gscodec_cli.main import cli, main

from .conftest import decompression_bomb

W, H = 32, 24
FAST = ["--points", "8", "--iterations", "10"]


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner(env={"COLUMNS": "200", "TTY_COMPATIBLE": "0"})


@pytest.fixture
def terminal() -> CliRunner:
    """A runner whose stdout and stderr count as a terminal (rich honours ``TTY_COMPATIBLE``)."""
    return CliRunner(env={"COLUMNS": "200", "TTY_COMPATIBLE": "1"})


def records(result) -> list[dict]:
    """The records of a ``--json`` document."""
    doc = json.loads(result.stdout)
    assert doc["schema_version"] == 1, doc
    return doc["records"]


def _gaussians(count: int = 12, width: int = W, height: int = H, seed: int = 0) -> GaussianImage:
    g = torch.Generator().manual_seed(seed)
    means = torch.rand(count, 2, generator=g) * torch.tensor([width, height])
    chol = torch.stack([torch.rand(count, generator=g) * 3 + 1, torch.zeros(count),
                        torch.rand(count, generator=g) * 3 + 1], 1)
    return GaussianImage(width, height, means, chol, torch.rand(count, 3, generator=g))


def _gsi(path: Path, count: int = 12, **metadata: str) -> Path:
    gscodec.write(_gaussians(count), path, metadata=metadata or {"source": "x.png", "psnr": "30.00"})
    return path


def _image(path: Path, seed: int = 0, size: tuple[int, int] = (W, H)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3)).astype(np.uint8)
    Image.fromarray(arr).save(path)
    return path


def _files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


# ----------------------------------------------------------------------------- general


def test_help_of_every_command_has_examples(runner: CliRunner) -> None:
    for args in ([], ["info"], ["view"], ["encode"]):
        result = runner.invoke(cli, [*args, "--help"])
        assert result.exit_code == 0 and "Examples" in result.output, args


def test_main_is_the_entry_point(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setattr("sys.argv", ["gsi", "--version"])
    with pytest.raises(SystemExit) as info:
        main()
    assert info.value.code == 0 and gscodec.__version__ in capsys.readouterr().out


# ----------------------------------------------------------------------------- info


def test_info_table(terminal: CliRunner, tmp_path: Path) -> None:
    a = _gsi(tmp_path / "a.gsi", 12, source="cat.png", psnr="31.25")
    b = _gsi(tmp_path / "b.gsi", 7)
    result = terminal.invoke(cli, ["info", str(a), str(b)])
    assert result.exit_code == 0, result.output
    out = result.stdout
    for text in ("a.gsi", "b.gsi", "32x24", "quantized", "cat.png", "31.25", "source", "Gaussians", "bpp"):
        assert text in out
    assert f"{a.stat().st_size:,}" in out


def test_info_json_fields(runner: CliRunner, tmp_path: Path) -> None:
    a = _gsi(tmp_path / "a.gsi", 12, source="cat.png", psnr="31.25", encoder="gscodec 0.1.0")
    result = runner.invoke(cli, ["info", "--json", str(a)])
    assert result.exit_code == 0
    [row] = records(result)
    size = a.stat().st_size
    assert row["file"] == str(a) and row["bytes"] == size
    assert (row["width"], row["height"], row["gaussians"], row["mode"]) == (W, H, 12, "quantized")
    assert row["bytes_per_gaussian"] == pytest.approx(size / 12, abs=1e-3)
    assert row["bpp"] == pytest.approx(8 * size / (W * H), abs=1e-4) and row["psnr"] == 31.25
    assert row["compression_ratio"] == pytest.approx(W * H * 3 / size, abs=0.01)
    assert row["metadata"] == {"source": "cat.png", "psnr": "31.25", "encoder": "gscodec 0.1.0"}
    assert row["metadata_length"] + row["payload_length"] + 24 == size
    assert row["version"] == gscodec.decode(a.read_bytes()).header.version


def test_info_shows_the_version(runner: CliRunner, terminal: CliRunner, tmp_path: Path) -> None:
    path = _gsi(tmp_path / "a.gsi", 12)
    g = gscodec.read(path).gaussians
    for version in (1, 2):
        gscodec.write(g, path, version=version)
        [row] = records(runner.invoke(cli, ["info", "--json", str(path)]))
        assert row["version"] == version
        table = terminal.invoke(cli, ["info", str(path)]).stdout
        assert f"quantized v{version}" in table, table


def test_info_corrupt_file_reported_others_listed(runner: CliRunner, tmp_path: Path) -> None:
    good = _gsi(tmp_path / "good.gsi")
    bad = tmp_path / "bad.gsi"
    bad.write_bytes(b"definitely not a gsi file")
    short = tmp_path / "short.gsi"
    short.write_bytes(good.read_bytes()[:-10])
    result = runner.invoke(cli, ["info", str(bad), str(good), str(short), str(tmp_path / "missing.gsi")])
    assert result.exit_code == 1
    assert "good.gsi" in result.stdout and "bad.gsi" not in result.stdout
    for name in ("bad.gsi", "short.gsi", "missing.gsi", "3 of 4"):
        assert name in result.stderr
    as_json = runner.invoke(cli, ["info", "--json", str(bad), str(good)])
    assert as_json.exit_code == 1 and not json.loads(as_json.stdout)["ok"]
    assert [(r["file"], r["status"]) for r in records(as_json)] == [(str(bad), "failed"), (str(good), "ok")]
    assert "not" in records(as_json)[0]["error"] and records(as_json)[0]["bytes"] is None


def test_info_verify_checks_the_payload(runner: CliRunner, tmp_path: Path) -> None:
    path = _gsi(tmp_path / "a.gsi")
    data = bytearray(path.read_bytes())
    data[-8] ^= 0xFF  # inside the payload: the header still parses
    path.write_bytes(bytes(data))
    assert runner.invoke(cli, ["info", str(path)]).exit_code == 0
    result = runner.invoke(cli, ["info", "--verify", str(path)])
    assert result.exit_code == 1 and "a.gsi" in result.stderr


# ----------------------------------------------------------------------------- view


@pytest.mark.parametrize("args, size", [
    ([], (W, H)), (["--width", "64"], (64, 48)), (["--height", "12"], (16, 12)),
    (["--scale", "0.5"], (16, 12)), (["--scale", "2.5"], (80, 60)), (["--width", "10", "--height", "40"], (10, 40)),
])
def test_view_to_png(runner: CliRunner, tmp_path: Path, args: list[str], size: tuple[int, int]) -> None:
    src = _gsi(tmp_path / "a.gsi")
    out = tmp_path / "out.png"
    result = runner.invoke(cli, ["view", str(src), "-o", str(out), *args])
    assert result.exit_code == 0, result.output
    with Image.open(out) as im:
        assert im.size == size and im.mode == "RGB"
    assert str(out) in result.stderr
    assert _files(tmp_path) == ["a.gsi", "out.png"]  # no temporary file left behind


def test_view_matches_render(runner: CliRunner, tmp_path: Path) -> None:
    src = _gsi(tmp_path / "a.gsi")
    assert runner.invoke(cli, ["view", str(src), "-o", str(tmp_path / "o.png")]).exit_code == 0
    assert np.array_equal(np.asarray(Image.open(tmp_path / "o.png")), gscodec.render(gscodec.read(src).gaussians))


def test_view_usage_errors(runner: CliRunner, tmp_path: Path) -> None:
    src = _gsi(tmp_path / "a.gsi")
    assert runner.invoke(cli, ["view", str(src), "--scale", "2", "--width", "5"]).exit_code == 2
    assert runner.invoke(cli, ["view", str(src), "--scale", "0"]).exit_code == 2
    assert runner.invoke(cli, ["view", str(tmp_path / "missing.gsi")]).exit_code == 2


def test_view_corrupt_file(runner: CliRunner, tmp_path: Path) -> None:
    bad = tmp_path / "bad.gsi"
    bad.write_bytes(b"\x89GSI\x01 truncated")
    result = runner.invoke(cli, ["view", str(bad), "-o", str(tmp_path / "o.png")])
    assert result.exit_code == 1 and "bad.gsi" in result.stderr and "Error" in result.stderr
    assert not (tmp_path / "o.png").exists()


def test_view_refuses_a_decompression_bomb(runner: CliRunner, tmp_path: Path) -> None:
    (tmp_path / "bomb.gsi").write_bytes(gscodec.encode(decompression_bomb()))  # about 300 M footprint pixels
    result = runner.invoke(cli, ["view", str(tmp_path / "bomb.gsi"), "-o", str(tmp_path / "o.png")])
    assert result.exit_code == 1 and "bomb.gsi" in result.stderr and "decompression bomb" in result.stderr
    assert not (tmp_path / "o.png").exists()
    result = runner.invoke(cli, ["view", str(tmp_path / "bomb.gsi"), "-o", str(tmp_path / "o.png"),
                                 "--max-overlap", "0"])  # lifted on request
    assert result.exit_code == 0, result.output
    assert (tmp_path / "o.png").exists()


@pytest.mark.parametrize("viewer_name", [None, "fakeviewer"])
def test_view_without_output_opens_viewer(runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          viewer_name: str | None) -> None:
    opened: list[Path] = []

    def fake_open(path: Path) -> str | None:
        opened.append(path)
        return viewer_name

    monkeypatch.setattr(cli_viewer, "open_viewer", fake_open)
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)  # re-read TMPDIR
    src = _gsi(tmp_path / "a.gsi")
    result = runner.invoke(cli, ["view", str(src), "--scale", "2"])
    assert result.exit_code == 0, result.output
    [png] = opened
    assert png.parent == tmp_path / "tmp" and png.suffix == ".png"
    assert f"wrote {png}" in result.stderr
    assert ("fakeviewer" in result.stderr) == (viewer_name is not None)
    with Image.open(png) as im:
        assert im.size == (2 * W, 2 * H)


# ----------------------------------------------------------------------------- encode


def test_encode_folder_mirrors_subfolders(runner: CliRunner, tmp_path: Path) -> None:
    src = tmp_path / "in"
    _image(src / "a.png", 0)
    _image(src / "sub" / "b.jpg", 1)
    _image(src / "sub" / "deeper" / "c.bmp", 2)
    (src / "notes.txt").write_text("not an image")
    out = tmp_path / "out"
    result = runner.invoke(cli, ["encode", str(src), "-o", str(out), *FAST])
    assert result.exit_code == 0, result.output
    assert _files(out) == ["a.gsi", "sub/b.gsi", "sub/deeper/c.gsi"]
    f = gscodec.read(out / "sub" / "b.gsi")
    assert (f.header.width, f.header.height, f.header.count) == (W, H, 8)
    assert f.metadata["source"] == "b.jpg" and f.metadata["encoder"] == "gscodec 0.1.0"
    psnr = f.metadata["psnr"]
    assert len(psnr.split(".")[1]) == 2 and 5 < float(psnr) < 60
    assert "dB" in result.stderr and "encoded 3" in result.stderr


def test_encode_next_to_inputs_by_default(runner: CliRunner, tmp_path: Path) -> None:
    img = _image(tmp_path / "pic.png")
    result = runner.invoke(cli, ["encode", str(img), *FAST])
    assert result.exit_code == 0, result.output
    assert _files(tmp_path) == ["pic.gsi", "pic.png"]


def test_encode_corrupt_image_reported_and_skipped_json_summary(runner: CliRunner, tmp_path: Path) -> None:
    src = tmp_path / "in"
    _image(src / "good.png")
    (src / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    truncated = _image(src / "cut.jpg", 1)
    truncated.write_bytes(truncated.read_bytes()[:200])
    out = tmp_path / "out"
    result = runner.invoke(cli, ["encode", str(src), "-o", str(out), *FAST, "--json"])
    assert result.exit_code == 1
    assert _files(out) == ["good.gsi"]
    assert "broken.png" in result.stderr and "cut.jpg" in result.stderr and "truncated" in result.stderr
    assert "2 of 3" in result.stderr
    rows = {Path(r["input"]).name: r for r in records(result)}
    keys = {"input", "output", "psnr", "bytes", "bpp", "seconds", "status", "error"}
    assert sorted(rows) == ["broken.png", "cut.jpg", "good.png"] and all(keys <= set(r) for r in rows.values())
    ok = rows["good.png"]
    assert ok["status"] == "encoded" and ok["error"] is None and ok["bytes"] == Path(ok["output"]).stat().st_size
    assert ok["bpp"] == pytest.approx(8 * ok["bytes"] / (W * H), abs=1e-3) and ok["psnr"] > 5 and ok["seconds"] >= 0
    for name in ("broken.png", "cut.jpg"):
        assert rows[name]["status"] == "failed" and rows[name]["error"] and rows[name]["psnr"] is None


def test_encode_existing_output_skipped_unless_force(runner: CliRunner, tmp_path: Path) -> None:
    img = _image(tmp_path / "in" / "a.png")
    out = tmp_path / "out"
    assert runner.invoke(cli, ["encode", str(img), "-o", f"{out}/", *FAST]).exit_code == 0  # a folder: ends with /
    target = out / "a.gsi"
    os.utime(target, (1_000_000, 1_000_000))
    again = runner.invoke(cli, ["encode", str(img), "-o", str(out), *FAST, "--json"])
    assert again.exit_code == 0
    [row] = records(again)
    assert row["status"] == "skipped" and row["bytes"] == target.stat().st_size
    assert target.stat().st_mtime == 1_000_000 and "--force" in again.stderr
    forced = runner.invoke(cli, ["encode", str(img), "-o", str(out), *FAST, "--force", "--json"])
    assert forced.exit_code == 0 and records(forced)[0]["status"] == "encoded"
    assert target.stat().st_mtime != 1_000_000


def test_encode_existing_invalid_output_is_not_overwritten(runner: CliRunner, tmp_path: Path) -> None:
    img = _image(tmp_path / "a.png")
    (tmp_path / "a.gsi").write_text("someone else's file")
    result = runner.invoke(cli, ["encode", str(img), *FAST])
    assert result.exit_code == 1 and "--force" in result.stderr
    assert (tmp_path / "a.gsi").read_text() == "someone else's file"


def test_encode_read_only_output_folder(runner: CliRunner, tmp_path: Path) -> None:
    img = _image(tmp_path / "a.png")
    out = tmp_path / "ro"
    out.mkdir()
    out.chmod(0o555)
    try:
        if os.access(out, os.W_OK):
            pytest.skip("running as root: chmod does not make the folder read-only")
        result = runner.invoke(cli, ["encode", str(img), "-o", str(out), *FAST])
        assert result.exit_code == 1
        assert "permission denied" in result.stderr.lower() and str(out) in result.stderr
        assert list(out.iterdir()) == []
    finally:
        out.chmod(0o755)


@pytest.mark.parametrize("where", ["outdir", "subfolder"])
def test_encode_unwritable_folder_simulated(runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            where: str) -> None:
    """The same check as the chmod test, with ``os.access`` saying no (works when running as root)."""
    _image(tmp_path / "in" / "sub" / "a.png")
    out = tmp_path / "out"
    (out / "sub").mkdir(parents=True)
    denied = out if where == "outdir" else out / "sub"
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: real_access(p, mode, **kw)
                        and not (Path(p) == denied and mode & os.W_OK))
    monkeypatch.setattr(encoder, "fit", lambda *a, **k: pytest.fail("fitted an image it cannot write"))
    result = runner.invoke(cli, ["encode", str(tmp_path / "in"), "-o", str(out), *FAST])
    assert result.exit_code == 1
    assert f"cannot write to output folder {denied}: permission denied" in result.stderr


def test_encode_output_folder_is_a_file(runner: CliRunner, tmp_path: Path) -> None:
    img = _image(tmp_path / "a.png")
    (tmp_path / "out").write_text("x")
    result = runner.invoke(cli, ["encode", str(img), "-o", str(tmp_path / "out"), *FAST])
    assert result.exit_code in (1, 2) and "out" in result.stderr


def test_encode_unwritable_subfolder_fails_before_fitting(runner: CliRunner, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    _image(tmp_path / "in" / "sub" / "a.png")
    out = tmp_path / "out"
    out.mkdir()
    (out / "sub").write_text("a file where the mirrored folder should go")

    def no_fit(*args, **kwargs):
        raise AssertionError("fitted although the output cannot be written")

    monkeypatch.setattr(encoder, "fit", no_fit)
    result = runner.invoke(cli, ["encode", str(tmp_path / "in"), "-o", str(out), *FAST])
    assert result.exit_code == 1 and "cannot create output folder" in result.stderr


def test_encode_empty_folder(runner: CliRunner, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("no images here")
    result = runner.invoke(cli, ["encode", str(tmp_path / "empty")])
    assert result.exit_code == 1
    assert "no images" in result.stderr and "empty" in result.stderr


def test_encode_missing_input_and_glob(runner: CliRunner, tmp_path: Path) -> None:
    _image(tmp_path / "in" / "x" / "a.png", 0)
    _image(tmp_path / "in" / "y" / "b.bmp", 1)  # does not match the pattern
    out = tmp_path / "out"
    result = runner.invoke(cli, ["encode", str(tmp_path / "in" / "**" / "*.png"), str(tmp_path / "nope.png"),
                                 "-o", str(out), *FAST])
    assert result.exit_code == 1 and "nope.png" in result.stderr
    assert _files(out) == ["x/a.gsi"]


def test_encode_density_resize_and_quality(runner: CliRunner, tmp_path: Path) -> None:
    img = _image(tmp_path / "a.png", size=(40, 30))
    result = runner.invoke(cli, ["encode", str(img), "-o", str(tmp_path / "d") + os.sep, "--density", "0.02",
                                 "--iterations", "10"])
    assert result.exit_code == 0, result.output
    assert gscodec.peek(tmp_path / "d" / "a.gsi").header.count == round(0.02 * 40 * 30)
    result = runner.invoke(cli, ["encode", str(img), "-o", str(tmp_path / "r") + os.sep, "--resize", "16",
                                 "--quantization", "float16", *FAST])
    assert result.exit_code == 0, result.output
    header = gscodec.peek(tmp_path / "r" / "a.gsi").header
    assert (header.width, header.height, header.mode.name) == (16, 16, "FLOAT16")


def test_encode_batch_of_same_size_images(runner: CliRunner, tmp_path: Path) -> None:
    for i in range(3):
        _image(tmp_path / "in" / f"{i}.png", i, size=(20 + 4 * i, 18))
    result = runner.invoke(cli, ["encode", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--resize", "12",
                                 "--batch", "3", *FAST, "--json"])
    assert result.exit_code == 0, result.output
    assert [r["status"] for r in records(result)] == ["encoded"] * 3
    assert all(gscodec.read(p).header.width == 12 for p in (tmp_path / "out").iterdir())


def test_encode_usage_errors(runner: CliRunner, tmp_path: Path) -> None:
    img = _image(tmp_path / "a.png")
    assert runner.invoke(cli, ["encode", str(img), "--points", "5", "--density", "0.1"]).exit_code == 2
    assert runner.invoke(cli, ["encode", str(img), "--points", "0"]).exit_code == 2
    assert runner.invoke(cli, ["encode"]).exit_code == 2


def test_encode_interrupt_leaves_no_partial_file(runner: CliRunner, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    _image(tmp_path / "in" / "a.png")

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(encoder, "fit", interrupted)
    result = runner.invoke(cli, ["encode", str(tmp_path / "in"), "-o", str(tmp_path / "out"), *FAST])
    assert result.exit_code == 130 and "resume" in result.stderr
    assert _files(tmp_path / "out") == []


def test_discover_outputs_that_would_collide_keep_their_suffix(tmp_path: Path) -> None:
    _image(tmp_path / "a.png")
    _image(tmp_path / "a.jpg".replace(".jpg", ".bmp"))
    _image(tmp_path / "b.png")
    found = discover([str(tmp_path), str(tmp_path / "b.png")], tmp_path / "out")
    outputs = sorted(j.output.relative_to(tmp_path / "out").as_posix() for j in found.jobs)
    assert outputs == ["a.bmp.gsi", "a.png.gsi", "b.gsi"]  # b.png given twice: encoded once


def test_quality_choices_match_the_library_presets() -> None:
    from gscodec.encoder import QUALITIES
    from gscodec_cli.main import cli as gsi

    option = next(p for p in gsi.commands["encode"].params if p.name == "quantization")
    assert set(option.type.choices) == set(QUALITIES)


PHOTO = Path(__file__).resolve().parent / "data" / "coffee.png"


def test_encode_bpp_reaches_the_target_size(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(cli, ["encode", str(PHOTO), "-o", str(tmp_path), "--bpp", "1.5", "--iterations", "80",
                                 "--json"])
    assert result.exit_code == 0, result.output
    record = records(result)[0]
    assert abs(record["bpp"] - 1.5) <= 0.12 * 1.5
    assert record["gaussians"] < 900


def test_encode_psnr_target_stops_early(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(cli, ["encode", str(PHOTO), "-o", str(tmp_path), "--psnr", "22", "--points", "300",
                                 "--json"])
    assert result.exit_code == 0, result.output
    record = records(result)[0]
    assert record["psnr"] >= 22 - 0.35
    cfg = cli_encoding.Settings(target_psnr=22.0).config(150, 100)
    assert cfg.target_psnr == pytest.approx(22.0 + encoder.PSNR_MARGIN)


def test_encode_rate_options_are_exclusive(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(cli, ["encode", str(PHOTO), "--points", "10", "--bpp", "1"])
    assert result.exit_code == 2
