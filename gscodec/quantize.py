"""Quantization: a :class:`GaussianImage` to integer codes and back (the "quantized" stage).

The quantized representation (normative, ``spec/gsi.md`` section "Quantized mode"):

* Positions snap to a grid of ``2**-position_bits`` pixels inside the image,
  ``ix = clamp(round(x * 2**p), 0, width * 2**p)`` (likewise ``iy``), and the
  Gaussians are sorted by the Morton code of ``(ix, iy)`` (stable).
* Six attribute fields, each ``value = offset + step * q`` with a signed integer
  code ``q``: ``log2(l11)``, ``log2(l22)``, the shear ``l21 / l22``, and the
  colour in YCoCg (``Y = (R + 2G + B) / 4``, ``Co = (R - B) / 2``,
  ``Cg = (2G - R - B) / 4``) or in RGB.
* Steps come from bits per field: a field of nominal range ``R`` quantized
  with ``b`` bits has ``step = R / 2**b`` (a value inside the nominal range
  then costs at most ``b`` bits before entropy coding). Values snap to the
  absolute grid ``step * k``; ``offset`` is ``step`` times the lower median of
  the ``k``, so codes centre on zero and quantizing a dequantized image again
  gives the same codes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .gaussians import GaussianImage
from .limits import MAX_POSITION_FRACTION_BITS

COLOR_RGB = 0
COLOR_YCOCG = 1

FIELD_NAMES = ("log2_l11", "log2_l22", "shear", "c0", "c1", "c2")
"""The six quantized attribute fields in stream order."""

NOMINAL_RANGE = {"scale": 8.0, "shear": 4.0, "color": 1.0}
"""Nominal range per kind of field: log2 scales 2**-1..2**7 px, shear -2..2, colour 0..1."""

MAX_FIELD_BITS = 12
"""Finest step per field that the encoder offers (codes stay within 16 bits)."""


@dataclass(frozen=True)
class Quantization:
    """Bits per field: the quality knob of quantized mode.

    Attributes:
        position_bits: fractional bits of the position grid (step ``2**-p`` px), 0..4.
        scale_bits: bits over the nominal log2-scale range 8 (step ``8 / 2**b`` in log2 units).
        shear_bits: bits over the nominal shear range 4.
        color_bits: bits over the nominal range 1.0 of the luma (or of R, G, B).
        chroma_bits: bits over the nominal range 1.0 of Co and Cg (YCoCg only).
        color_transform: :data:`COLOR_YCOCG` (default) or :data:`COLOR_RGB`.
    """

    position_bits: int = 2
    scale_bits: int = 7
    shear_bits: int = 5
    color_bits: int = 6
    chroma_bits: int = 6
    color_transform: int = COLOR_YCOCG

    def __post_init__(self) -> None:
        if not 0 <= self.position_bits <= MAX_POSITION_FRACTION_BITS:
            raise ValueError(f"position_bits must be in 0..{MAX_POSITION_FRACTION_BITS}, got {self.position_bits}")
        for name in ("scale_bits", "shear_bits", "color_bits", "chroma_bits"):
            value = getattr(self, name)
            if not 1 <= value <= MAX_FIELD_BITS:
                raise ValueError(f"{name} must be in 1..{MAX_FIELD_BITS}, got {value}")
        if self.color_transform not in (COLOR_RGB, COLOR_YCOCG):
            raise ValueError(f"color_transform must be {COLOR_RGB} (RGB) or {COLOR_YCOCG} (YCoCg)")

    def steps(self) -> tuple[float, ...]:
        """Step per attribute field, in :data:`FIELD_NAMES` order.

        YCoCg steps are scaled by the norms of the transform's rows
        (``sqrt(6)/4`` for Y and Cg, ``sqrt(2)/2`` for Co), so that a given number
        of bits leaves about the same RGB error as in RGB while spending fewer
        bits on the decorrelated chroma.
        """
        scale = NOMINAL_RANGE["scale"] / 2**self.scale_bits
        shear = NOMINAL_RANGE["shear"] / 2**self.shear_bits
        luma = NOMINAL_RANGE["color"] / 2**self.color_bits
        chroma = NOMINAL_RANGE["color"] / 2**self.chroma_bits
        if self.color_transform == COLOR_RGB:
            return (scale, scale, shear, luma, luma, luma)
        return (scale, scale, shear, luma * _YCOCG_NORM[0], chroma * _YCOCG_NORM[1], chroma * _YCOCG_NORM[2])


_YCOCG_NORM = (6**0.5 / 4, 2**0.5 / 2, 6**0.5 / 4)


@dataclass(frozen=True, eq=False)
class QuantizedGaussians:
    """Integer codes of a quantized Gaussian image, in Morton order.

    Attributes:
        width, height: stored image size in pixels.
        position_bits: fractional bits of the position grid.
        color_transform: :data:`COLOR_RGB` or :data:`COLOR_YCOCG`.
        ix, iy: ``(N,)`` int64 grid coordinates, sorted by Morton code.
        offsets, steps: float32 per field (six each, :data:`FIELD_NAMES` order).
        codes: ``(6, N)`` int64 signed codes.
    """

    width: int
    height: int
    position_bits: int
    color_transform: int
    ix: np.ndarray
    iy: np.ndarray
    offsets: np.ndarray
    steps: np.ndarray
    codes: np.ndarray = field(repr=False)

    @property
    def count(self) -> int:
        return int(self.ix.shape[0])


def morton_encode(ix: np.ndarray, iy: np.ndarray) -> np.ndarray:
    """Interleave bits of non-negative ``ix`` (even bits) and ``iy`` (odd bits) into uint64 ``(N,)``."""
    return _spread_bits(ix.astype(np.uint64)) | (_spread_bits(iy.astype(np.uint64)) << np.uint64(1))


def _spread_bits(v: np.ndarray) -> np.ndarray:
    v = v & np.uint64(0xFFFFFFFF)
    for shift, mask in ((16, 0x0000FFFF0000FFFF), (8, 0x00FF00FF00FF00FF), (4, 0x0F0F0F0F0F0F0F0F),
                        (2, 0x3333333333333333), (1, 0x5555555555555555)):
        v = (v | (v << np.uint64(shift))) & np.uint64(mask)
    return v


def _to_fields(g: GaussianImage, color_transform: int) -> np.ndarray:
    """``(6, N)`` float64 attribute fields of ``g``."""
    chol = g.chol.astype(np.float64)
    rgb = g.colors.astype(np.float64)
    l11, l21, l22 = chol[:, 0], chol[:, 1], chol[:, 2]
    if color_transform == COLOR_YCOCG:
        r, gg, b = rgb[:, 0], rgb[:, 1], rgb[:, 2]
        c = np.stack([(r + 2 * gg + b) / 4, (r - b) / 2, (2 * gg - r - b) / 4])
    else:
        c = rgb.T
    return np.concatenate([np.stack([np.log2(l11), np.log2(l22), l21 / l22]), c])


def fields_to_params(fields: np.ndarray, color_transform: int) -> tuple[np.ndarray, np.ndarray]:
    """``(6, N)`` float64 fields to float32 ``chol (N, 3)`` and ``colors (N, 3)`` (normative arithmetic)."""
    l11 = np.exp2(fields[0])
    l22 = np.exp2(fields[1])
    chol = np.stack([l11, fields[2] * l22, l22], axis=1)
    if color_transform == COLOR_YCOCG:
        y, co, cg = fields[3], fields[4], fields[5]
        colors = np.stack([y + co - cg, y + cg, y - co - cg], axis=1)
    else:
        colors = fields[3:6].T
    return chol.astype(np.float32), colors.astype(np.float32)


def grid_positions(ix: np.ndarray, iy: np.ndarray, position_bits: int) -> np.ndarray:
    """``(N, 2)`` float32 pixel positions of grid coordinates (exact: a power-of-two scale)."""
    scale = 2.0 ** -position_bits
    return np.stack([ix * scale, iy * scale], axis=1).astype(np.float32)


def grid_coordinates(g: GaussianImage, position_bits: int) -> tuple[np.ndarray, np.ndarray]:
    """``(ix, iy)`` int64 ``(N,)``: the means on the ``2**-position_bits`` px grid, clamped to the image."""
    grid = 2**position_bits
    means = g.means.astype(np.float64)
    ix = np.clip(np.rint(means[:, 0] * grid), 0, g.width * grid).astype(np.int64)
    iy = np.clip(np.rint(means[:, 1] * grid), 0, g.height * grid).astype(np.int64)
    return ix, iy


def morton_order(g: GaussianImage, position_bits: int) -> np.ndarray:
    """The permutation :func:`quantize` applies to ``g``: a stable sort by Morton code, ``(N,)`` int64."""
    return np.argsort(morton_encode(*grid_coordinates(g, position_bits)), kind="stable")


def quantize(g: GaussianImage, q: Quantization = Quantization()) -> QuantizedGaussians:
    """Quantize ``g`` with the bits of ``q``; the Gaussians come back in Morton order."""
    ix, iy = grid_coordinates(g, q.position_bits)
    order = morton_order(g, q.position_bits)
    ix, iy = ix[order], iy[order]
    fields = _to_fields(g, q.color_transform)[:, order]
    steps = np.array(q.steps(), dtype=np.float32)
    offsets = np.zeros(len(FIELD_NAMES), dtype=np.float32)
    codes = np.zeros(fields.shape, dtype=np.int64)
    for f in range(len(FIELD_NAMES)):
        step = float(steps[f])
        grid = np.rint(fields[f] / step).astype(np.int64)
        # the lower median of the grid indices: an integer, so decoded values re-quantize to the same codes
        centre = int(np.partition(grid, (grid.size - 1) // 2)[(grid.size - 1) // 2]) if grid.size else 0
        offsets[f] = np.float32(step * centre)
        codes[f] = grid - centre
    return QuantizedGaussians(g.width, g.height, q.position_bits, q.color_transform, ix, iy, offsets, steps, codes)


def dequantize(qg: QuantizedGaussians) -> GaussianImage:
    """The Gaussian image that ``qg`` decodes to: ``value = offset + step * code`` in float64, then float32."""
    fields = qg.offsets.astype(np.float64)[:, None] + qg.steps.astype(np.float64)[:, None] * qg.codes.astype(np.float64)
    chol, colors = fields_to_params(fields, qg.color_transform)
    means = grid_positions(qg.ix, qg.iy, qg.position_bits)
    return GaussianImage(qg.width, qg.height, means, chol, colors)


def snap(g: GaussianImage, q: Quantization = Quantization()) -> GaussianImage:
    """``dequantize(quantize(g, q))``: what ``g`` looks like after a round trip through quantized mode."""
    return dequantize(quantize(g, q))
