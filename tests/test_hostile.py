"""Hostile input and faults (issue 19): clashing and escaping outputs, non-regular files, untrusted text.

Every hostile input is built here in ``tmp_path``; fits are tiny (8 Gaussians, a few steps).
"""

from __future__ import annotations

import os
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
    result = runner.invoke(cli, ["info", str(path)])  # the example: a MarkupError before
    assert result.exit_code == 0, result.output
    assert "[/bold]" in result.output and "[bold]name[red].gsi" in result.output
    assert "\x1b" not in result.output and "\\x1b[2J" in result.output
