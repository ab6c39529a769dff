"""Rate presets: the quantization chosen per density of Gaussians (``gscodec.presets.preset_for_density``)."""

from __future__ import annotations

import math

import pytest

from gscodec.presets import COLOR_BITS_BY_PSNR, MAX_AUTO_COLOR_BITS, RATE_PRESETS, preset_for_density
from gscodec.quantize import Quantization


def test_every_density_gets_a_preset_of_its_band() -> None:
    lower = 0.0
    for limit, q in RATE_PRESETS:
        assert isinstance(q, Quantization)
        for density in (lower * 1.0001 + 1e-9, min(limit * 0.999, 10.0)):
            assert preset_for_density(density) is q
        lower = limit
    assert math.isinf(RATE_PRESETS[-1][0])  # no density is left without a preset
    assert [limit for limit, _ in RATE_PRESETS] == sorted(limit for limit, _ in RATE_PRESETS)


def test_denser_images_never_get_a_coarser_position_grid() -> None:
    bits = [preset_for_density(d).position_bits for d in (1e-4, 0.004, 0.016, 0.03, 0.5)]
    assert bits == sorted(bits)


@pytest.mark.parametrize("density", [0.0, -0.01, math.nan, math.inf])
def test_bad_density_is_a_value_error(density: float) -> None:
    with pytest.raises(ValueError):
        preset_for_density(density)


def test_psnr_only_ever_raises_the_colour_bits_of_the_density_preset() -> None:
    for density in (0.001, 0.004, 0.016, 0.05):
        base = preset_for_density(density)
        previous = base.color_bits
        for psnr in (10.0, 25.0, 30.0, 32.4, 32.6, 36.0, 45.0, 60.0, math.inf):
            q = preset_for_density(density, psnr)
            geometry = (q.position_bits, q.scale_bits, q.shear_bits, q.color_transform)
            assert geometry == (base.position_bits, base.scale_bits, base.shear_bits, base.color_transform)
            assert q.color_bits >= previous and q.chroma_bits >= base.chroma_bits
            previous = q.color_bits


def test_each_psnr_tier_sets_its_colour_bits() -> None:
    lower = 0.0
    for limit, bits in COLOR_BITS_BY_PSNR:
        # both ends of the tier
        for psnr in (lower + 0.01, limit - 0.01 if math.isfinite(limit) else 99.0):
            for density in (0.001, 0.05):
                base = preset_for_density(density)
                q = preset_for_density(density, psnr)
                expected = min(MAX_AUTO_COLOR_BITS, base.color_bits + bits)
                assert (q.color_bits, q.chroma_bits) == (expected, min(MAX_AUTO_COLOR_BITS, base.chroma_bits + bits))
        lower = limit
    assert math.isinf(COLOR_BITS_BY_PSNR[-1][0])
    assert [bits for _, bits in COLOR_BITS_BY_PSNR] == sorted(bits for _, bits in COLOR_BITS_BY_PSNR)


def test_nan_psnr_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="psnr"):
        preset_for_density(0.01, math.nan)


def test_auto_colour_bits_stop_at_their_cap() -> None:
    for density in (0.001, 0.05):
        assert preset_for_density(density, 60.0).color_bits == MAX_AUTO_COLOR_BITS
        assert preset_for_density(density, 60.0).chroma_bits == MAX_AUTO_COLOR_BITS


def test_quality_scale_doubles_the_density_every_15_steps() -> None:
    from gscodec.presets import QUALITY_ANCHOR, quality_settings

    q0, d0 = QUALITY_ANCHOR
    assert quality_settings(q0).density == pytest.approx(d0)
    for q in (0, 10, 37.5, 85):
        assert quality_settings(q + 15).density == pytest.approx(2 * quality_settings(q).density)
    densities = [quality_settings(q).density for q in range(101)]
    assert densities == sorted(densities) and 0 < densities[0] and densities[-1] <= 1


def test_quality_scale_quantization_gets_finer_only_at_the_top() -> None:
    from gscodec.presets import PRESETS, quality_settings

    names = [quality_settings(q).quantization for q in range(101)]
    assert set(names[:95]) == {"auto"} and set(names[95:100]) == {"high"} and names[100] == "max"
    assert all(n == "auto" or n in PRESETS for n in names)


@pytest.mark.parametrize("bad", [-1, 100.5, float("nan"), "75", True, None])
def test_quality_outside_0_to_100_is_a_value_error(bad: object) -> None:
    from gscodec.presets import quality_settings

    with pytest.raises(ValueError, match="quality must be a number from 0 to 100"):
        quality_settings(bad)  # type: ignore[arg-type]
