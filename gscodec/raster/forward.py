"""Forward-only CPU renderer for decoding: numpy in, numpy out, no autograd and no torch.

Same semantics as :func:`gscodec.raster.reference.rasterize_sum` (normative):
per pixel ``d2`` in float32 with the reference's operation order (so the
``d2 <= CUTOFF_SQ`` mask matches the float32 reference), weight ``exp(-d2 / 2)``
within about 1e-5 relative. How it differs from the training kernel in :mod:`.cpu`:

* Gaussians are binned once into horizontal bands of rows (counting sort over
  each Gaussian's row range); bands go one at a time to whichever numba thread
  is free, each into its own scratch. There are a multiple of the thread
  count of them (:func:`_band_count`; more where rows are so cheap that a band
  would pass 256 rows), cut where they balance the estimated work
  (:func:`_band_bounds`);
* the scratch is column-major in blocks of 8 columns (per block: rows, then the
  three channels, then 8 lanes), so a Gaussian is drawn as vertical strips of
  one SIMD vector: the hand-written LLVM IR kernels of :mod:`.strips` walk down
  a strip with the per-lane state in registers. Where ``|l22| >= 2`` pixels
  the weights come from a row recurrence (two multiplies per row instead of
  the ``exp`` polynomial; here the decoder's one-chain kernels, run with
  flush-to-zero set around each band's Gaussians: 3-7% less time than the
  training forward's two-chain kernels, which keep their floors); adjacent
  blocks are drawn together as two vectors;
* each Gaussian's rows per column block (float64, with the footprint's
  margins) and ``z1 = (px - x) / l11`` are solved once per Gaussian and band;
* Gaussians of colour 0 are skipped; the conversion to 8 bits,
  ``floor(clamp(v, 0, 1) * 255 + 0.5)``, is fused into the band's write-out,
  8 pixels at a time as interleaved RGB bytes.

Measured on a 768x512 photo with 10000 Gaussians (``benchmarks/bench_decode.py``
file, idle 2-core machine, against the row-span renderer this replaced): the
whole render 6.6 to 3.3 ms with two threads (minimum of rounds); the band kernel 11.3 to 5.4 ms on
one (before the last step below). What each step gave, one thread: the block layout and strips 11.3 to
10.1 ms (strips down the old row-major planes gave 9.6 ms: a strip's row step
touched three planes 64 KB apart, 5.5 ns per step in a micro-benchmark against
2.5 ns in the block layout); row ranges solved once per Gaussian and band, the
ends shared by adjacent blocks, 7.3 (solving them per strip had cost 1.8 ms);
the vector 8-bit pack 6.0; paired blocks 5.8; bands of 64 rows instead of 32
5.4. Then, on two threads, an even share of bands per thread (four of 128
rows here) 3.8 to 3.5 ms for the whole render, and the strips' row centres
carried as a vector instead of converted from the row index in every row 3.6
to 3.4 ms (5.8 ms on one thread); band edges placed where they balance the
estimated work (blocks of the Gaussians per row) instead of at equal heights,
3.71 to 3.39 ms (medians, interleaved). The row recurrence alone is worth about
10%: a strip's row costs about 20 vector operations, spread over the exact
``d2`` (one division), the mask, the three read-modify-writes and the
recurrence. Timed without the division (a reciprocal, which would also need
an exact fallback near ``d2 = 9``), the render was only 5% faster.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import njit, prange

from ..limits import MAX_DIMENSION
from .cache import key_caches_on_sources
from .footprint import F32_HALF, SPAN_CUT, prepare_footprints
from .strips import (CHANNEL_STRIDE, LANES as _LANES, MIN_RECURRENCE_L22, MXCSR_FTZ, MXCSR_SUPPORTED, ROW_STRIDE,
                     mxcsr, pack_rgb8, strip2_exact, strip2_recurrence, strip2_recurrence_ftz, strip_exact,
                     strip_recurrence, strip_recurrence_ftz, swap_mxcsr)

# Rows per band on average at most (a band may grow to twice that where rows
# are cheap): taller bands meet fewer Gaussians twice, but the bands must also
# share out evenly between the threads. The scratch is 3 channels x (rows + 1)
# x width float32 (1.2 MB for 128 rows at width 768).
_MAX_BAND_ROWS = 128
_F32_255 = np.float32(255.0)
_DECODE_FTZ = MXCSR_SUPPORTED  # the decoder's one-chain kernels need flush-to-zero (x86-64)


@njit(cache=True)
def _band_bounds(means: np.ndarray, chol: np.ndarray, pads: np.ndarray, rows: np.ndarray, width: int,
                 height: int, nbands: int) -> np.ndarray:
    """``(B + 1,)`` first rows of about ``nbands`` bands of equal estimated work, each at most ``2 * _MAX_BAND_ROWS`` tall.

    A row's work is the width of the column blocks of every Gaussian reaching it,
    plus a quarter of the image width (clearing and writing out the row).
    """
    diff = np.zeros(height + 1, dtype=np.float64)
    for k in range(rows.shape[0]):
        r0, r1 = rows[k, 0], rows[k, 1]
        if r1 > r0:
            b0, b1 = columns(np.float64(means[k, 0]), np.float64(chol[k, 0]), pads[k], width)
            if b1 > b0:
                w = np.float64(((b1 + _LANES - 1) // _LANES - b0 // _LANES) * _LANES)
                diff[r0] += w
                diff[r1] -= w
    cost = np.empty(height, dtype=np.float64)
    run = 0.0
    total = 0.0
    for r in range(height):
        run += diff[r]
        cost[r] = run + 0.25 * width
        total += cost[r]
    target = total / max(nbands, 1)
    bounds = np.empty(height + 1, dtype=np.int64)
    bounds[0] = 0
    count = 0
    acc = 0.0
    for r in range(height):
        acc += cost[r]
        if r + 1 < height and (acc >= target * (count + 1) or r + 1 - bounds[count] >= 2 * _MAX_BAND_ROWS):
            count += 1
            bounds[count] = r + 1
    count += 1
    bounds[count] = height
    return bounds[:count + 1].copy()


@njit(cache=True)
def _bin_bands(rows: np.ndarray, bounds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Gaussians per band: ``order[starts[b]:starts[b + 1]]`` are those whose row range meets band ``b``."""
    n = rows.shape[0]
    nbands = bounds.shape[0] - 1
    band_of = np.empty(bounds[nbands], dtype=np.int64)
    for b in range(nbands):
        band_of[bounds[b]:bounds[b + 1]] = b
    starts = np.zeros(nbands + 1, dtype=np.int64)
    for k in range(n):
        r0, r1 = rows[k, 0], rows[k, 1]
        if r1 > r0:
            for b in range(band_of[r0], band_of[r1 - 1] + 1):
                starts[b + 1] += 1
    for b in range(nbands):
        starts[b + 1] += starts[b]
    fill = starts[:-1].copy()
    order = np.empty(starts[nbands], dtype=np.int64)
    for k in range(n):
        r0, r1 = rows[k, 0], rows[k, 1]
        if r1 > r0:
            for b in range(band_of[r0], band_of[r1 - 1] + 1):
                order[fill[b]] = k
                fill[b] += 1
    return starts, order


