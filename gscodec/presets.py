"""Encoder presets: the named quantization levels, the ``auto`` choice per image, and the 0..100 quality scale.

Encoder policy, not representation (the representation is :mod:`gscodec.quantize`):
any quantization decodes the same way; these tables are the bits that gave the
best PSNR at equal file size on the development photos.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from .quantize import Quantization

PRESETS: dict[str, Quantization] = {
    "low": Quantization(position_bits=1, scale_bits=6, shear_bits=4, color_bits=5, chroma_bits=5),
    "medium": Quantization(),
    "high": Quantization(position_bits=3, scale_bits=8, shear_bits=6, color_bits=7, chroma_bits=7),
    "max": Quantization(position_bits=4, scale_bits=10, shear_bits=8, color_bits=9, chroma_bits=9),
}
"""Named quality levels; what each costs is measured by ``benchmarks/bench_quantization.py``."""

RATE_PRESETS: tuple[tuple[float, Quantization], ...] = (
    (0.008, Quantization(position_bits=1, scale_bits=6, shear_bits=4, color_bits=5, chroma_bits=5)),
    (math.inf, Quantization(position_bits=2, scale_bits=6, shear_bits=4, color_bits=6, chroma_bits=6)),
)
"""``(density below which it applies, quantization)``: the bits that gave the best
PSNR at equal file size on native-resolution photos (``benchmarks/bench_quantization.py
--size 0 --density ...``). Sparse images (few, large Gaussians) trade position,
scale and colour precision for more Gaussians; dense ones keep 1/4 px and
6-bit colours but need fewer shape bits. These colour bits are the floor;
:data:`COLOR_BITS_BY_PSNR` raises them for fits of high quality."""

COLOR_BITS_BY_PSNR: tuple[tuple[float, int], ...] = ((32.5, 0), (36.0, 1), (math.inf, 2))
"""``(float-fit PSNR in dB below which it applies, colour and chroma bits added
to the density's preset)``, up to :data:`MAX_AUTO_COLOR_BITS`. The error a
colour step leaves must stay under the fit's own error, so fits of high quality
need finer colours. A bit was added where it bought more dB per extra byte than
more Gaussians do (the slope of the curve between densities), measured per
image on the development photos at native size."""

MAX_AUTO_COLOR_BITS = 7
"""The finest colour the ``auto`` choice gives. An 8th bit paid on one
development photo (retina, 38 dB) but gained nothing on a dense 44 dB fit
(FreshFlower of the held-out set, looked at while diagnosing the high-rate
flattening), so the cap stays at 7."""


def preset_for_density(density: float, psnr: float | None = None) -> Quantization:
    """The rate-distortion-best quantization for ``density`` Gaussians per pixel (``N / (W * H)``).

    ``psnr``: the PSNR (dB) of the float fit, when known (the fitter's ``"auto"``
    quantization); it adds colour bits to the density's preset
    (:data:`COLOR_BITS_BY_PSNR`; ``inf``, a perfect fit, is the finest tier).
    """
    if not (math.isfinite(density) and density > 0):
        raise ValueError(f"density must be a positive number of Gaussians per pixel, got {density}")
    q = next(q for limit, q in RATE_PRESETS if density < limit)
    if psnr is None:
        return q
    if math.isnan(psnr):
        raise ValueError("psnr must be a number of dB, got nan")
    extra = next(b for limit, b in COLOR_BITS_BY_PSNR if psnr < limit or math.isinf(limit))
    color = max(q.color_bits, min(MAX_AUTO_COLOR_BITS, q.color_bits + extra))
    chroma = max(q.chroma_bits, min(MAX_AUTO_COLOR_BITS, q.chroma_bits + extra))
    return replace(q, color_bits=color, chroma_bits=chroma)


def resolve_preset(name: str) -> Quantization | str:
    """The fitter's ``quantization`` for preset ``name``: the :data:`PRESETS` entry, or ``"auto"`` itself.

    ``"auto"`` is resolved per image by the fitter, once the float fit's PSNR is
    known (:func:`preset_for_density`).
    """
    if name == "auto":
        return name
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown quantization preset {name!r}; valid: auto, {', '.join(PRESETS)}") from None


QUALITY_ANCHOR = (10.0, 0.002)
"""``(quality, Gaussians per pixel)``: the low end of the measured densities, where the dev photos' files came
out at 27.3 dB, as JPEG's at quality 10 (``benchmarks/results/rd-dev/points.csv``, effort 4)."""

QUALITY_PER_DOUBLING = 15.0
"""Quality steps per doubling of the density. On the dev photos each doubling from 0.002 to 0.03 Gaussians per
pixel gained about 2.0-2.5 dB (27.3, 29.3, 31.5, 33.9 and 35.9 dB at 0.002-0.03, effort 4): quality 10-40 lands
within 0.8 dB of JPEG's PSNR at the same quality (31.5/31.6 dB at 40), quality 55-70 1.4-1.9 dB above it
(35.9/34.0 dB at 70), where the scale was set on an earlier fitter that gained 1.3-1.9 dB per doubling."""

QUALITY_QUANTIZATION: tuple[tuple[float, str], ...] = ((95.0, "auto"), (100.0, "high"), (math.inf, "max"))
"""``(quality below which it applies, quantization preset)``: ``auto`` (the rate-distortion-best bits per image)
up to 95; finer fixed presets for near-lossless requests above it, where size matters least (a choice, not a
measured optimum)."""


@dataclass(frozen=True)
class QualitySettings:
    """What a 0..100 quality stands for: a Gaussian ``density`` (per pixel) and a ``quantization`` preset name."""

    quality: float
    density: float
    quantization: str


def quality_settings(quality: float) -> QualitySettings:
    """The encoder settings of ``quality`` on the 0..100 scale of ``gsi encode -q`` (as cwebp's ``-q``).

    The density doubles every :data:`QUALITY_PER_DOUBLING` steps from
    :data:`QUALITY_ANCHOR` (quality 0: 0.0013, 50: 0.0127, 75: 0.040, 100: 0.128
    Gaussians per pixel); the quantization is :data:`QUALITY_QUANTIZATION`'s.
    Raises ``ValueError`` outside 0..100.
    """
    if isinstance(quality, bool) or not isinstance(quality, (int, float)) or not 0 <= quality <= 100:
        raise ValueError(f"quality must be a number from 0 to 100, got {quality!r}")
    q0, d0 = QUALITY_ANCHOR
    density = d0 * 2.0 ** ((float(quality) - q0) / QUALITY_PER_DOUBLING)
    preset = next(name for limit, name in QUALITY_QUANTIZATION if quality < limit)
    return QualitySettings(float(quality), density, preset)
