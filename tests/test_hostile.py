"""Hostile input and faults (issue 19): clashing and escaping outputs, non-regular files, untrusted text.

Every hostile input is built here in ``tmp_path``; fits are tiny (8 Gaussians, a few steps).
"""

from __future__ import annotations

import io
import os
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

import gscodec
from gscodec import GaussianImage
from gscodec.files import NotRegularFileError, open_regular, regular_file_problem
from gscodec_cli.common import printable, safe
from gscodec_cli.inputs import discover, safe_glob
from gscodec_cli.main import cli

FAST = ["--points", "8", "--iterations", "3"]


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner(env={"COLUMNS": "200"})


def _image(path: Path, seed: int = 0, size: tuple[int, int] = (16, 12)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3)).astype(np.uint8)
    Image.fromarray(arr).save(path)
    return path


def _gsi(path: Path, **metadata: str) -> Path:
    g = torch.Generator().manual_seed(0)
    gauss = GaussianImage(16, 12, torch.rand(6, 2, generator=g) * torch.tensor([16, 12]),
                          torch.tensor([[2.0, 0.0, 2.0]]).repeat(6, 1), torch.rand(6, 3, generator=g))
    gscodec.write(gauss, path, metadata=metadata or {"source": "x.png"})
    return path


def _fifo(path: Path) -> Path:
    if not hasattr(os, "mkfifo"):
        pytest.skip("no FIFOs on this platform")
    os.mkfifo(path)
    return path


# ----------------------------------------------------------------------------- 1. outputs that collide


def test_same_names_in_two_files_or_folders_refuse_to_start(runner: CliRunner, tmp_path: Path) -> None:
    a, b = _image(tmp_path / "a" / "x.png"), _image(tmp_path / "b" / "x.png", seed=1)
    out = tmp_path / "out"
    for args in ([str(a), str(b)], [str(a.parent), str(b.parent)]):  # the example: files, then folders
        result = runner.invoke(cli, ["encode", *args, "-o", str(out), *FAST])
        assert result.exit_code == 2, result.output
        assert "would both be written to" in result.output and str(out / "x.gsi") in result.output
        assert not out.exists()  # refused before anything started


def test_same_stem_in_one_folder_keeps_suffixes_and_three_way_clash_is_named(tmp_path: Path) -> None:
    _image(tmp_path / "in" / "x.png")
    _image(tmp_path / "in" / "x.jpg")
    found = discover([str(tmp_path / "in")], tmp_path / "out")
    assert not found.clashes
    assert sorted(j.output.name for j in found.jobs) == ["x.jpg.gsi", "x.png.gsi"]
    for d in "abc":
        _image(tmp_path / d / "y.png")
    found = discover([str(tmp_path / d / "y.png") for d in "abc"], tmp_path / "out")
    assert len(found.clashes) == 1 and "would all be written to" in found.clashes[0]