@njit(cache=True, inline="always")
def column_terms(z1s: np.ndarray, px: np.ndarray, count: int, x: np.float32, l11: np.float32) -> None:
    """``z1 = (px - x) / l11`` for ``count`` pixel-centre x ``px``: the same in every row."""
    for t in range(count):
        z1s[t] = (px[t] - x) / l11


@njit(cache=True)
def _centres(width: int) -> np.ndarray:
    """``(width,)`` float32 pixel-centre coordinates ``j + 0.5``."""
    px = np.empty(width, dtype=np.float32)
    for j in range(px.shape[0]):
        px[j] = np.float32(j) + F32_HALF
    return px


@njit(cache=True, inline="always")
def _u8(v: np.float32) -> np.uint8:
    """``floor(clamp(v, 0, 1) * 255 + 0.5)`` as uint8 (NaN becomes 0)."""
    v = v if v > np.float32(0.0) else np.float32(0.0)
    v = v if v < np.float32(1.0) else np.float32(1.0)
    return np.uint8(np.int32(np.floor(v * _F32_255 + F32_HALF)))


@njit(cache=True, inline="always")
def columns(xd: float, l11: float, pad: float, width: int) -> tuple[int, int]:
    """Columns ``[b0, b1)`` of the footprint's bounding box, clipped to the image."""
    hx = np.sqrt(SPAN_CUT) * abs(l11) + pad
    b0 = max(np.int64(np.ceil(min(max(xd - hx - 0.5, -1.0), width + 1.0))), 0)
    b1 = min(np.int64(np.floor(min(max(xd + hx - 0.5, -1.0), width + 1.0))) + 1, width)
    return b0, b1


