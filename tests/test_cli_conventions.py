"""The command-line conventions of issue 20: -o as file or folder, - for standard streams, the extension's image
format, quality 0..100, settings-aware skips, --quiet/--verbose, plain output off a terminal, and one --json
schema (a golden file per command under tests/golden/json, compared by keys and types).

Set ``GSI_UPDATE_GOLDEN=1`` to rewrite the golden files from the current output.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner, Result
from PIL import Image

import gscodec
from gscodec.fit.effort import DEFAULT_EFFORT
from gscodec.presets import quality_settings
from gscodec_cli.main import cli

W, H = 32, 24
FAST = ["--points", "8", "--iterations", "5"]
GOLDEN = Path(__file__).resolve().parent / "golden" / "json"


@pytest.fixture
def runner() -> CliRunner:
    """stdout and stderr are not a terminal (whatever FORCE_COLOR says)."""
    return CliRunner(env={"COLUMNS": "200", "TTY_COMPATIBLE": "0"})


@pytest.fixture
def terminal() -> CliRunner:
    """stdout and stderr count as a terminal (rich honours ``TTY_COMPATIBLE``)."""
    return CliRunner(env={"COLUMNS": "200", "TTY_COMPATIBLE": "1"})


def _image(path: Path, seed: int = 0, size: tuple[int, int] = (W, H)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3)).astype(np.uint8)).save(path)
    return path


def _gsi(path: Path, count: int = 10, seed: int = 0, **metadata: str) -> Path:
    """A `.gsi` file of ``count`` random Gaussians (numpy arrays in), with ``metadata``."""
    rng = np.random.default_rng(seed)
    means = (rng.random((count, 2)) * [W, H]).astype(np.float32)
    chol = np.stack([rng.random(count) * 3 + 1, np.zeros(count), rng.random(count) * 3 + 1], 1).astype(np.float32)
    colors = rng.random((count, 3)).astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    gscodec.write(gscodec.GaussianImage(W, H, means, chol, colors), path, metadata=metadata or None)
    return path


def _doc(result: Result) -> dict[str, Any]:
    return json.loads(result.stdout)


# ----------------------------------------------------------------------------- -o: one file or a folder


def test_one_input_and_o_writes_that_file(runner: CliRunner, tmp_path: Path) -> None:
    img = _image(tmp_path / "in.png")
    result = runner.invoke(cli, ["encode", str(img), "-o", str(tmp_path / "sub" / "out.gsi"), *FAST])
    assert result.exit_code == 0, result.output
    assert gscodec.peek(tmp_path / "sub" / "out.gsi").header.count == 8
    assert not (tmp_path / "in.gsi").exists() and not (tmp_path / "sub" / "out.gsi" / "in.gsi").exists()
    named = runner.invoke(cli, ["encode", str(img), "-o", str(tmp_path / "plain"), *FAST])  # any name: a file
    assert named.exit_code == 0 and (tmp_path / "plain").is_file()


def test_o_is_a_folder_when_it_exists_ends_with_a_slash_or_inputs_are_several(runner: CliRunner,
                                                                             tmp_path: Path) -> None:
    a, b = _image(tmp_path / "in" / "a.png", 0), _image(tmp_path / "in" / "b.png", 1)
    (tmp_path / "existing").mkdir()
    assert runner.invoke(cli, ["encode", str(a), "-o", str(tmp_path / "existing"), *FAST]).exit_code == 0
    assert (tmp_path / "existing" / "a.gsi").is_file()
    assert runner.invoke(cli, ["encode", str(a), "-o", f"{tmp_path / 'new'}/", *FAST]).exit_code == 0
    assert (tmp_path / "new" / "a.gsi").is_file()
    assert runner.invoke(cli, ["encode", str(a), str(b), "-o", str(tmp_path / "two"), *FAST]).exit_code == 0
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == ["a.gsi", "b.gsi"]
    assert runner.invoke(cli, ["encode", str(tmp_path / "in"), "-o", str(tmp_path / "dir"), *FAST]).exit_code == 0
    assert sorted(p.name for p in (tmp_path / "dir").iterdir()) == ["a.gsi", "b.gsi"]


def test_o_naming_the_input_is_refused(runner: CliRunner, tmp_path: Path) -> None:
    img = _image(tmp_path / "a.png")
    before = img.read_bytes()
    result = runner.invoke(cli, ["encode", str(img), "-o", str(img), *FAST])
    assert result.exit_code == 2 and "replace" in result.output and img.read_bytes() == before
    gsi = _gsi(tmp_path / "a.gsi")
    result = runner.invoke(cli, ["view", str(gsi), "-o", str(gsi)])
    assert result.exit_code == 2 and gscodec.peek(gsi).header.count == 10


# ----------------------------------------------------------------------------- - for standard input and output


def test_encode_stdin_to_stdout(runner: CliRunner, tmp_path: Path) -> None:
    png = _image(tmp_path / "x.png").read_bytes()
    result = runner.invoke(cli, ["encode", "-", "-o", "-", *FAST], input=png)
    assert result.exit_code == 0, result.stderr
    f = gscodec.decode(result.stdout_bytes)
    assert (f.header.width, f.header.height, f.header.count) == (W, H, 8) and f.metadata["source"] == "stdin"
    assert "stdin → stdout" in result.stderr
    to_file = runner.invoke(cli, ["encode", "-", "-o", str(tmp_path / "y.gsi"), *FAST], input=png)
    assert to_file.exit_code == 0 and to_file.stdout == "" and gscodec.peek(tmp_path / "y.gsi").header.count == 8
    first = (tmp_path / "y.gsi").read_bytes()
    other = _image(tmp_path / "other.png", 1).read_bytes()  # same settings, another image: never skipped
    again = runner.invoke(cli, ["encode", "-", "-o", str(tmp_path / "y.gsi"), *FAST, "--json"], input=other)
    assert again.exit_code == 0 and _doc(again)["records"][0]["stale"] is True
    assert (tmp_path / "y.gsi").read_bytes() != first
    from_file = runner.invoke(cli, ["encode", str(tmp_path / "x.png"), "-o", "-", *FAST])
    assert from_file.exit_code == 0 and gscodec.decode(from_file.stdout_bytes).metadata["source"] == "x.png"


@pytest.mark.parametrize("args, message", [
    (["encode", "-"], "standard input"),                                   # where would it go?
    (["encode", "-", "-o", "-", "--json"], "--json"),                      # both on stdout
    (["encode", "-", "in.png", "-o", "out"], "alone"),                     # - is one image
    (["encode", "in.png", "in2.png", "-o", "-"], "one input image"),
    (["encode", "-", "-o", "folder/"], "not a folder"),
])
def test_standard_stream_usage_errors(runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                      args: list[str], message: str) -> None:
    monkeypatch.chdir(tmp_path)
    _image(tmp_path / "in.png")
    _image(tmp_path / "in2.png", 1)
    result = runner.invoke(cli, [*args, *FAST], input=b"")
    assert result.exit_code == 2 and message in result.output, result.output


def test_empty_stdin_is_a_clear_error(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["encode", "-", "-o", "-", *FAST], input=b"")
    assert result.exit_code == 1 and "standard input is empty" in result.stderr and "Traceback" not in result.output


def test_view_and_info_read_stdin_and_view_writes_stdout(runner: CliRunner, tmp_path: Path) -> None:
    data = _gsi(tmp_path / "a.gsi", source="cat.png").read_bytes()
    result = runner.invoke(cli, ["view", "-", "-o", "-", "--scale", "2"], input=data)
    assert result.exit_code == 0, result.stderr
    with Image.open(io.BytesIO(result.stdout_bytes)) as im:
        assert (im.format, im.size) == ("PNG", (2 * W, 2 * H))
    expected = gscodec.render(gscodec.decode(data).gaussians, 2 * W, 2 * H)
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(result.stdout_bytes))), expected)
    info = runner.invoke(cli, ["info", "-", "--json"], input=data)
    assert info.exit_code == 0, info.output
    [row] = _doc(info)["records"]
    assert (row["file"], row["bytes"], row["gaussians"], row["metadata"]) == ("-", len(data), 10, {"source": "cat.png"})
    webp = runner.invoke(cli, ["view", "-", "-o", "-", "--format", "webp"], input=data)
    assert webp.exit_code == 0 and Image.open(io.BytesIO(webp.stdout_bytes)).format == "WEBP"


# ----------------------------------------------------------------------------- gsi view: the extension's format


@pytest.mark.parametrize("name, fmt", [("a.jpg", "JPEG"), ("a.jpeg", "JPEG"), ("a.webp", "WEBP"), ("a.tif", "TIFF"),
                                       ("a.PNG", "PNG"), ("a.bmp", "BMP")])
def test_view_writes_the_format_its_extension_names(runner: CliRunner, tmp_path: Path, name: str, fmt: str) -> None:
    src = _gsi(tmp_path / "a.gsi")
    result = runner.invoke(cli, ["view", str(src), "-o", str(tmp_path / name), "--width", "64"])
    assert result.exit_code == 0, result.output
    with Image.open(tmp_path / name) as im:
        assert (im.format, im.size, im.mode) == (fmt, (64, 48), "RGB")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted({"a.gsi", name})  # no temporary file left


def test_view_format_option_and_unknown_extensions(runner: CliRunner, tmp_path: Path) -> None:
    src = _gsi(tmp_path / "a.gsi")
    result = runner.invoke(cli, ["view", str(src), "-o", str(tmp_path / "render.img"), "--format", "jpeg"])
    assert result.exit_code == 0 and Image.open(tmp_path / "render.img").format == "JPEG"
    for bad in (["-o", str(tmp_path / "x.nope")], ["-o", str(tmp_path / "x.png"), "--format", "nope"],
                ["-o", str(tmp_path / "b.gsi")]):
        result = runner.invoke(cli, ["view", str(src), *bad])
        assert result.exit_code == 2 and "Pillow" in result.output, result.output
    assert "gsi encode" in runner.invoke(cli, ["view", str(src), "-o", str(tmp_path / "b.gsi")]).output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.gsi", "render.img"]


# ----------------------------------------------------------------------------- quality 0..100 and rate options


def test_quality_sets_density_and_is_recorded(runner: CliRunner, tmp_path: Path) -> None:
    img = _image(tmp_path / "a.png", size=(60, 40))
    result = runner.invoke(cli, ["encode", str(img), "-o", str(tmp_path / "q.gsi"), "-q", "40", "--iterations", "5",
                                 "-v"])
    assert result.exit_code == 0, result.output
    chosen = quality_settings(40)
    f = gscodec.read(tmp_path / "q.gsi")
    assert f.header.count == round(chosen.density * 60 * 40)
    assert f.metadata["settings"] == f"density={chosen.density:.6g} effort={DEFAULT_EFFORT} iterations=5 quantization=auto seed=0 " \
                                     "format=auto"
    assert "settings: density=" in result.stderr and "(-q 40)" in result.stderr  # -v names them


@pytest.mark.parametrize("args, message", [
    (["-q", "high"], "--quantization high"),
    (["-q", "101"], "0 to 100"),
    (["-q", "50", "--points", "10"], "only one of"),
    (["-q", "50", "--bpp", "1"], "only one of"),
    (["--bpp", "1", "--psnr", "30"], "--bpp and --psnr"),
    (["--quality", "auto"], "--quantization auto"),
])
def test_conflicting_rate_options_are_usage_errors(runner: CliRunner, tmp_path: Path, args: list[str],
                                                   message: str) -> None:
    img = _image(tmp_path / "a.png")
    result = runner.invoke(cli, ["encode", str(img), *args])
    assert result.exit_code == 2 and message in result.output, result.output
    assert not (tmp_path / "a.gsi").exists()


# ----------------------------------------------------------------------------- existing outputs: same, stale, foreign


def test_same_settings_skip_other_settings_re_encode(runner: CliRunner, tmp_path: Path) -> None:
    img = _image(tmp_path / "a.png")
    out = tmp_path / "a.gsi"
    assert runner.invoke(cli, ["encode", str(img), *FAST]).exit_code == 0
    os.utime(out, (1_000_000, 1_000_000))
    same = runner.invoke(cli, ["encode", str(img), *FAST, "--json"])
    [row] = _doc(same)["records"]
    assert same.exit_code == 0 and row["status"] == "skipped" and not row["stale"]
    assert out.stat().st_mtime == 1_000_000 and "same settings" in same.stderr
    other = runner.invoke(cli, ["encode", str(img), "--points", "9", "--iterations", "5", "--json"])
    [row] = _doc(other)["records"]
    assert other.exit_code == 0 and (row["status"], row["stale"], row["gaussians"]) == ("encoded", True, 9)
    assert "stale" in other.stderr and gscodec.peek(out).header.count == 9
    assert "points=9" in gscodec.peek(out).metadata["settings"]
    for changed in (["--seed", "1"], ["--effort", "1"], ["--quantization", "high"], ["--format-version", "1"]):
        result = runner.invoke(cli, ["encode", str(img), "--points", "9", "--iterations", "5", *changed, "--json"])
        assert _doc(result)["records"][0]["stale"], changed
    # the settings of the last run, written another way (--effort DEFAULT_EFFORT is the default), are the same
    again = runner.invoke(cli, ["encode", str(img), "--points", "9", "--iterations", "5", "--format-version", "1",
                                "--effort", str(DEFAULT_EFFORT), "--quantization", "auto", "--json"])
    assert _doc(again)["records"][0]["status"] == "skipped"


def test_output_from_another_source_is_stale(runner: CliRunner, tmp_path: Path) -> None:
    a = _image(tmp_path / "in" / "a.png", 0)
    out = tmp_path / "out.gsi"
    assert runner.invoke(cli, ["encode", str(a), "-o", str(out), *FAST]).exit_code == 0
    b = _image(tmp_path / "in" / "b.png", 1)
    result = runner.invoke(cli, ["encode", str(b), "-o", str(out), *FAST, "--json"])
    assert _doc(result)["records"][0]["stale"] and gscodec.peek(out).metadata["source"] == "b.png"


def test_outputs_without_recorded_settings_are_refused_unless_force(runner: CliRunner, tmp_path: Path) -> None:
    img = _image(tmp_path / "a.png")
    foreign = _gsi(tmp_path / "a.gsi", source="a.png")  # a .gsi file that gsi encode did not write
    before = foreign.read_bytes()
    result = runner.invoke(cli, ["encode", str(img), *FAST, "--json"])
    [row] = _doc(result)["records"]
    assert result.exit_code == 1 and row["status"] == "failed" and "records no encoder settings" in row["error"]
    assert foreign.read_bytes() == before and "--force" in result.stderr
    forced = runner.invoke(cli, ["encode", str(img), *FAST, "--force"])
    assert forced.exit_code == 0 and "settings" in gscodec.peek(foreign).metadata


# ----------------------------------------------------------------------------- --quiet and --verbose


def test_quiet_prints_nothing_but_errors(runner: CliRunner, tmp_path: Path) -> None:
    img = _image(tmp_path / "a.png")
    result = runner.invoke(cli, ["encode", str(img), *FAST, "--quiet"])
    assert result.exit_code == 0 and result.stderr == "" and result.stdout == ""
    assert runner.invoke(cli, ["encode", str(img), *FAST, "-s"]).stderr == ""  # skipped, silently
    src = _gsi(tmp_path / "b.gsi")
    for args in (["info", str(src), "-s"], ["view", str(src), "-o", str(tmp_path / "b.png"), "-s"]):
        result = runner.invoke(cli, args)
        assert result.exit_code == 0 and result.stderr == "", args
    (tmp_path / "bad.png").write_bytes(b"not an image")
    failed = runner.invoke(cli, ["encode", str(tmp_path / "bad.png"), *FAST, "-s"])
    assert failed.exit_code == 1 and "bad.png" in failed.stderr  # errors still
    failed = runner.invoke(cli, ["info", str(src), str(tmp_path / "bad.png"), "-s"])
    assert failed.exit_code == 1 and "bad.png" in failed.stderr


def test_verbose_says_more(runner: CliRunner, tmp_path: Path) -> None:
    img = _image(tmp_path / "a.png")
    plain = runner.invoke(cli, ["encode", str(img), *FAST])
    assert "settings:" not in plain.stderr
    verbose = runner.invoke(cli, ["encode", str(img), *FAST, "--force", "-v"])
    assert "settings: points=8" in verbose.stderr and "8 Gaussians" in verbose.stderr
    view = runner.invoke(cli, ["view", str(tmp_path / "a.gsi"), "-o", str(tmp_path / "a2.png"), "-v"])
    assert view.exit_code == 0 and "rendered at 32x24" in view.stderr
    both = runner.invoke(cli, ["encode", str(img), *FAST, "--force", "-v", "-s"])
    assert both.exit_code == 0 and both.stderr == ""  # --quiet wins


# ----------------------------------------------------------------------------- output off a terminal


def test_info_is_one_line_per_file_when_piped(runner: CliRunner, terminal: CliRunner, tmp_path: Path) -> None:
    files = [_gsi(tmp_path / "d" / f"{'x' * 150}{i}.gsi", 5 + i, seed=i, source="a b\tc", psnr="30.5")
             for i in range(3)]
    result = runner.invoke(cli, ["info", str(tmp_path / "d")], env={"COLUMNS": "40"})
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == 1 + 3 and lines[0].split("\t")[:3] == ["file", "bytes", "width"]
    for line, path, i in zip(lines[1:], files, range(3)):
        cells = line.split("\t")
        assert len(cells) == len(lines[0].split("\t")) and cells[0] == str(path)  # the long name whole
        assert (cells[4], cells[10]) == (str(5 + i), "30.5") and json.loads(cells[-1])["source"] == "a b\tc"
    assert "─" not in result.stdout and "━" not in result.stdout
    table = terminal.invoke(cli, ["info", str(tmp_path / "d")])
    assert "Gaussians" in table.stdout and "\t" not in table.stdout


def test_encode_bars_only_on_a_terminal(runner: CliRunner, terminal: CliRunner, tmp_path: Path) -> None:
    for i in range(2):
        _image(tmp_path / "in" / f"{'long-name-' * 12}{i}.png", i)
    piped = runner.invoke(cli, ["encode", str(tmp_path / "in"), "-o", str(tmp_path / "a"), *FAST],
                          env={"COLUMNS": "30"})
    assert piped.exit_code == 0, piped.output
    lines = piped.stderr.splitlines()
    assert "━" not in piped.stderr and "\x1b" not in piped.stderr
    assert len(lines) == 3 and all(line.startswith("✓ ") for line in lines[:2]) and lines[2].startswith("encoded 2")
    shown = terminal.invoke(cli, ["encode", str(tmp_path / "in"), "-o", str(tmp_path / "b"), *FAST])
    assert shown.exit_code == 0 and "━" in shown.stderr


def test_train_head_prints_its_summary_on_stderr(tmp_path: Path) -> None:
    from .test_clip import _write_set

    _write_set(tmp_path / "data", n=3)
    result = CliRunner(env={"TTY_COMPATIBLE": "0"}).invoke(
        cli, ["train-head", str(tmp_path / "data"), "-o", str(tmp_path / "h.safetensors"), "--head-config",
              "gsi-tiny", "--pretrained", "none", "--steps", "1", "--batch-size", "3"])
    assert result.exit_code == 0, result.output
    assert result.stdout == "" and "wrote" in result.stderr and "final loss" in result.stderr


# ----------------------------------------------------------------------------- gsi info DIR


def test_info_recurses_into_folders(runner: CliRunner, tmp_path: Path) -> None:
    _gsi(tmp_path / "top" / "a.gsi")
    _gsi(tmp_path / "top" / "sub" / "deeper" / "b.GSI", 7)
    _gsi(tmp_path / "top" / ".hidden" / "c.gsi")
    (tmp_path / "top" / "notes.txt").write_text("not a .gsi")
    (tmp_path / "empty").mkdir()
    result = runner.invoke(cli, ["info", str(tmp_path / "top"), str(tmp_path / "empty"), "--json"])
    assert result.exit_code == 1
    rows = _doc(result)["records"]
    assert [(Path(r["file"]).relative_to(tmp_path).as_posix(), r["status"]) for r in rows] == [
        ("top/a.gsi", "ok"), ("top/sub/deeper/b.GSI", "ok"), ("empty", "failed")]
    assert "no .gsi files" in rows[2]["error"] and "empty" in result.stderr


# ----------------------------------------------------------------------------- one JSON schema


def _shape(value: Any) -> Any:
    """``value`` with every scalar replaced by its JSON type name (ints and floats are both ``number``)."""
    if isinstance(value, dict):
        return {k: _shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_shape(v) for v in value]
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    return "number" if isinstance(value, (int, float)) else "string"


def _matches_golden(name: str, doc: dict[str, Any], root: Path) -> None:
    """``doc`` has the keys and JSON types of ``tests/golden/json/NAME.json`` (values such as timings may differ).

    ``root``: the test's folder, written as ``/tmp/gsi-test`` in a golden file."""
    path = GOLDEN / f"{name}.json"
    if os.environ.get("GSI_UPDATE_GOLDEN"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(doc, indent=2).replace(str(root), "/tmp/gsi-test") + "\n")
    golden = json.loads(path.read_text())
    assert _shape(doc) == _shape(golden), f"{name}: the --json output left the schema of {path}"
    assert doc["schema_version"] == golden["schema_version"] == 1 and doc["command"] == golden["command"]