def test_an_output_that_would_replace_another_input_is_a_clash(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    _image(tmp_path / "in" / "x.png")
    other = tmp_path / "out" / "x.gsi"  # an input (tried whatever its extension) where x.png's output goes
    other.parent.mkdir()
    Image.new("RGB", (4, 4)).save(other, format="PNG")
    found = discover(["in/x.png", "o*/x.gsi"], Path("out"))
    assert found.clashes == [f"the output {Path('out', 'x.gsi')} of {Path('in', 'x.png')} would replace the input "
                             f"{Path('out', 'x.gsi')}"]


# ----------------------------------------------------------------------------- 2. writing outside the output folder


def test_dotdot_after_a_wildcard_stays_inside_the_output_folder(runner: CliRunner, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    _image(tmp_path / "in" / "sub" / "keep.png")
    _image(tmp_path / "elsewhere" / "far.png")
    found = discover(["in/*/../../elsewhere/*.png"], Path("out"))  # the example
    assert [str(j.output) for j in found.jobs] == [os.path.join("out", "far.gsi")]
    found = discover(["in/*/../sub/*.png"], Path("out"))  # '..' that stays below the fixed folder mirrors
    assert [str(j.output) for j in found.jobs] == [os.path.join("out", "sub", "keep.gsi")]
    result = runner.invoke(cli, ["encode", "in/*/../../elsewhere/*.png", "-o", "out", *FAST])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.rglob("*.gsi")) == ["far.gsi"] and (tmp_path / "out" / "far.gsi").is_file()


def test_links_up_the_tree_are_not_walked_by_double_star(tmp_path: Path) -> None:
    _image(tmp_path / "in" / "a" / "x.png")
    os.symlink("..", tmp_path / "in" / "a" / "up")  # a -> in -> a -> ...
    os.symlink("../..", tmp_path / "in" / "a" / "up2")
    matches = safe_glob(str(tmp_path / "in" / "**" / "*.png"))
    assert matches == [str(tmp_path / "in" / "a" / "x.png")]
    found = discover([str(tmp_path / "in" / "**" / "*.png")], tmp_path / "out")
    assert [j.output for j in found.jobs] == [tmp_path / "out" / "a" / "x.gsi"]
    found = discover([str(tmp_path / "in")], tmp_path / "out")  # folders: linked folders are not entered either
    assert [j.output for j in found.jobs] == [tmp_path / "out" / "a" / "x.gsi"]


def test_a_linked_folder_inside_the_output_folder_is_refused(tmp_path: Path) -> None:
    _image(tmp_path / "in" / "sub" / "x.png")
    (tmp_path / "out").mkdir()
    (tmp_path / "outside").mkdir()
    os.symlink(tmp_path / "outside", tmp_path / "out" / "sub")
    found = discover([str(tmp_path / "in")], tmp_path / "out")
    assert any("leads out of" in c for c in found.clashes)


# ----------------------------------------------------------------------------- 3. an output replacing its input


def test_view_refuses_to_write_over_its_input(runner: CliRunner, tmp_path: Path) -> None:
    src = _gsi(tmp_path / "x.gsi")
    before = src.read_bytes()
    result = runner.invoke(cli, ["view", str(src), "-o", str(src)])  # the example
    assert result.exit_code == 2 and "is the input file" in result.output
    os.symlink(src, tmp_path / "link.png")
    result = runner.invoke(cli, ["view", str(src), "-o", str(tmp_path / "link.png")])  # the same file by a link
    assert result.exit_code == 2 and "is the input file" in result.output
    assert src.read_bytes() == before
    result = runner.invoke(cli, ["view", str(src), "-o", str(tmp_path / "x.png")])
    assert result.exit_code == 0, result.output


def test_encode_next_to_inputs_never_replaces_an_input(tmp_path: Path) -> None:
    src = _gsi(tmp_path / "x.gsi")
    found = discover([str(src)], None)
    assert not found.jobs and found.problems == [(str(src), "is already a .gsi file")]


# ----------------------------------------------------------------------------- 8. things that are not regular files


def test_fifos_are_refused_unopened_by_every_reader(runner: CliRunner, tmp_path: Path) -> None:
    fifo = _fifo(tmp_path / "x.gsi")
    with pytest.raises(NotRegularFileError, match="FIFO"):
        open_regular(fifo)
    with pytest.raises(OSError, match="FIFO"):
        gscodec.read(fifo)
    with pytest.raises(OSError, match="FIFO"):
        gscodec.peek(fifo)
    from gscodec.imageio import ImageReadError, load_image
    with pytest.raises(ImageReadError, match="FIFO"):
        load_image(fifo)
    good = _gsi(tmp_path / "ok.gsi")
    result = runner.invoke(cli, ["info", str(good), str(fifo)])  # the example: gsi info on a FIFO
    assert result.exit_code == 1 and "not a regular file (a FIFO)" in result.output and "ok.gsi" in result.output
    result = runner.invoke(cli, ["view", str(fifo), "-o", str(tmp_path / "v.png")])
    assert result.exit_code == 1 and "not a regular file (a FIFO)" in result.output


def test_fifos_links_loops_and_broken_links_in_a_folder_are_reported(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    _image(folder / "good.png")
    _fifo(folder / "pipe.png")
    os.symlink("loop2.png", folder / "loop1.png")
    os.symlink("loop1.png", folder / "loop2.png")
    os.symlink("missing.png", folder / "broken.png")
    found = discover([str(folder)], tmp_path / "out")
    assert [j.input.name for j in found.jobs] == ["good.png"]
    reasons = {Path(p).name: r for p, r in found.problems}
    assert reasons == {"pipe.png": "not a regular file (a FIFO)", "loop1.png": "a symbolic link loop",
                       "loop2.png": "a symbolic link loop", "broken.png": "a broken symbolic link"}
    assert regular_file_problem(folder) == "not a regular file (a folder)"


# ----------------------------------------------------------------------------- 10. untrusted strings in terminal output


def test_printable_and_safe_neutralise_controls_and_markup() -> None:
    assert printable("a\x1b[31mb\nc\u202ed") == "a\\x1b[31mb\\nc\\u202ed"
    assert safe("[/bold]\x07") == "\\[/bold]\\x07"


def test_info_shows_markup_and_escape_sequences_literally(runner: CliRunner, tmp_path: Path) -> None:
    path = _gsi(tmp_path / "[bold]name[red].gsi", source="[/bold]", note="\x1b[2J\x1b]0;owned\x07")
    table = CliRunner(env={"COLUMNS": "200", "TTY_COMPATIBLE": "1", "NO_COLOR": "1"})
    result = table.invoke(cli, ["info", str(path)])  # the example: a MarkupError before
    assert result.exit_code == 0, result.output
    assert "[/bold]" in result.output and "[bold]name[red].gsi" in result.output
    assert "\x1b[2J" not in result.output and "\\x1b[2J" in result.output
    piped = CliRunner(env={"TTY_COMPATIBLE": "0"}).invoke(cli, ["info", str(path)])  # tab-separated lines
    assert piped.exit_code == 0 and "\x1b" not in piped.output and "[bold]name[red].gsi" in piped.output


def _descriptions(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every progress-bar description set from here on (rich renders them only on a terminal)."""
    from rich.progress import Progress

    seen: list[str] = []
    update = Progress.update

    def spy(self: Progress, task_id: int, **kwargs: object) -> None:
        if kwargs.get("description") is not None:
            seen.append(str(kwargs["description"]))
        update(self, task_id, **kwargs)

    monkeypatch.setattr(Progress, "update", spy)
    return seen


HOSTILE = "[/bold]\x1b[2J"  # in a relative name: the folder "[" and a file "bold]\x1b[2J..."


def test_bench_shows_hostile_file_names_literally(runner: CliRunner, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    descriptions = _descriptions(monkeypatch)
    _image(tmp_path / "in" / f"{HOSTILE}good.png")
    (tmp_path / "in" / f"{HOSTILE}bad.png").write_bytes(b"\x89PNG broken")
    out = tmp_path / f"{HOSTILE}out"
    result = runner.invoke(cli, ["bench", str(tmp_path / "in"), "-o", str(out), "--codecs", "jpeg",
                                 "--quality", "jpeg=50"])
    assert result.exit_code == 1 and "1 point(s) failed" in result.output, result.output
    assert "Traceback" not in result.output and "\x1b" not in result.output
    assert "\\x1b[2Jbad.png jpeg 50:" in result.output and "[/bold]" in result.output
    assert f"wrote {printable(out)}" in result.output
    shown = [d for d in descriptions if "good.png" in d]
    assert shown and all("\x1b" not in d and "\\[/bold]\\x1b[2Jgood.png" in d for d in shown), descriptions


def test_gpu_encode_progress_shows_hostile_file_names_literally(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from rich.console import Console

    from gscodec.fit.placement import RESERVE, SAFETY, fit_bytes_per_image
    from gscodec_cli.encoding import Settings
    from gscodec_cli.gpu_encoding import run_streaming

    descriptions = _descriptions(monkeypatch)
    _image(tmp_path / "in" / "[bold]x\x1b[2J.png")  # a base name cannot hold "/"
    jobs = discover([str(tmp_path / "in")], tmp_path / "out").jobs
    free = RESERVE + int(np.ceil(fit_bytes_per_image(12, 16, 8) / SAFETY)) + 1  # one image per batch
    text = io.StringIO()
    records = run_streaming(jobs, Settings(points=8, iterations=3), Console(file=text), torch.device("cpu"),
                            loaders=0, free_bytes=free)
    assert [r.status for r in records] == ["encoded"]
    shown = [d for d in descriptions if d.startswith("fitting")]
    assert shown == ["fitting 1 image(s) of \\[bold]x\\x1b[2J.png"], descriptions
    assert "\x1b" not in text.getvalue()


# ----------------------------------------------------------------------------- 7. allocations sized by the image's shape


def _png_header(width: int, height: int) -> bytes:
    """A PNG declaring ``width`` x ``height`` RGB pixels in a few dozen bytes (its data is cut short)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


def test_images_over_the_pixel_limit_are_refused_from_their_header(monkeypatch: pytest.MonkeyPatch) -> None:
    from gscodec import imageio
    from gscodec.limits import MAX_IMAGE_PIXELS
    with pytest.raises(imageio.ImageReadError, match="9400x9400 is 88,360,000 pixels, over the limit"):
        imageio.load_image_bytes(_png_header(9400, 9400), "big.png")  # the example: 86 KB, 88 MP
    with pytest.raises(imageio.ImageReadError, match="over the limit"):
        imageio.load_image_bytes(_png_header(MAX_IMAGE_PIXELS // 4096 + 1, 4096), "just-over.png")
    with pytest.raises(imageio.ImageReadError, match="truncated"):  # at the limit: decoded (and found cut short)
        imageio.load_image_bytes(_png_header(MAX_IMAGE_PIXELS // 4096, 4096), "at-limit.png")
    monkeypatch.setattr(imageio, "MAX_IMAGE_PIXELS", 16 * 12)
    buf = io.BytesIO()
    Image.new("RGB", (16, 12)).save(buf, "PNG")
    assert imageio.load_image_bytes(buf.getvalue(), "at.png").shape == (12, 16, 3)
    buf = io.BytesIO()
    Image.new("RGB", (17, 12)).save(buf, "PNG")
    with pytest.raises(imageio.ImageReadError, match="17x12 is 204 pixels, over the limit of 192"):
        imageio.load_image_bytes(buf.getvalue(), "over.png")


def test_resize_of_an_extreme_shape_stays_small() -> None:
    from gscodec.imageio import resize_for_clip
    tall = np.random.default_rng(0).integers(0, 256, (30000, 1, 3)).astype(np.uint8)  # the 1 x 30000
    assert resize_for_clip(tall, 224).shape == (224, 224, 3)  # before: a 224 x 6,720,000 intermediate (4.5 GB)
    wide = np.random.default_rng(1).integers(0, 256, (2, 9000, 3)).astype(np.uint8)
    out = resize_for_clip(wide, 64)
    assert out.shape == (64, 64, 3) and abs(float(out.mean()) - float(wide.mean())) < 20
    photo = np.random.default_rng(2).integers(0, 256, (30, 40, 3)).astype(np.uint8)  # ordinary: the exact path
    expect = Image.fromarray(photo).resize((21, 16), Image.Resampling.BICUBIC).crop((2, 0, 18, 16))
    assert np.array_equal(resize_for_clip(photo, 16), np.asarray(expect))


def test_fit_pixel_limit_on_each_side_and_batches_within_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from gscodec import encoder as encoding
    calls: list[int] = []
    real_fit, real_batch = encoding.fit, encoding.fit_batch
    monkeypatch.setattr(encoding, "fit", lambda img, *a: calls.append(1) or real_fit(img, *a))
    monkeypatch.setattr(encoding, "fit_batch", lambda imgs, *a: calls.append(len(imgs)) or real_batch(imgs, *a))
    monkeypatch.setattr(encoding, "MAX_FIT_PIXELS", 2 * 16 * 12)
    settings = encoding.EncoderSettings(points=4, iterations=2)
    rng = np.random.default_rng(0)
    same = [rng.integers(0, 256, (12, 16, 3)).astype(np.uint8) for _ in range(3)]
    over = rng.integers(0, 256, (12, 33, 3)).astype(np.uint8)  # 396 > 384 pixels
    at = rng.integers(0, 256, (12, 32, 3)).astype(np.uint8)    # 384 pixels: fitted
    out = encoding.fit_images([*same, over, at], ["a", "b", "c", "over", "at"], settings)
    assert isinstance(out[3], str) and "over the fitter's limit of 384; use --resize" in out[3]
    assert all(isinstance(r, encoding.Fitted) for r in out[:3] + out[4:])
    assert sorted(calls) == [1, 1, 2]  # three 16 x 12 images: a batch of two, then one; the 32 x 12 alone


def test_a_bad_image_among_good_ones_fails_alone(runner: CliRunner, tmp_path: Path) -> None:
    _image(tmp_path / "in" / "a.png")
    (tmp_path / "in" / "big.png").write_bytes(_png_header(9400, 9400))
    Image.fromarray(np.zeros((3000, 1, 3), np.uint8)).save(tmp_path / "in" / "thin.png")
    result = runner.invoke(cli, ["encode", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--resize", "16",
                                 *FAST])
    assert result.exit_code == 1, result.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.gsi", "thin.gsi"]
    assert "1 of 3 input(s) failed" in result.output and "Traceback" not in result.output


# ----------------------------------------------------------------------------- 9. processes left behind


def _children(pid: int) -> list[int]:
    """Pool worker processes whose parent is ``pid`` (Linux /proc)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid and b"spawn_main" in cmdline:
            found.append(int(entry))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_workers_end_with_their_parent(tmp_path: Path, sig: signal.Signals) -> None:
    for i in range(4):
        _image(tmp_path / "in" / f"{i}.png", seed=i)
    cmd = [sys.executable, "-m", "gscodec_cli.main", "encode", str(tmp_path / "in"), "-o", str(tmp_path / "out"),
           "--workers", "2", "--points", "8", "--iterations", "10000000"]
    parent = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while len(workers := _children(parent.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert len(workers) == 2
        time.sleep(1.0)  # the workers are past their set-up
        parent.send_signal(sig)  # the parent alone, not its process group
        code = parent.wait(timeout=60)
        deadline = time.monotonic() + 90  # see _killed_parent_leaves_no_workers
        while any(_alive(w) for w in workers) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not any(_alive(w) for w in workers)
        if sig == signal.SIGTERM:
            assert code == 143 and b"interrupted" in parent.stderr.read()
        assert not list(tmp_path.rglob("*.tmp"))
    finally:
        if parent.poll() is None:
            os.killpg(parent.pid, signal.SIGKILL)
        for w in _children(parent.pid):
            os.kill(w, signal.SIGKILL)
        parent.wait()


_HANGING_LOADERS = """
import time
import gscodec.fit.stream as stream
stream.load_image = lambda path: time.sleep(3600)  # forked loader workers inherit it: they stay busy
next(stream.stream_images(["a.png", "b.png", "c.png"], workers=2))
"""


def _killed_parent_leaves_no_workers(cmd: list[str], spawned: bool) -> None:
    """Start ``cmd``, wait for its two worker processes, SIGKILL it alone and check the workers end.

    A worker may still be importing when its parent dies (spawned workers import torch before their
    initializer asks to die with the parent, which takes many seconds on a loaded machine); it then ends
    as soon as the initializer runs, so the bound below is generous rather than a timing claim.
    """
    parent = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    children = _children if spawned else lambda pid: [int(e) for e in os.listdir("/proc") if e.isdigit()
                                                      and _parent_of(int(e)) == pid]
    workers: list[int] = []
    try:
        deadline = time.monotonic() + 60
        while len(workers := children(parent.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(workers) == 2
        time.sleep(1.0)  # the workers are past their set-up, busy
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=10)
        deadline = time.monotonic() + 90
        while any(_alive(w) for w in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(_alive(w) for w in workers)
    finally:
        if parent.poll() is None:
            os.killpg(parent.pid, signal.SIGKILL)
        for w in workers:  # orphans, if the test failed
            if _alive(w):
                os.kill(w, signal.SIGKILL)
        parent.wait()


def _parent_of(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
def test_gpu_loader_workers_end_with_their_parent() -> None:
    _killed_parent_leaves_no_workers([sys.executable, "-c", _HANGING_LOADERS], spawned=False)


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
def test_bench_workers_end_with_their_parent(tmp_path: Path) -> None:
    for i in range(2):
        _image(tmp_path / "in" / f"{i}.png", seed=i)
    # the workers' warm-up fit alone takes for ever at this many steps
    _killed_parent_leaves_no_workers([sys.executable, "-m", "gscodec_cli.main", "bench", str(tmp_path / "in"), "-o",
                                      str(tmp_path / "out"), "--codecs", "gsi", "--gsi-density", "0.02,0.04",
                                      "--iterations", "100000000", "--jobs", "2"], spawned=True)


# ----------------------------------------------------------------------------- faults: stale temporary files, read-only


def test_a_rerun_removes_the_temporary_files_a_killed_write_left(runner: CliRunner, tmp_path: Path) -> None:
    from gscodec.atomic import remove_stale_temps
    src = _image(tmp_path / "x.png")
    stale = tmp_path / ".x.gsi.ab12_z9q.tmp"  # what write_atomic leaves after SIGKILL
    other = tmp_path / ".x.gsi.gsi.ab12_z9q.tmp"  # another output's temporary file: kept
    stale.write_bytes(b"partial")
    other.write_bytes(b"partial")
    result = runner.invoke(cli, ["encode", str(src), *FAST])
    assert result.exit_code == 0, result.output
    assert not stale.exists() and other.exists() and (tmp_path / "x.gsi").is_file()
    assert remove_stale_temps(tmp_path / "missing" / "x.gsi") == 0


def test_a_read_only_file_system_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from gscodec_cli import common

    class ReadOnly:
        f_flag = os.ST_RDONLY

    monkeypatch.setattr(common.os, "access", lambda *a: False)
    monkeypatch.setattr(common.os, "statvfs", lambda path: ReadOnly())
    assert common.unwritable(tmp_path) == "read-only file system"
    ReadOnly.f_flag = 0
    assert common.unwritable(tmp_path) == "permission denied"


# ----------------------------------------------------------------------------- 11. memory; Pillow's errors


def test_memory_errors_are_one_line_in_view_and_info(runner: CliRunner, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from gscodec_cli import info as cli_info
    src = _gsi(tmp_path / "x.gsi")

    def no_memory(*args: object, **kwargs: object) -> None:
        raise MemoryError()

    monkeypatch.setattr("gscodec.format.read", no_memory)
    result = runner.invoke(cli, ["view", str(src), "-o", str(tmp_path / "x.png")])
    assert result.exit_code == 1 and "not enough memory" in result.output and "Traceback" not in result.output
    monkeypatch.setattr(cli_info, "read", no_memory)
    ok = _gsi(tmp_path / "ok.gsi")
    result = runner.invoke(cli, ["info", "--verify", str(src), str(ok)])
    assert result.exit_code == 1 and "not enough memory to decode it" in result.output


def test_pillow_raises_its_own_bomb_error_for_a_gsi_bomb(tmp_path: Path) -> None:
    from .conftest import decompression_bomb
    gscodec.register_pillow()
    bomb = tmp_path / "bomb.gsi"
    gscodec.write(decompression_bomb(), bomb, mode="float16")
    with Image.open(bomb) as im:
        assert im.size == (64, 64)
        with pytest.raises(Image.DecompressionBombError, match="decompression bomb"):
            im.load()
    with Image.open(_gsi(tmp_path / "fine.gsi")) as im:
        im.load()
    (tmp_path / "junk.gsi").write_bytes(b"\x89GSI" + b"\0" * 40)
    with pytest.raises(OSError):  # PIL.UnidentifiedImageError
        Image.open(tmp_path / "junk.gsi")
