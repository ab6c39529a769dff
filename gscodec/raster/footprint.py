"""Each Gaussian's footprint, shared by the CPU backends (the decoder, the training forward and backward).

:func:`prepare_footprints` gives the image rows a Gaussian meets and the margin
that widens its float64 box so it covers the float32 per-pixel test
``d2 <= CUTOFF_SQ`` of the reference; :data:`SPAN_CUT` is that test's
cut-off, inflated for the float64 solve.
"""

from __future__ import annotations

import math

import numpy as np
from llvmlite import ir
from numba import njit
from numba.core import types
from numba.extending import intrinsic

from ..limits import CUTOFF_SQ
from .cache import key_caches_on_sources

F32_HALF = np.float32(0.5)
# Spans are solved in float64 with the cutoff inflated by this relative amount
# and widened by _PAD_PX (+ _PAD_REL * coordinate magnitude) pixels, which covers
# the float32 rounding of the per-pixel test; extra pixels just fail that test.
SPAN_CUT = CUTOFF_SQ * (1.0 + 1e-5)
_PAD_PX = 0.01
_PAD_REL = 1e-6


@intrinsic
def f32_from_bits(typingctx, bits):  # type: ignore[no-untyped-def]
    """Reinterpret an int32 as a float32."""
    sig = types.float32(types.int32)

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        return builder.bitcast(args[0], ir.FloatType())

    return sig, codegen


@njit(cache=True)
def prepare_footprints(
    means: np.ndarray, chol: np.ndarray, counts: np.ndarray, height: int, pads: np.ndarray, rows: np.ndarray
) -> None:
    """Footprint parameters of every Gaussian (all arrays batched, ``B`` first).

    Writes ``pads[b, k]`` (``(B, N)`` float64), the margin (pixels) that widens
    the footprint's float64 box so it covers the float32 test, and
    ``rows[b, k] = (r0, r1)``, the half-open range of image rows to visit, empty
    for padding and degenerate Gaussians (whose pad is left unset).
    """
    nb, n = means.shape[0], means.shape[1]
    for b in range(nb):
        for k in range(n):
            rows[b, k, 0] = 0
            rows[b, k, 1] = 0
            if k >= counts[b]:
                continue
            x = np.float64(means[b, k, 0])
            y = np.float64(means[b, k, 1])
            l11 = np.float64(chol[b, k, 0])
            l21 = np.float64(chol[b, k, 1])
            l22 = np.float64(chol[b, k, 2])
            syy = l21 * l21 + l22 * l22
            sc = abs(l11 * l22)
            if not (sc > 0.0 and math.isfinite(x) and math.isfinite(y) and math.isfinite(syy) and math.isfinite(sc)):
                continue
            sy = math.sqrt(syy)
            pad = _PAD_PX + _PAD_REL * (abs(x) + abs(y) + abs(l11) + sy)
            pads[b, k] = pad
            ext = sy * math.sqrt(SPAN_CUT) + pad
            # Row i is visited iff its centre i + 0.5 lies within [y - ext, y + ext].
            lo = min(max(y - ext - 0.5, -1.0), height + 1.0)
            hi = min(max(y + ext - 0.5, -1.0), height + 1.0)
            r0 = max(np.int64(math.ceil(lo)), 0)
            r1 = min(np.int64(math.floor(hi)) + 1, height)
            if r1 > r0:
                rows[b, k, 0] = r0
                rows[b, k, 1] = r1


key_caches_on_sources(globals())

__all__ = ["F32_HALF", "SPAN_CUT", "f32_from_bits", "prepare_footprints"]