@njit(cache=True, inline="always")
def fill_block_rows(
    xd: float, yd: float, l11: float, l21: float, l22: float, pad: float, b0: int, b1: int, height: int,
    count: int, edges: np.ndarray, spans: np.ndarray,
) -> None:
    """``spans[:count]``: image rows ``[rs, re)`` where a Gaussian's ellipse meets each of its column blocks.

    Mean ``(xd, yd)``, factors and margin ``pad`` in pixels (float64); ``[b0,
    b1)`` its clipped box columns (:func:`columns`). Block ``q`` (counted from
    the first, ``b0 // 8``) covers the column centres ``[x_q, x_{q+1}]`` (block
    starts, clamped to the box). Over them the ellipse's top edge
    ``y + l21 z1 - |l22| sqrt(cut - z1^2)`` is convex in x, so its minimum is at
    an end or at the ellipse's topmost point; likewise the bottom. Rows are
    clipped to the image only. ``edges`` ``(3, count + 1)`` is scratch for the
    block ends' x, top and bottom; both loops vectorize.
    """
    root = np.sqrt(SPAN_CUT)
    ex = root * abs(l11)
    q0 = b0 // _LANES
    for e in range(count + 1):
        xe = min(max(np.float64((q0 + e) * _LANES) + 0.5, b0 + 0.5), b1 - 0.5)
        z1 = (min(max(xe, xd - ex), xd + ex) - xd) / l11
        h = abs(l22) * np.sqrt(max(SPAN_CUT - z1 * z1, 0.0))
        edges[0, e] = xe
        edges[1, e] = l21 * z1 - h
        edges[2, e] = l21 * z1 + h
    sy = np.sqrt(l21 * l21 + l22 * l22)
    xt = root * l11 * l21 / sy  # the topmost point is at x - xt, the bottom one at x + xt
    for q in range(count):
        xa = edges[0, q]
        xb = edges[0, q + 1]
        top = -root * sy if xa <= xd - xt <= xb else min(edges[1, q], edges[1, q + 1])
        bot = root * sy if xa <= xd + xt <= xb else max(edges[2, q], edges[2, q + 1])
        lo = min(max(yd + top - pad - 0.5, -1.0), height + 1.0)
        hi = min(max(yd + bot + pad - 0.5, -1.0), height + 1.0)
        spans[q, 0] = np.int64(np.ceil(lo))
        spans[q, 1] = np.int64(np.floor(hi)) + 1


@njit(cache=True, inline="always")
def _draw(
    two: bool, recurrence: bool, ftz: bool, acc: np.ndarray, aoff: int, block: int, z1s: np.ndarray, zoff: int,
    nrows: int, row0: int, y: np.float32, l21: np.float32, l22: np.float32, c0: np.float32, c1: np.float32,
    c2: np.float32,
) -> None:
    """One strip (``two``: two adjacent ones, ``block`` floats apart) by the kernel for its weights (``ftz``: the
    decoder's recurrence kernels, flush-to-zero set)."""
    if two and not recurrence:
        strip2_exact(acc, aoff, block, z1s, zoff, nrows, row0, y, l21, l22, c0, c1, c2)
    elif not recurrence:
        strip_exact(acc, aoff, block, z1s, zoff, nrows, row0, y, l21, l22, c0, c1, c2)
    elif ftz:  # a constant where inlined, so numba keeps only one pair of recurrence kernels (compile time)
        if two:
            strip2_recurrence_ftz(acc, aoff, block, z1s, zoff, nrows, row0, y, l21, l22, c0, c1, c2)
        else:
            strip_recurrence_ftz(acc, aoff, block, z1s, zoff, nrows, row0, y, l21, l22, c0, c1, c2)
    elif two:
        strip2_recurrence(acc, aoff, block, z1s, zoff, nrows, row0, y, l21, l22, c0, c1, c2)
    else:
        strip_recurrence(acc, aoff, block, z1s, zoff, nrows, row0, y, l21, l22, c0, c1, c2)


