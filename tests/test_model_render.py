"""The data model's validation, the normative decode, resizing, and the Pillow plugin."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import gscodec
from gscodec import GaussianImage, InvalidGaussiansError
from gscodec.raster.reference import rasterize_sum
from gscodec.render import output_size, to_uint8


@pytest.mark.parametrize("kwargs", [
    {"width": 0}, {"height": 20000}, {"width": 3.5},
    {"means": torch.zeros(2, 3)}, {"chol": torch.ones(3, 3)}, {"colors": torch.full((2, 3), float("nan"))},
    {"chol": torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 1.0]])}, {"chol": torch.tensor([[-1.0, 0.0, 1.0]] * 2)},
])
def test_invalid_gaussians_are_refused(kwargs: dict) -> None:
    args = {"width": 4, "height": 4, "means": torch.zeros(2, 2), "chol": torch.ones(2, 3), "colors": torch.zeros(2, 3)}
    args.update(kwargs)
    with pytest.raises(InvalidGaussiansError):
        GaussianImage(**args)


def test_model_converts_to_cpu_float32() -> None:
    g = GaussianImage(4, 4, np.zeros((1, 2)), torch.ones(1, 3, dtype=torch.float64, requires_grad=True), [[1, 2, 3]])
    assert g.means.dtype == g.chol.dtype == g.colors.dtype == np.float32
    assert all(isinstance(a, np.ndarray) and a.flags.c_contiguous for a in (g.means, g.chol, g.colors))
    assert g.chol.tolist() == [[1.0, 1.0, 1.0]] and g.count == len(g) == 1


def test_single_gaussian_matches_closed_form() -> None:
    g = GaussianImage(9, 7, torch.tensor([[4.5, 3.5]]), torch.tensor([[2.0, 0.5, 1.5]]), torch.tensor([[1.0, 0.5, 0.25]]))
    img = rasterize_sum(*g.tensors(), 9, 7)
    cov = torch.from_numpy(g.covariance()[0]).double()
    inv = torch.linalg.inv(cov)
    for i in range(7):
        for j in range(9):
            d = torch.tensor([j + 0.5 - 4.5, i + 0.5 - 3.5], dtype=torch.float64)
            d2 = float(d @ inv @ d)
            expected = np.exp(-d2 / 2) if d2 <= 9 else 0.0
            np.testing.assert_allclose(img[i, j].double().numpy(), expected * np.array([1.0, 0.5, 0.25]), atol=1e-6)
    assert float(img[3, 4, 0]) == pytest.approx(1.0)


def test_to_uint8_rounds_and_clamps() -> None:
    v = torch.tensor([[[-0.5, 0.0, 1.0 / 510 - 1e-6], [1.0 / 510 + 1e-6, 1.0, 7.0]]])
    assert to_uint8(v).tolist() == [[[0, 0, 0], [1, 255, 255]]]


def test_render_at_another_size_samples_the_same_continuous_image(gaussians) -> None:
    big = gscodec.render_float(gaussians, scale=2.0, backend="torch")
    assert isinstance(big, np.ndarray) and big.shape == (64, 96, 3) and big.dtype == np.float32
    direct = gaussians.scaled(96, 64)
    assert np.allclose(big, rasterize_sum(*direct.tensors(), 96, 64).numpy())
    assert torch.equal(gscodec.render_tensor(gaussians, scale=2.0, backend="torch"), torch.from_numpy(big))
    # a 2x render's pixel (2i+1, 2j+1) lies a quarter pixel from the 1x centre: close to the 1x value
    small = gscodec.render_float(gaussians, backend="torch")
    assert float(np.abs(big[1::2, 1::2] - small).mean()) < 0.05
    assert output_size(gaussians, width=24) == (24, 16)
    assert output_size(gaussians, height=64) == (96, 64)
    with pytest.raises(ValueError):
        output_size(gaussians, width=10, scale=2.0)


def test_pillow_plugin_opens_gsi(tmp_path, gaussians) -> None:
    path = tmp_path / "x.gsi"
    gscodec.write(gaussians, path, metadata={"source": "x.png"})
    gscodec.register_pillow()
    with Image.open(path) as im:
        assert (im.format, im.size, im.mode) == ("GSI", (48, 32), "RGB")
        assert im.info["source"] == "x.png"
        pixels = np.asarray(im)
    assert np.array_equal(pixels, gscodec.render(gscodec.read(path).gaussians))


def test_pillow_plugin_reports_corrupt_file(tmp_path, gaussians) -> None:
    data = bytearray(gscodec.encode(gaussians))
    data[-1] ^= 0xFF
    path = tmp_path / "bad.gsi"
    path.write_bytes(bytes(data))
    gscodec.register_pillow()
    with Image.open(path) as im, pytest.raises(OSError, match="CRC"):
        im.load()