def test_every_golden_follows_the_common_schema() -> None:
    names = sorted(p.stem for p in GOLDEN.glob("*.json"))
    assert names == ["bench", "classify", "encode", "encode-shards", "info", "train-head", "verify"]
    for name in names:
        doc = json.loads((GOLDEN / f"{name}.json").read_text())
        assert list(doc) == ["schema_version", "command", "ok", "records", "summary"], name
        assert doc["records"] and all({"status", "error"} <= set(r) for r in doc["records"]), name
        keys = {k for r in doc["records"] for k in r} | set(doc["summary"])
        assert not keys & {"bits_per_pixel", "bitrate", "psnr-rgb", "encoding_time"}, name  # one name per thing
        assert all(isinstance(r.get("psnr"), (float, int, type(None))) for r in doc["records"]), name
        if any(r["status"] == "failed" for r in doc["records"]):
            assert doc["ok"] is False


def test_info_json_schema(runner: CliRunner, tmp_path: Path) -> None:
    _gsi(tmp_path / "a.gsi", source="cat.png", psnr="31.25", encoder="gscodec 0.1.0")
    (tmp_path / "bad.gsi").write_bytes(b"not a gsi file")
    result = runner.invoke(cli, ["info", str(tmp_path), "--json"])
    assert result.exit_code == 1
    doc = _doc(result)
    _matches_golden("info", doc, tmp_path)
    assert [r["status"] for r in doc["records"]] == ["ok", "failed"] and doc["records"][0]["psnr"] == 31.25
    assert doc["summary"] == {"files": 2, "ok": 1, "failed": 1}