@njit(cache=True, inline="always")
def _draw_band(
    means: np.ndarray, chol: np.ndarray, colors: np.ndarray, pads: np.ndarray, rows: np.ndarray,
    order: np.ndarray, first: int, last: int, lo: int, hi: int, px: np.ndarray, width: int, height: int,
    ftz: bool,
) -> np.ndarray:
    """Rows ``[lo, hi)`` of the Gaussians ``order[first:last]``, drawn into a new band scratch.

    The scratch holds column blocks of ``(hi - lo + 1) * ROW_STRIDE`` floats each
    (rows, then channels, then 8 lanes; the row past ``hi`` takes the strips' overrun).
    ``ftz``: draw with the decoder's recurrence kernels, flush-to-zero set around the Gaussians (after every
    allocation, restored before returning) on this thread.
    """
    nblocks = (width + _LANES - 1) // _LANES
    block = (hi - lo + 1) * ROW_STRIDE  # floats per column block: rows, then channels, then 8 lanes
    acc = np.zeros(nblocks * block, dtype=np.float32)
    z1s = np.empty(nblocks * _LANES, dtype=np.float32)
    spans = np.empty((nblocks, 2), dtype=np.int64)
    edges = np.empty((3, nblocks + 1), dtype=np.float64)
    control = mxcsr() if ftz else np.int64(0)
    if ftz:
        swap_mxcsr(control | MXCSR_FTZ)
    for idx in range(first, last):
        k = order[idx]
        c0 = colors[k, 0]
        c1 = colors[k, 1]
        c2 = colors[k, 2]
        if c0 == 0 and c1 == 0 and c2 == 0:
            continue
        r0 = max(rows[k, 0], lo)
        r1 = min(rows[k, 1], hi)
        x = means[k, 0]
        y = means[k, 1]
        l11 = chol[k, 0]
        l21 = chol[k, 1]
        l22 = chol[k, 2]
        pad = pads[k]
        b0, b1 = columns(np.float64(x), np.float64(l11), pad, width)
        if b1 <= b0 or r1 <= r0:
            continue
        q0 = b0 // _LANES
        nq = (b1 + _LANES - 1) // _LANES - q0
        fill_block_rows(np.float64(x), np.float64(y), np.float64(l11), np.float64(l21), np.float64(l22), pad,
                         b0, b1, height, nq, edges, spans)
        column_terms(z1s, px[q0 * _LANES:], nq * _LANES, x, l11)
        recurrence = abs(l22) >= MIN_RECURRENCE_L22
        q = 0
        while q < nq:  # a block whose next one is also met is drawn with it, as two vectors over both rows
            rs, re = max(spans[q, 0], r0), min(spans[q, 1], r1)
            rs2, re2 = (max(spans[q + 1, 0], r0), min(spans[q + 1, 1], r1)) if q + 1 < nq else (r1, r0)
            if re > rs and re2 > rs2:
                rs, re = min(rs, rs2), max(re, re2)
                _draw(True, recurrence, ftz, acc, (q0 + q) * block + (rs - lo) * ROW_STRIDE, block, z1s, q * _LANES,
                      re - rs, rs, y, l21, l22, c0, c1, c2)
                q += 2
            elif re2 > rs2:
                _draw(False, recurrence, ftz, acc, (q0 + q + 1) * block + (rs2 - lo) * ROW_STRIDE, block, z1s,
                      (q + 1) * _LANES, re2 - rs2, rs2, y, l21, l22, c0, c1, c2)
                q += 2
            else:
                if re > rs:
                    _draw(False, recurrence, ftz, acc, (q0 + q) * block + (rs - lo) * ROW_STRIDE, block, z1s,
                          q * _LANES, re - rs, rs, y, l21, l22, c0, c1, c2)
                q += 1
    if ftz:
        swap_mxcsr(control)
    return acc


