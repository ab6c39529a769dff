"""Forward-only CPU renderer for decoding: numpy in, numpy out, no autograd and no torch.

Same semantics as :func:`gscodec.raster.reference.rasterize_sum` (normative):
per pixel ``d2`` in float32 with the reference's operation order (so the
``d2 <= CUTOFF_SQ`` mask matches the float32 reference), weight ``exp(-d2 / 2)``
with relative error below 3e-7. Differences from the training kernel in :mod:`.cpu`:

* Gaussians are binned once into horizontal bands of rows (counting sort over
  each Gaussian's row range), so a band visits only the Gaussians reaching it;
* bands are dealt cyclically to the numba threads; each band is rendered into
  per-thread planar scratch rows that stay in cache;
* ``z1 = (px - x) / l11`` does not depend on the row, so it is computed once
  per Gaussian and band for the columns of its bounding box;
* the conversion to 8 bits, ``floor(clamp(v, 0, 1) * 255 + 0.5)``, is fused
  into the band's write-out, and there is no torch or autograd in the path;
* scratch rows keep the three channel planes a compile-time ``_STRIDE`` apart
  (no runtime alias checks per row); Gaussians at most ``_NARROW`` columns wide
  skip the per-row span and use their rounded column range; Gaussians of colour
  0 are skipped; ``exp`` is a degree-5 polynomial in Estrin form with FMAs
  (``d2`` itself is never contracted, so the mask stays exact);
* rows are rendered in pairs over the union of their two spans (the exact
  per-pixel test drops the extra pixels): half the short vector loops, whose
  exits and latency dominated, and two independent ``exp`` chains per step
  (6% faster median, 8-10% in the fastest rounds, 768x512 with 10000 Gaussians,
  idle machine, interleaved runs).

Measured on a 768x512 photo with 10000 Gaussians (``benchmarks/bench_decode.py``,
one thread, profiled with ``perf``, before these changes): the vector row loop
was 54% of the time, per-row set-up (span, alias checks) 26%, the 8-bit write-out
8%, per-Gaussian column terms 8%. These changes made the render 1.33x faster
(interleaved runs on a loaded 2-core machine). Tried and dropped (no gain or
slower): an incremental ``exp`` along rows (ratio recurrence; the extra pass
costs more than the polynomial it saves), aligning spans to 8 columns, and bands
of 8, 16 or 64 rows.
"""

from __future__ import annotations

import numba
import numpy as np
from llvmlite import ir
from numba import njit, prange
from numba.core import types
from numba.extending import intrinsic

from ..limits import MAX_DIMENSION
from .cpu import _F32_CUT, _F32_HALF, _P_INV_SYY, _P_MU, _P_PAD, _P_SC, _ROUND, _SPAN_CUT, _f32_from_bits, _prepare, _span

# Rows per band: the scratch (3 planes x _BAND_ROWS x width float32, 300 KB at
# width 768) stays in L2; fewer, taller bands recompute fewer column terms.
_BAND_ROWS = 32
_F32_255 = np.float32(255.0)
_F32_ROUND = np.float32(12582912.0)  # 1.5 * 2^23: adding and subtracting it rounds to an integer
# Scratch rows: channel c of band row ii starts at (3 * ii + c) * _STRIDE floats. A
# compile-time stride lets LLVM prove the three channel planes disjoint, so the row
# loop needs no runtime alias checks between them.
_STRIDE = MAX_DIMENSION + 2 * _ROUND
# Gaussians whose column range is at most this wide skip the per-row span and
# cover their whole (rounded) column range in every row: the exact mask decides.
_NARROW = 2 * _ROUND


@intrinsic
def _fma(typingctx, a, b, c):  # type: ignore[no-untyped-def]
    """``a * b + c`` with one rounding (float32)."""
    sig = types.float32(types.float32, types.float32, types.float32)

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        f32 = ir.FloatType()
        fn = builder.module.declare_intrinsic("llvm.fma", [f32], ir.FunctionType(f32, [f32, f32, f32]))
        return builder.call(fn, args)

    return sig, codegen


