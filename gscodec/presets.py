"""Encoder presets: the named quantization levels and the ``auto`` choice per image.

Encoder policy, not representation (the representation is :mod:`gscodec.quantize`):
any quantization decodes the same way; these tables are the bits that gave the
best PSNR at equal file size on the development photos.
"""

from __future__ import annotations

import math
from dataclasses import replace

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
