"""Rate presets: the quantization chosen per density of Gaussians (``gscodec.quantize.preset_for_density``)."""

from __future__ import annotations

import math

import pytest

from gscodec.quantize import RATE_PRESETS, Quantization, preset_for_density


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