@njit(cache=True)
def _bin_bands(rows: np.ndarray, band_rows: int, nbands: int) -> tuple[np.ndarray, np.ndarray]:
    """Gaussians per band: ``order[starts[b]:starts[b + 1]]`` are those whose row range meets band ``b``."""
    n = rows.shape[0]
    starts = np.zeros(nbands + 1, dtype=np.int64)
    for k in range(n):
        r0, r1 = rows[k, 0], rows[k, 1]
        if r1 > r0:
            for b in range(r0 // band_rows, (r1 - 1) // band_rows + 1):
                starts[b + 1] += 1
    for b in range(nbands):
        starts[b + 1] += starts[b]
    fill = starts[:-1].copy()
    order = np.empty(starts[nbands], dtype=np.int64)
    for k in range(n):
        r0, r1 = rows[k, 0], rows[k, 1]
        if r1 > r0:
            for b in range(r0 // band_rows, (r1 - 1) // band_rows + 1):
                order[fill[b]] = k
                fill[b] += 1
    return starts, order


@njit(cache=True, inline="always")
def _weight(z1: np.float32, dy: np.float32, l21: np.float32, l22: np.float32) -> np.float32:
    """``exp(-d2 / 2)`` of a pixel at ``z1`` and row offset ``dy``, 0 outside the cut-off.

    ``d2`` is computed without FMA contraction (the reference's float32 operation
    order, so the mask is exact).
    """
    z2 = (dy - l21 * z1) / l22
    d2 = z1 * z1 + z2 * z2
    w = _exp_neg_half(d2)
    return w if d2 <= _F32_CUT else np.float32(0.0)


@njit(cache=True, inline="always")
def _add_row(
    acc: np.ndarray, z1s: np.ndarray, count: int,
    dy: np.float32, l21: np.float32, l22: np.float32, c0: np.float32, c1: np.float32, c2: np.float32,
) -> None:
    """Add one Gaussian to ``count`` pixels of a scratch row (channels ``_STRIDE`` apart), given their ``z1``."""
    for t in range(count):
        w = _weight(z1s[t], dy, l21, l22)
        acc[t] = _fma(w, c0, acc[t])
        acc[_STRIDE + t] = _fma(w, c1, acc[_STRIDE + t])
        acc[2 * _STRIDE + t] = _fma(w, c2, acc[2 * _STRIDE + t])


@njit(cache=True, inline="always")
def _add_row2(
    acc: np.ndarray, z1s: np.ndarray, count: int, dy0: np.float32, dy1: np.float32,
    l21: np.float32, l22: np.float32, c0: np.float32, c1: np.float32, c2: np.float32,
) -> None:
    """:func:`_add_row` for two consecutive scratch rows (the second ``3 * _STRIDE`` on) over the same pixels."""
    for t in range(count):
        wa = _weight(z1s[t], dy0, l21, l22)
        wb = _weight(z1s[t], dy1, l21, l22)
        acc[t] = _fma(wa, c0, acc[t])
        acc[_STRIDE + t] = _fma(wa, c1, acc[_STRIDE + t])
        acc[2 * _STRIDE + t] = _fma(wa, c2, acc[2 * _STRIDE + t])
        acc[3 * _STRIDE + t] = _fma(wb, c0, acc[3 * _STRIDE + t])
        acc[4 * _STRIDE + t] = _fma(wb, c1, acc[4 * _STRIDE + t])
        acc[5 * _STRIDE + t] = _fma(wb, c2, acc[5 * _STRIDE + t])


@njit(cache=True, inline="always")
def _column_terms(z1s: np.ndarray, px: np.ndarray, count: int, x: np.float32, l11: np.float32) -> None:
    """``z1 = (px - x) / l11`` for ``count`` pixel-centre x ``px``: the same in every row."""
    for t in range(count):
        z1s[t] = (px[t] - x) / l11


@njit(cache=True)
def _centres(width: int) -> np.ndarray:
    """``(width + 2 * _ROUND,)`` float32 pixel-centre coordinates ``j + 0.5``."""
    px = np.empty(width + 2 * _ROUND, dtype=np.float32)
    for j in range(px.shape[0]):
        px[j] = np.float32(j) + _F32_HALF
    return px


@njit(cache=True, inline="always")
def _exp_neg_half(d2: np.float32) -> np.float32:
    """``exp(-d2 / 2)`` in float32 for ``d2 >= 0`` (relative error below 3e-7; clamps at ``2^-100``), vectorizable.

    ``2^x`` with ``x = -d2 log2(e) / 2``: ``n = round(x)`` by the 1.5 * 2^23
    addition trick, a degree-5 least-squares fit of ``2^r`` on ``|r| <= 1/2``
    evaluated with FMAs in Estrin's scheme (short dependency chain), and ``2^n``
    built in the exponent bits.
    """
    x = max(d2 * np.float32(-0.72134752044448170), np.float32(-100.0))
    n = (x + _F32_ROUND) - _F32_ROUND
    r = x - n
    r2 = r * r
    q01 = _fma(np.float32(0.69314686), r, np.float32(1.0))
    q23 = _fma(np.float32(0.05550893), r, np.float32(0.24022238))
    q45 = _fma(np.float32(0.00132187), r, np.float32(0.0096717))
    p = _fma(r2, _fma(r2, q45, q23), q01)
    return p * _f32_from_bits((np.int32(n) + np.int32(127)) << np.int32(23))


@njit(cache=True, inline="always")
def _u8(v: np.float32) -> np.uint8:
    """``floor(clamp(v, 0, 1) * 255 + 0.5)`` as uint8 (NaN becomes 0)."""
    v = v if v > np.float32(0.0) else np.float32(0.0)
    v = v if v < np.float32(1.0) else np.float32(1.0)
    return np.uint8(np.int32(np.floor(v * _F32_255 + _F32_HALF)))


@njit(cache=True, parallel=True)
def _render_bands(
    means: np.ndarray, chol: np.ndarray, colors: np.ndarray, params: np.ndarray, rows: np.ndarray,
    starts: np.ndarray, order: np.ndarray, band_rows: int, to_u8: bool,
    out_u8: np.ndarray, out_f32: np.ndarray,
) -> None:
    """Render every band into ``out_u8`` (``to_u8``) or ``out_f32``, both ``(H, W, 3)``; the other is unused."""
    height, width = (out_u8.shape[0], out_u8.shape[1]) if to_u8 else (out_f32.shape[0], out_f32.shape[1])
    nbands = starts.shape[0] - 1
    px = _centres(width)
    for band in prange(nbands):
        # channel planes _STRIDE apart; only the first width + _ROUND floats of each are used
        acc = np.empty(3 * band_rows * _STRIDE, dtype=np.float32)
        for r in range(3 * band_rows):
            acc[r * _STRIDE: r * _STRIDE + width + _ROUND] = 0.0
        z1s = np.empty(width + 2 * _ROUND, dtype=np.float32)
        lo = band * band_rows
        hi = min(lo + band_rows, height)
        for idx in range(starts[band], starts[band + 1]):
            k = order[idx]
            c0 = colors[k, 0]
            c1 = colors[k, 1]
            c2 = colors[k, 2]
            if c0 == 0 and c1 == 0 and c2 == 0:
                continue
            x = means[k, 0]
            y = means[k, 1]
            l11 = chol[k, 0]
            l21 = chol[k, 1]
            l22 = chol[k, 2]
            mu = params[k, _P_MU]
            sc = params[k, _P_SC]
            inv_syy = params[k, _P_INV_SYY]
            pad = params[k, _P_PAD]
            xd = np.float64(x)
            yd = np.float64(y)
            # columns of the bounding box (clipped to the image), plus the rounding overrun
            hx = np.float64(np.sqrt(_SPAN_CUT)) * abs(np.float64(l11)) + pad
            b0 = max(np.int64(np.ceil(min(max(xd - hx - 0.5, -1.0), width + 1.0))), 0)
            b1 = min(np.int64(np.floor(min(max(xd + hx - 0.5, -1.0), width + 1.0))) + 1, width)
            if b1 <= b0:
                continue
            _column_terms(z1s, px[b0:], b1 - b0 + _ROUND, x, l11)
            r0 = max(rows[k, 0], lo)
            r1 = min(rows[k, 1], hi)
            narrow = b1 - b0 <= _NARROW
            i = r0
            while i < r1:
                if narrow:
                    j0, j1 = b0, b1
                else:
                    j0, j1 = _span(xd, i + 0.5 - yd, mu, sc, inv_syy, pad, width)
                    if i + 1 < r1:  # the union with the next row's span (either may be empty)
                        k0, k1 = _span(xd, i + 1.5 - yd, mu, sc, inv_syy, pad, width)
                        if j1 <= j0:
                            j0, j1 = k0, k1
                        elif k1 > k0:
                            j0, j1 = min(j0, k0), max(j1, k1)
                    j0 = max(j0, b0)
                    j1 = min(j1, b1)
                if j1 > j0:
                    count = (j1 - j0 + _ROUND - 1) // _ROUND * _ROUND
                    dy = (np.float32(i) + _F32_HALF) - y
                    if i + 1 < r1:
                        dy1 = (np.float32(i + 1) + _F32_HALF) - y
                        _add_row2(acc[3 * (i - lo) * _STRIDE + j0:], z1s[j0 - b0:], count, dy, dy1,
                                  l21, l22, c0, c1, c2)
                    else:
                        _add_row(acc[3 * (i - lo) * _STRIDE + j0:], z1s[j0 - b0:], count, dy, l21, l22, c0, c1, c2)
                i += 2
        for i in range(lo, hi):
            a = 3 * (i - lo) * _STRIDE
            if to_u8:
                for j in range(width):
                    out_u8[i, j, 0] = _u8(acc[a + j])
                    out_u8[i, j, 1] = _u8(acc[a + _STRIDE + j])
                    out_u8[i, j, 2] = _u8(acc[a + 2 * _STRIDE + j])
            else:
                for j in range(width):
                    out_f32[i, j, 0] = acc[a + j]
                    out_f32[i, j, 1] = acc[a + _STRIDE + j]
                    out_f32[i, j, 2] = acc[a + 2 * _STRIDE + j]


def render_numpy(
    means: np.ndarray, chol: np.ndarray, colors: np.ndarray, width: int, height: int, uint8: bool = False,
) -> np.ndarray:
    """Render the plain sum of 2D Gaussians at pixel centres (forward only).

    Args:
        means: ``(N, 2)`` centres ``(x, y)`` in pixels.
        chol: ``(N, 3)`` Cholesky factors ``(l11, l21, l22)`` in pixels.
        colors: ``(N, 3)`` RGB amplitudes (1.0 = full scale).
        width, height: output size in pixels.
        uint8: return 8-bit pixels ``floor(clamp(v, 0, 1) * 255 + 0.5)`` instead of floats.

    Returns:
        ``(H, W, 3)`` float32 (unclamped) or uint8 image. Non-finite or
        degenerate (``l11 == 0`` or ``l22 == 0``) Gaussians contribute nothing.
    """
    arrays = []
    for name, value, size in (("means", means, 2), ("chol", chol, 3), ("colors", colors, 3)):
        a = np.ascontiguousarray(value, dtype=np.float32)
        if a.ndim != 2 or a.shape[1] != size or a.shape[0] != np.shape(means)[0]:
            raise ValueError(f"{name} must have shape (N, {size}) with one N for all, got {a.shape}")
        arrays.append(a)
    m, l, c = arrays
    width, height = int(width), int(height)
    if width < 0 or height < 0:
        raise ValueError(f"width and height must be non-negative, got {width}x{height}")
    if width > MAX_DIMENSION:
        raise ValueError(f"width {width} exceeds {MAX_DIMENSION} pixels")
    n = m.shape[0]
    out_u8 = np.empty((height, width, 3) if uint8 else (0, 0, 3), dtype=np.uint8)
    out_f32 = np.empty((0, 0, 3) if uint8 else (height, width, 3), dtype=np.float32)
    out = out_u8 if uint8 else out_f32
    if not (width and height):
        return out
    params = np.empty((1, n, 4), dtype=np.float64)
    rows = np.zeros((1, n, 2), dtype=np.int64)
    _prepare(m[None], l[None], np.array([n], dtype=np.int64), height, params, rows)
    nbands = -(-height // _BAND_ROWS)
    starts, order = _bin_bands(rows[0], _BAND_ROWS, nbands)
    # bands one at a time to whichever thread is free: on a shared machine a
    # descheduled thread then delays one band, not a fixed share of them
    chunksize = numba.set_parallel_chunksize(1)
    try:
        _render_bands(m, l, c, params[0], rows[0], starts, order, _BAND_ROWS, uint8, out_u8, out_f32)
    finally:
        numba.set_parallel_chunksize(chunksize)
    return out


__all__ = ["render_numpy"]