def test_encode_json_schema(runner: CliRunner, tmp_path: Path) -> None:
    _image(tmp_path / "in" / "a.png", 0)
    assert runner.invoke(cli, ["encode", str(tmp_path / "in"), "-o", str(tmp_path / "out"), *FAST]).exit_code == 0
    _image(tmp_path / "in" / "b.png", 1)
    (tmp_path / "in" / "c.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    result = runner.invoke(cli, ["encode", str(tmp_path / "in"), "-o", str(tmp_path / "out"), *FAST, "--json"])
    assert result.exit_code == 1
    doc = _doc(result)
    _matches_golden("encode", doc, tmp_path)
    assert [r["status"] for r in doc["records"]] == ["skipped", "encoded", "failed"] and not doc["ok"]
    assert {k: doc["summary"][k] for k in ("encoded", "skipped", "failed", "stale")} == \
        {"encoded": 1, "skipped": 1, "failed": 1, "stale": 0}


def test_encode_shards_json_schema(runner: CliRunner, tmp_path: Path) -> None:
    from .test_shards import _jpeg, _write_tar

    src = _write_tar(tmp_path / "in" / "a.tar", [("k0.jpg", _jpeg(0)), ("k0.txt", b"a cat"), ("k1.jpg", b"broken")])
    result = runner.invoke(cli, ["encode", str(src), "-o", str(tmp_path / "out"), *FAST, "--json"])
    assert result.exit_code == 1
    doc = _doc(result)
    _matches_golden("encode-shards", doc, tmp_path)
    [row] = doc["records"]
    assert (row["status"], row["samples"], row["failures"], row["stale"]) == ("encoded", 1, 1, False)
    verify = runner.invoke(cli, ["verify", str(tmp_path / "out"), "--inputs", str(src), "--json"])
    assert verify.exit_code == 0, verify.output
    _matches_golden("verify", _doc(verify), tmp_path)
    again = runner.invoke(cli, ["encode", str(src), "-o", str(tmp_path / "out"), "--points", "9", "--iterations", "5",
                                "--json"])
    assert _doc(again)["records"][0]["stale"] is True  # other settings: the complete shard is re-encoded


def test_clip_commands_json_schema(runner: CliRunner, tmp_path: Path) -> None:
    from .test_clip import _write_set

    files = [str(p) for p in _write_set(tmp_path / "data", n=3)]
    head = tmp_path / "head.safetensors"
    result = runner.invoke(cli, ["train-head", str(tmp_path / "data"), "-o", str(head), "--head-config", "gsi-tiny",
                                 "--pretrained", "none", "--steps", "1", "--batch-size", "3", "--json"])
    assert result.exit_code == 0, result.output
    _matches_golden("train-head", _doc(result), tmp_path)
    (tmp_path / "bad.gsi").write_bytes(b"GSI?")
    result = runner.invoke(cli, ["classify", *files[:2], str(tmp_path / "bad.gsi"), "--head", str(head),
                                 "--labels", "cat,dog", "--top-k", "2", "--json"])
    assert result.exit_code == 1
    doc = _doc(result)
    _matches_golden("classify", doc, tmp_path)
    assert [r["status"] for r in doc["records"]] == ["ok", "ok", "failed"]
    piped = runner.invoke(cli, ["classify", *files[:2], "--head", str(head), "--labels", "cat,dog"])
    lines = piped.stdout.splitlines()
    assert piped.exit_code == 0 and len(lines) == 3 and [line.split("\t")[0] for line in lines[1:]] == files[:2]
    stdin = runner.invoke(cli, ["classify", "-", "--head", str(head), "--labels", "cat,dog", "--json"],
                          input=Path(files[0]).read_bytes())
    assert stdin.exit_code == 0, stdin.output
    assert _doc(stdin)["records"][0]["predictions"] == doc["records"][0]["predictions"]


def test_bench_json_schema(runner: CliRunner, tmp_path: Path) -> None:
    for i in range(2):
        _image(tmp_path / "photos" / f"im{i}.png", i)
    result = runner.invoke(cli, ["bench", str(tmp_path / "photos"), "-o", str(tmp_path / "out"), "--codecs", "jpeg",
                                 "--quality", "jpeg=20,80", "--json"])
    assert result.exit_code == 0, result.output
    doc = _doc(result)
    _matches_golden("bench", doc, tmp_path)
    assert [(r["codec"], r["quality"]) for r in doc["records"]] == [("jpeg", "20"), ("jpeg", "80")]