@njit(cache=True, inline="always")
def _render_band(
    means: np.ndarray, chol: np.ndarray, colors: np.ndarray, pads: np.ndarray, rows: np.ndarray,
    order: np.ndarray, first: int, last: int, lo: int, hi: int, px: np.ndarray, to_u8: bool,
    out_u8: np.ndarray, out_f32: np.ndarray, ftz: bool,
) -> None:
    """Render rows ``[lo, hi)`` from the Gaussians ``order[first:last]`` into ``out_u8`` (``to_u8``) or ``out_f32``
    (``ftz``: as :func:`_draw_band`)."""
    height, width = (out_u8.shape[0], out_u8.shape[1]) if to_u8 else (out_f32.shape[0], out_f32.shape[1])
    acc = _draw_band(means, chol, colors, pads, rows, order, first, last, lo, hi, px, width, height, ftz)
    block = (hi - lo + 1) * ROW_STRIDE
    full = width // _LANES if to_u8 else 0  # blocks packed 8 pixels at a time
    for i in range(lo, hi):
        a = (i - lo) * ROW_STRIDE
        for q in range(full):
            pack_rgb8(acc, q * block + a, out_u8, (i * width + q * _LANES) * 3)
        for j in range(full * _LANES, width):
            p = (j // _LANES) * block + a + j % _LANES
            if to_u8:
                out_u8[i, j, 0] = _u8(acc[p])
                out_u8[i, j, 1] = _u8(acc[p + CHANNEL_STRIDE])
                out_u8[i, j, 2] = _u8(acc[p + 2 * CHANNEL_STRIDE])
            else:
                out_f32[i, j, 0] = acc[p]
                out_f32[i, j, 1] = acc[p + CHANNEL_STRIDE]
                out_f32[i, j, 2] = acc[p + 2 * CHANNEL_STRIDE]


@njit(cache=True, parallel=True)
def _render_bands(
    means: np.ndarray, chol: np.ndarray, colors: np.ndarray, pads: np.ndarray, rows: np.ndarray,
    starts: np.ndarray, order: np.ndarray, bounds: np.ndarray, to_u8: bool,
    out_u8: np.ndarray, out_f32: np.ndarray,
) -> None:
    """Render every band into ``out_u8`` (``to_u8``) or ``out_f32``, both ``(H, W, 3)``; the other is unused."""
    width = out_u8.shape[1] if to_u8 else out_f32.shape[1]
    px = _centres((width + _LANES - 1) // _LANES * _LANES)
    for band in prange(starts.shape[0] - 1):
        _render_band(means, chol, colors, pads, rows, order, starts[band], starts[band + 1], bounds[band],
                     bounds[band + 1], px, to_u8, out_u8, out_f32, _DECODE_FTZ)


@njit(cache=True, parallel=True)
def _render_batch(
    means: np.ndarray, chol: np.ndarray, colors: np.ndarray, pads: np.ndarray, rows: np.ndarray,
    tasks: np.ndarray, order: np.ndarray, out: np.ndarray,
) -> None:
    """Float renders of a batch ``out (B, H, W, 3)``: ``tasks[t] = (image, lo, hi, first, last)``, one band each."""
    empty = np.empty((0, 0, 3), dtype=np.uint8)
    px = _centres((out.shape[2] + _LANES - 1) // _LANES * _LANES)
    for t in prange(tasks.shape[0]):
        b = tasks[t, 0]
        _render_band(means[b], chol[b], colors[b], pads[b], rows[b], order, tasks[t, 3], tasks[t, 4], tasks[t, 1],
                     tasks[t, 2], px, False, empty, out[b], False)


@njit(cache=True, parallel=True)
def _residual_batch(
    means: np.ndarray, chol: np.ndarray, colors: np.ndarray, pads: np.ndarray, rows: np.ndarray,
    tasks: np.ndarray, order: np.ndarray, width: int, height: int, targets: np.ndarray, out: np.ndarray,
    sse: np.ndarray,
) -> None:
    """``out (B, nblocks * H * ROW_STRIDE)``: render minus ``targets``, both in the column-block layout
    (zero beyond the width); ``sse[t]``: task ``t``'s sum of squared errors of the render clamped to [0, 1]."""
    px = _centres((width + _LANES - 1) // _LANES * _LANES)
    nblocks = (width + _LANES - 1) // _LANES
    tail = width - (nblocks - 1) * _LANES  # valid lanes of the last block
    for t in prange(tasks.shape[0]):
        b, lo, hi = tasks[t, 0], tasks[t, 1], tasks[t, 2]
        acc = _draw_band(means[b], chol[b], colors[b], pads[b], rows[b], order, tasks[t, 3], tasks[t, 4], lo, hi,
                         px, width, height, False)
        block = (hi - lo + 1) * ROW_STRIDE
        tgt = targets[b]
        res = out[b]
        total = 0.0
        for q in range(nblocks):
            if q + 1 == nblocks and tail < _LANES:  # lanes beyond the width: the strips' overrun, not pixels
                for i in range(lo, hi):
                    a = q * block + (i - lo) * ROW_STRIDE
                    for e in range(ROW_STRIDE):
                        if e % _LANES >= tail:
                            acc[a + e] = np.float32(0.0)
            for i in range(lo, hi):
                a = q * block + (i - lo) * ROW_STRIDE
                o = (q * height + i) * ROW_STRIDE
                for e in range(ROW_STRIDE):
                    v = acc[a + e]
                    res[o + e] = v - tgt[o + e]
                    c = min(max(v, np.float32(0.0)), np.float32(1.0)) - tgt[o + e]
                    total += np.float64(c * c)
        sse[t] = total


def residual_batch_prepared(means: np.ndarray, chol: np.ndarray, colors: np.ndarray, counts: np.ndarray,
                            pads: np.ndarray, rows: np.ndarray, width: int, height: int, targets: np.ndarray,
                            out: np.ndarray) -> np.ndarray:
    """Render minus target of a batch, in the column-block layout, and the clamped render's squared error.

    Arguments as :func:`render_batch_prepared`; ``targets`` and ``out`` ``(B, nblocks * H * ROW_STRIDE)``
    float32 in the layout of :func:`gscodec.raster.backward.to_blocks` (``out`` overwritten, zero beyond
    the width). Returns ``(B,)`` float64: per image, the sum over pixels and channels of
    ``(clamp(render, 0, 1) - target)^2``. The render's values are :func:`render_batch_prepared`'s, bit for bit.
    """
    nb = out.shape[0]
    tasks, order = _batch_tasks(means, chol, counts, pads, rows, width, height)
    sse = np.zeros(tasks.shape[0], dtype=np.float64)
    chunksize = numba.set_parallel_chunksize(1)
    try:
        _residual_batch(means, chol, colors, pads, rows, tasks, order, width, height, targets, out, sse)
    finally:
        numba.set_parallel_chunksize(chunksize)
    return np.bincount(tasks[:, 0], weights=sse, minlength=nb)


def _batch_tasks(means: np.ndarray, chol: np.ndarray, counts: np.ndarray, pads: np.ndarray, rows: np.ndarray,
                 width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Bands of every image of a batch, ``tasks[t] = (image, lo, hi, first, last)``, and their Gaussians ``order``."""
    nthreads = numba.get_num_threads()
    # with several images, fewer bands each still leave every thread busy
    nbands = _band_count(height, max(1, -(-nthreads // means.shape[0])))
    return _batch_tasks_all(means, chol, counts.astype(np.int64), pads, rows, width, height, nbands)


@njit(cache=True)
def _batch_tasks_all(means: np.ndarray, chol: np.ndarray, counts: np.ndarray, pads: np.ndarray, rows: np.ndarray,
                     width: int, height: int, nbands: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_batch_tasks` for ``nbands`` bands per image, in one compiled loop over the images."""
    nb = means.shape[0]
    all_bounds = []
    all_starts = []
    all_orders = []
    ntasks = 0
    norder = 0
    for b in range(nb):
        k = counts[b]
        bounds = _band_bounds(means[b, :k], chol[b, :k], pads[b, :k], rows[b, :k], width, height, nbands)
        starts, order = _bin_bands(rows[b, :k], bounds)
        all_bounds.append(bounds)
        all_starts.append(starts)
        all_orders.append(order)
        ntasks += bounds.shape[0] - 1
        norder += order.shape[0]
    tasks = np.empty((ntasks, 5), dtype=np.int64)
    orders = np.empty(norder, dtype=np.int64)
    t = 0
    offset = 0
    for b in range(nb):
        bounds, starts, order = all_bounds[b], all_starts[b], all_orders[b]
        for band in range(bounds.shape[0] - 1):
            tasks[t, 0] = b
            tasks[t, 1] = bounds[band]
            tasks[t, 2] = bounds[band + 1]
            tasks[t, 3] = offset + starts[band]
            tasks[t, 4] = offset + starts[band + 1]
            t += 1
        orders[offset:offset + order.shape[0]] = order
        offset += order.shape[0]
    return tasks, orders


def render_batch_prepared(means: np.ndarray, chol: np.ndarray, colors: np.ndarray, counts: np.ndarray,
                          pads: np.ndarray, rows: np.ndarray, out: np.ndarray) -> None:
    """Float renders of a batch into ``out`` ``(B, H, W, 3)`` (overwritten), all bands of all images in one pool.

    ``means (B, N, 2)``, ``chol``, ``colors`` float32; image ``b`` uses its
    first ``counts[b]`` Gaussians; ``pads``, ``rows`` as
    :func:`gscodec.raster.footprint.prepare_footprints` fills them. The training rasterizer's forward pass.
    """
    height, width = out.shape[1], out.shape[2]
    tasks, order = _batch_tasks(means, chol, counts, pads, rows, width, height)
    chunksize = numba.set_parallel_chunksize(1)
    try:
        _render_batch(means, chol, colors, pads, rows, tasks, order, out)
    finally:
        numba.set_parallel_chunksize(chunksize)


@njit(cache=True)
def box_pixels(means: np.ndarray, chol: np.ndarray, width: int, height: int) -> float:
    """Pixels inside the Gaussians' 3-sigma bounding boxes, clipped to the image, summed (float64).

    ``means`` ``(N, 2)`` and ``chol`` ``(N, 3)`` in pixels. An upper bound on the
    pixels a render evaluates: each clipped box side counts one pixel more for
    rounding; boxes that miss the image count 0.
    """
    total = 0.0
    for k in range(means.shape[0]):
        x = np.float64(means[k, 0])
        y = np.float64(means[k, 1])
        hx = 3.0 * abs(np.float64(chol[k, 0]))
        hy = 3.0 * np.sqrt(np.float64(chol[k, 1]) ** 2 + np.float64(chol[k, 2]) ** 2)
        if x + hx >= 0.0 and x - hx <= width and y + hy >= 0.0 and y - hy <= height:
            wx = min(max(min(x + hx, width) - max(x - hx, 0.0), 0.0), width) + 1.0
            wy = min(max(min(y + hy, height) - max(y - hy, 0.0), 0.0), height) + 1.0
            total += wx * wy
    return total


def _band_count(height: int, nthreads: int) -> int:
    """How many bands to cut an image ``height`` rows tall into: a multiple of ``nthreads``, about
    ``_MAX_BAND_ROWS`` rows each at most on average (:func:`_band_bounds` then balances their work).

    Measured at 768x512 with 10000 Gaussians and 224x224 with 900 on two
    threads, with bands of equal height: an odd number of bands leaves one
    thread idle at the end (176 rows, 3 bands: 4.10 ms; 128 rows, 4 bands:
    3.52 ms), and at 224 rows two bands of 112 took 0.30 ms against 0.37 ms
    for four of 64.
    """
    nthreads = max(int(nthreads), 1)
    return min(nthreads * -(-height // (nthreads * _MAX_BAND_ROWS)), max(height, 1))


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
    pads = np.empty((1, n), dtype=np.float64)
    rows = np.zeros((1, n, 2), dtype=np.int64)
    prepare_footprints(m[None], l[None], np.array([n], dtype=np.int64), height, pads, rows)
    render_prepared(m, l, c, pads[0], rows[0], out_u8 if uint8 else out_f32)
    return out


def render_prepared(means: np.ndarray, chol: np.ndarray, colors: np.ndarray, pads: np.ndarray, rows: np.ndarray,
                    out: np.ndarray) -> None:
    """Render into ``out`` (``(H, W, 3)`` uint8 or float32, C-contiguous, overwritten) from footprints already prepared.

    ``means (N, 2)``, ``chol (N, 3)``, ``colors (N, 3)`` float32 and ``pads (N,)``,
    ``rows (N, 2)`` as :func:`gscodec.raster.footprint.prepare_footprints` fills them for an image
    ``H`` rows tall. (Training renders whole batches: :func:`render_batch_prepared`.)
    """
    height, width = out.shape[0], out.shape[1]
    uint8 = out.dtype == np.uint8
    empty_u8 = np.empty((0, 0, 3), dtype=np.uint8)
    empty_f32 = np.empty((0, 0, 3), dtype=np.float32)
    nthreads = numba.get_num_threads()
    bounds = _band_bounds(means, chol, pads, rows, width, height, _band_count(height, nthreads))
    starts, order = _bin_bands(rows, bounds)
    # bands one at a time to whichever thread is free: on a shared machine a
    # descheduled thread then delays one band, not a fixed share of them
    chunksize = numba.set_parallel_chunksize(1)
    try:
        _render_bands(means, chol, colors, pads, rows, starts, order, bounds, uint8,
                      out if uint8 else empty_u8, empty_f32 if uint8 else out)
    finally:
        numba.set_parallel_chunksize(chunksize)


key_caches_on_sources(globals())

__all__ = ["box_pixels", "column_terms", "columns", "fill_block_rows", "render_batch_prepared", "render_numpy",
           "render_prepared", "residual_batch_prepared"]
