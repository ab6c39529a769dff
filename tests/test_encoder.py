"""The library encoder (:mod:`gscodec.encoder`, ``gscodec.encode_image``): the same bytes as ``gsi encode``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import gscodec
from gscodec.encoder import EncodeError, EncoderSettings, encode_image
from gscodec.fit.effort import DEFAULT_EFFORT
from gscodec_cli.main import cli

PHOTO = Path(__file__).resolve().parent / "data" / "chelsea.png"


def test_encode_image_writes_the_bytes_gsi_encode_writes(tmp_path: Path) -> None:
    options = {"density": 0.05, "iterations": 20, "resize": 32, "quality": "high"}
    result = CliRunner().invoke(cli, ["encode", str(PHOTO), "-o", str(tmp_path), "--density", "0.05",
                                      "--iterations", "20", "--resize", "32", "--quantization", "high"])
    assert result.exit_code == 0, result.output
    written = (tmp_path / "chelsea.gsi").read_bytes()
    assert gscodec.encode_image(PHOTO, **options) == written
    assert gscodec.decode(written).metadata["source"] == "chelsea.png"


def test_path_pil_and_array_inputs_give_the_same_file() -> None:
    options = {"points": 20, "iterations": 10, "resize": 24}
    from_path = encode_image(PHOTO, source="x", **options)
    with Image.open(PHOTO) as im:
        from_pil = encode_image(im, source="x", **options)
        array = np.asarray(im.convert("RGB"))
    assert from_pil == from_path == encode_image(array, source="x", **options)
    bare = gscodec.decode(encode_image(array, metadata=False, **options))
    assert bare.metadata == {} and bare.header.count == 20


def test_bpp_refits_towards_the_target_size() -> None:
    image = np.asarray(Image.open(PHOTO).convert("RGB"))[:48, :64]
    data = encode_image(image, bpp=2.0, iterations=30, metadata=False)
    assert abs(8 * len(data) / (64 * 48) - 2.0) <= 0.12 * 2.0


@pytest.mark.parametrize("options, message", [
    ({"points": 10, "bpp": 1.0}, "only one of points, density and bpp"),
    ({"points": 0}, "points must be in"),
    ({"density": 2.0}, "density must be in"),
    ({"quality": "best"}, "unknown quality"),
    ({"psnr": float("nan")}, "target_psnr"),
    ({"effort": 11}, "effort"),
    ({"backend": "tpu"}, "unknown backend"),
    ({"bpp": 1.0, "psnr": 30.0}, "bpp and target_psnr"),
    ({"quality": 75, "points": 10}, "quality of 0..100 sets the density"),
    ({"quality": 101}, "quality must be a number from 0 to 100"),
])
def test_bad_options_are_value_errors(options: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        encode_image(np.zeros((8, 8, 3), np.uint8), **options)


def test_bad_images_are_value_errors() -> None:
    for bad in (np.zeros((8, 8, 3), np.float32), np.zeros((0, 8, 3), np.uint8), np.zeros((8, 8, 5), np.uint8)):
        with pytest.raises(ValueError, match="expected a non-empty"):
            encode_image(bad, points=4, iterations=1)


def test_a_failed_fit_is_an_encode_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from gscodec import encoder

    def broken(*args, **kwargs):
        raise RuntimeError("out of luck")

    monkeypatch.setattr(encoder, "fit", broken)
    with pytest.raises(EncodeError, match="fitting failed: out of luck"):
        encode_image(np.zeros((8, 8, 3), np.uint8), points=4)


def test_settings_budget_per_rate_option() -> None:
    assert EncoderSettings().points_for(100, 100) == 900
    assert EncoderSettings(density=0.01).points_for(100, 100) == 100
    per = EncoderSettings(bpp=1.0)
    assert per.target_bytes(100, 100) == 1250 and per.points_for(100, 100) == round((1250 - 100) / 5.0)


def test_format_version_choice_keeps_the_gaussians(tmp_path: Path) -> None:
    options = {"points": 40, "iterations": 10, "resize": 32}
    auto = encode_image(PHOTO, **options)
    v1 = encode_image(PHOTO, format_version=1, **options)
    v2 = encode_image(PHOTO, format_version=2, **options)
    assert v1[4] == 1 and v2[4] == 2
    bare = [encode_image(PHOTO, format_version=v, metadata=False, **options) for v in (None, 1, 2)]
    assert bare[0] == min(bare[1:], key=len)  # auto: the smaller payload (the settings metadata name the request)
    assert gscodec.decode(auto).metadata["settings"].endswith("format=auto")
    g1, g2 = gscodec.decode(v1).gaussians, gscodec.decode(v2).gaussians
    assert np.array_equal(np.asarray(g1.means), np.asarray(g2.means))
    assert np.array_equal(np.asarray(g1.colors), np.asarray(g2.colors))
    result = CliRunner().invoke(cli, ["encode", str(PHOTO), "-o", str(tmp_path), "--points", "40", "--iterations",
                                      "10", "--resize", "32", "--format-version", "1"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "chelsea.gsi").read_bytes() == v1


def test_format_version_2_of_a_float_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="only quantized"):
        EncoderSettings(quality="float32", format_version=2)
    with pytest.raises(ValueError, match="format_version"):
        EncoderSettings(format_version=3)
    result = CliRunner().invoke(cli, ["encode", str(PHOTO), "-o", str(tmp_path), "--quantization", "float32",
                                      "--format-version", "2"])
    assert result.exit_code == 2 and "only quantized" in result.output


def test_a_quality_number_is_its_density_and_preset() -> None:
    from gscodec.presets import quality_settings

    image = np.asarray(Image.open(PHOTO).convert("RGB"))[:40, :48]
    chosen = quality_settings(30)
    by_quality = encode_image(image, quality=30, iterations=10)
    assert by_quality == encode_image(image, density=chosen.density, quality=chosen.quantization, iterations=10)
    f = gscodec.decode(by_quality)
    assert f.header.count == round(chosen.density * 40 * 48)
    assert f.metadata["settings"] == EncoderSettings(density=chosen.density, iterations=10).describe()


def test_settings_text_names_what_shapes_the_file() -> None:
    assert EncoderSettings().describe() == f"points=900 effort={DEFAULT_EFFORT} quantization=auto seed=0 format=auto"
    assert EncoderSettings().describe() == EncoderSettings(effort=DEFAULT_EFFORT, backend="cuda").describe()
    text = EncoderSettings(bpp=0.5, effort=2, iterations=30, resize=224, quality="high", seed=3,
                           format_version=1).describe()
    assert text == "bpp=0.5 effort=2 iterations=30 resize=224 quantization=high seed=3 format=1"
    assert "psnr=31.5" in EncoderSettings(density=0.02, target_psnr=31.5).describe()
    texts = {EncoderSettings(points=10).describe(), EncoderSettings(points=11).describe(),
             EncoderSettings(density=0.01).describe(), EncoderSettings(points=10, seed=1).describe()}
    assert len(texts) == 4
