"""`gsi serve` (the web viewer's server) and `gsi view --ellipses` / :mod:`gscodec.overlay`."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

import gscodec
from gscodec.overlay import draw_ellipses, ellipse_outlines
from gscodec_cli.main import cli
from gscodec_cli.serve import collect, make_server

VECTORS = Path(__file__).resolve().parents[1] / "spec" / "vectors"


@pytest.fixture
def server(tmp_path: Path):
    (tmp_path / "sub").mkdir()
    a = tmp_path / "sub" / "a b.gsi"
    a.write_bytes((VECTORS / "small-quantized.gsi").read_bytes())
    (tmp_path / "sub" / "notes.txt").write_text("not served")
    srv = make_server(collect((tmp_path, VECTORS / "single-float32.gsi")))
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/"
    srv.shutdown()
    srv.server_close()


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.read()


def test_serve_lists_and_serves_the_files_and_the_viewer(server: str) -> None:
    listing = json.loads(_get(server + "files.json"))
    assert [f["name"] for f in listing] == ["a b.gsi", "single-float32.gsi"]
    assert _get(server + listing[0]["url"]) == (VECTORS / "small-quantized.gsi").read_bytes()
    assert b"viewer.js" in _get(server)
    assert b"export function decode" in _get(server + "gsi.js")
    assert _get(server + "vendor/fzstd.mjs")


@pytest.mark.parametrize("path", ["notes.txt", "files/2/x.gsi", "files/0/../../pyproject.toml", "../pyproject.toml",
                                  "test/decoder.test.js", "package.json"])
def test_serve_serves_nothing_else(server: str, path: str) -> None:
    with pytest.raises(urllib.error.HTTPError) as info:
        _get(server + path)
    assert info.value.code == 404


def test_ellipse_outlines_lie_on_the_sigma_contour() -> None:
    g = gscodec.decode((VECTORS / "small-quantized.gsi").read_bytes()).gaussians
    pts = ellipse_outlines(g, sigma=2.0, points=16)
    chol = g.chol.astype(np.float64)
    d = pts - g.means.astype(np.float64)[:, None, :]
    z1 = d[..., 0] / chol[:, None, 0]
    z2 = (d[..., 1] - chol[:, None, 1] * z1) / chol[:, None, 2]
    np.testing.assert_allclose(z1**2 + z2**2, 4.0, rtol=1e-9)


def test_draw_ellipses_marks_the_outline_only() -> None:
    g = gscodec.GaussianImage(40, 30, torch.tensor([[20.0, 15.0]]), torch.tensor([[8.0, 0.0, 5.0]]),
                              torch.zeros(1, 3))
    out = draw_ellipses(np.zeros((30, 40, 3), np.uint8), g, sigma=1.0)
    assert out[15, 20].tolist() == [0, 0, 0]  # the centre stays
    assert out[15, 28].max() > 100 and out[20, 20].max() > 100  # (x + l11, y) and (x, y + l22) are drawn
    with pytest.raises(ValueError):
        draw_ellipses(np.zeros((10, 10, 3), np.uint8), g)


def test_gsi_view_ellipses(tmp_path: Path) -> None:
    src = VECTORS / "small-quantized.gsi"
    runner = CliRunner()
    plain, marked, wide = tmp_path / "plain.png", tmp_path / "marked.png", tmp_path / "wide.png"
    assert runner.invoke(cli, ["view", str(src), "-o", str(plain), "--scale", "4"]).exit_code == 0
    result = runner.invoke(cli, ["view", str(src), "-o", str(marked), "--scale", "4", "--ellipses"])
    assert result.exit_code == 0, result.output
    assert runner.invoke(cli, ["view", str(src), "-o", str(wide), "--scale", "4", "--ellipses", "3"]).exit_code == 0
    a, b, c = (np.asarray(Image.open(p)).astype(int) for p in (plain, marked, wide))
    assert a.shape == b.shape == (128, 192, 3)
    assert 0.02 < (np.abs(a - b).max(axis=2) > 0).mean() < 0.8
    assert not np.array_equal(b, c)
    assert runner.invoke(cli, ["view", str(src), "-o", str(marked), "--ellipses", "0"]).exit_code == 2
