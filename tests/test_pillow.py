"""The Pillow plugin (``gscodec.pillow``): save as `.gsi`, open, draft and thumbnail at the target size, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import gscodec
from gscodec import pillow as plugin
from gscodec_cli.main import cli

from .conftest import decompression_bomb

DATA = Path(__file__).parent / "data"
POINTS, EFFORT = 60, 1


@pytest.fixture(autouse=True)
def registered() -> None:
    gscodec.register_pillow()


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """coffee.png (150x100) saved through Pillow as a `.gsi`."""
    gscodec.register_pillow()
    path = tmp_path_factory.mktemp("pillow") / "coffee.gsi"
    with Image.open(DATA / "coffee.png") as im:
        im.save(path, points=POINTS, effort=EFFORT)
    return path


@pytest.fixture
def render_sizes(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """Every ``(width, height)`` the plugin renders at, recorded."""
    sizes: list[tuple[int, int]] = []
    real = plugin.render

    def spy(g: gscodec.GaussianImage, width: int | None = None, height: int | None = None, **kw) -> np.ndarray:
        pixels = real(g, width, height, **kw)
        sizes.append((pixels.shape[1], pixels.shape[0]))
        return pixels

    monkeypatch.setattr(plugin, "render", spy)
    return sizes


def test_round_trip_save_open_draft_to_a_thumbnail(saved: Path, render_sizes: list[tuple[int, int]]) -> None:
    f = gscodec.read(saved)
    assert (f.header.width, f.header.height, f.header.count) == (150, 100, POINTS)
    assert f.metadata["source"] == "coffee.png" and float(f.metadata["psnr"]) > 20
    with Image.open(saved) as im:
        assert (im.format, im.size, im.mode, im.info["gaussians"]) == ("GSI", (150, 100), "RGB", POINTS)
        mode, box = im.draft("RGB", (40, 40))
        assert (mode, box) == ("RGB", (0, 0, 60.0, 40.0)) and im.size == (60, 40)
        im.thumbnail((40, 40))
        assert im.size == (40, 27)
        thumb = np.asarray(im)
    assert render_sizes == [(40, 27)]  # straight at the thumbnail's size: no full-size render, no resize
    assert np.array_equal(thumb, gscodec.render(plugin.downscaled(f.gaussians, 40, 27)))
    with Image.open(DATA / "coffee.png") as original:
        reference = np.asarray(original.convert("RGB").resize((40, 27), Image.Resampling.BOX), dtype=np.float64)
    assert np.abs(thumb - reference).mean() < 12  # the same picture, small


def test_downscaled_renders_are_anti_aliased(saved: Path) -> None:
    g = gscodec.read(saved).gaussians
    assert plugin.downscaled(g, 150, 100) is g  # the stored size: the normative decode
    full = Image.fromarray(gscodec.render(g))
    small = plugin.downscaled(g, 38, 25)
    integral = g.colors * (g.chol[:, :1] * g.chol[:, 2:]) * (38 / 150) * (25 / 100)
    assert np.allclose(small.colors * (small.chol[:, :1] * small.chol[:, 2:]), integral, rtol=1e-5)
    reference = np.asarray(full.resize((38, 25), Image.Resampling.LANCZOS), dtype=np.float64)
    filtered = np.abs(gscodec.render(small) - reference).mean()
    sampled = np.abs(gscodec.render(g, 38, 25) - reference).mean()
    assert filtered < 0.8 * sampled  # closer to a proper shrink than point sampling


def test_draft_renders_at_the_drafted_size(saved: Path, render_sizes: list[tuple[int, int]]) -> None:
    g = gscodec.read(saved).gaussians
    with Image.open(saved) as im:
        assert im.draft(None, (50, 10)) == ("RGB", (0, 0, 50.0, 34.0))  # at least 50x10, aspect kept
        pixels = np.asarray(im)
    assert render_sizes == [(50, 34)]
    assert np.array_equal(pixels, gscodec.render(plugin.downscaled(g, 50, 34)))
    with Image.open(saved) as im:
        assert im.draft(None, (400, 400)) == ("RGB", (0, 0, 150.0, 100.0))  # never above the stored size
        im.load()
        assert im.draft(None, (10, 10)) is None and im.size == (150, 100)  # loaded: no effect
    assert render_sizes[1:] == [(150, 100)]


def test_thumbnail_matches_pillow_sizes_and_after_load_resizes(saved: Path,
                                                               render_sizes: list[tuple[int, int]]) -> None:
    for box in ((40, 40), (149, 10), (1, 1), (200, 200), (150, 100)):
        expected = Image.new("RGB", (150, 100))
        expected.thumbnail(box)
        with Image.open(saved) as im:
            im.thumbnail(box)
            assert im.size == expected.size and np.asarray(im).shape == (expected.height, expected.width, 3)
    assert (150, 100) not in render_sizes[:3]
    with Image.open(saved) as im:
        im.load()
        im.thumbnail((30, 30))  # already rendered: Pillow's own resize
        assert im.size == (30, 20)
    assert render_sizes[-1] == (150, 100)


def test_save_writes_the_file_gsi_encode_writes(saved: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["encode", str(DATA / "coffee.png"), "-o", str(tmp_path),
                                      "--points", str(POINTS), "--effort", str(EFFORT)])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "coffee.gsi").read_bytes() == saved.read_bytes()


def test_save_options_and_conversions(tmp_path: Path) -> None:
    rgba = Image.new("RGBA", (24, 16), (255, 0, 0, 0))  # fully transparent: composited on white
    rgba.save(tmp_path / "a.gsi", points=8, quality="float16", effort=1, optimize=True)  # optimize: not ours
    f = gscodec.read(tmp_path / "a.gsi")
    assert f.header.mode == gscodec.Mode.FLOAT16 and f.header.count == 8 and f.metadata["source"] == ""
    assert np.asarray(gscodec.render(f.gaussians)).min() > 240
    grey = Image.new("L", (24, 16), 90)
    grey.save(tmp_path / "g.gsi", points=8, quality="low", effort=1)
    assert abs(float(gscodec.render(gscodec.read(tmp_path / "g.gsi").gaussians).mean()) - 90) < 5
    for bad in ({"points": 0}, {"points": 2.5}, {"quality": 80}, {"quality": "best"}, {"effort": 12}):
        with pytest.raises(ValueError):
            grey.save(tmp_path / "bad.gsi", **{"points": 8, **bad})


def test_errors_are_pillows_and_the_librarys(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.gsi"
    gscodec.write(decompression_bomb(), bomb, mode="float16")
    with Image.open(bomb) as im, pytest.raises(Image.DecompressionBombError) as caught:
        im.load()
    assert isinstance(caught.value, gscodec.RenderBudgetError) and isinstance(caught.value, ValueError)
    with Image.open(bomb) as im:  # a small thumbnail of the same file stays within the minimum budget
        im.thumbnail((8, 8))
        assert im.size == (8, 8)
    data = bytearray(gscodec.encode(decompression_bomb(n=50)))
    data[-1] ^= 0xFF
    (tmp_path / "bad.gsi").write_bytes(bytes(data))
    with Image.open(tmp_path / "bad.gsi") as im, pytest.raises(OSError, match="CRC") as caught:
        im.load()
    assert isinstance(caught.value, gscodec.GsiError)
    (tmp_path / "junk.gsi").write_bytes(b"\x89GSI" + b"\0" * 40)
    with pytest.raises(OSError):  # PIL.UnidentifiedImageError
        Image.open(tmp_path / "junk.gsi")


def test_size_arithmetic() -> None:
    assert plugin.draft_size((768, 512), (128, 128)) == (192, 128)
    assert plugin.draft_size((768, 512), (100, 50)) == (100, 67)
    assert plugin.draft_size((768, 512), (1000, 1)) == (768, 512)
    assert plugin.draft_size((3, 5000), (1, 1)) == (1, 1667)
    assert plugin.thumbnail_size((768, 512), (800, 600)) is None
