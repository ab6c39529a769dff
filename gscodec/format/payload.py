"""Payload bodies: Gaussian parameters to raw byte planes and back, for each storage mode.

Float modes (FLOAT32, FLOAT16): eight fields ``x, y, l11, l21, l22, r, g, b``,
field after field, each split into byte planes (all first bytes, then all
second bytes, ...), little-endian.

Quantized mode, version 1: a 57-byte quantization table, then the tokens
(:mod:`.tokens`) of the pixel-level Morton code deltas and of the zigzag-coded
field codes in zstd frames, then their packed extra bits with the sub-pixel
position fractions (see :mod:`gscodec.quantize`). Version 2: a 55-byte table,
then the same symbols through the adaptive range coder of :mod:`.rangecoder`
and its raw bits.
"""

from __future__ import annotations

import struct

import numpy as np
from numba import njit

from ..gaussians import GaussianImage, InvalidGaussiansError
from ..limits import MAX_POSITION_FRACTION_BITS
from ..quantize import COLOR_RGB, COLOR_YCOCG, FIELD_NAMES, QuantizedGaussians, morton_encode
from .errors import HeaderError, ParameterError, StreamError, TruncatedError
from .header import Mode
from .rangecoder import choose_delta_shift, decode_symbols
from .streams import frame_compressor, frames_end, join_frames, unpack_frames
from .tokens import CONFIGS, VALUE_BITS, choose_config, decode_streams, pack_bits, tokenize

_FLOAT_DTYPES = {Mode.FLOAT32: np.dtype("<f4"), Mode.FLOAT16: np.dtype("<f2")}
_FIELD_ENTRY = struct.Struct("<ff")
QUANT_TABLE_SIZE = 2 + _FIELD_ENTRY.size * len(FIELD_NAMES) + 1 + len(FIELD_NAMES)
_V2_TABLE = 2 + _FIELD_ENTRY.size * len(FIELD_NAMES)
V2_TABLE_SIZE = _V2_TABLE + 1 + 4
"""Version 2's table: position bits, colour transform, six offsets and steps, delta shift, coded length."""
MAX_DELTA_SHIFT = 31
_CODE_LIMIT = 1 << 32


def zigzag(q: np.ndarray) -> np.ndarray:
    """Signed int64 to unsigned: 0, -1, 1, -2, ... -> 0, 1, 2, 3, ..."""
    q = q.astype(np.int64)
    return ((q << 1) ^ (q >> 63)).astype(np.uint64)


def _best_frames(chunks: list[bytes]) -> bytes:
    """Frames for ``chunks``: greedily merge neighbouring frames while that makes the payload smaller.

    Each zstd frame carries its own entropy tables: separate frames fit each
    stream's statistics, merged frames save the tables; the best cut depends on
    the data, and decoders accept any. Frames are compressed independently, so
    each run of chunks is compressed once (``frames[(i, j)]``: chunks ``i..j-1``).
    """
    compressor = frame_compressor()
    frames: dict[tuple[int, int], bytes] = {}

    def frame(run: tuple[int, int]) -> bytes:
        if run not in frames:
            frames[run] = compressor.compress(b"".join(chunks[run[0]:run[1]]))
        return frames[run]

    def size(runs: list[tuple[int, int]]) -> int:  # the packed payload's length
        return 1 + 4 * len(runs) + sum(len(frame(r)) for r in runs)

    runs = [(i, i + 1) for i in range(len(chunks))]
    best = size(runs)
    while len(runs) > 1:
        candidates = [runs[:i] + [(runs[i][0], runs[i + 1][1])] + runs[i + 2:] for i in range(len(runs) - 1)]
        merged = min(candidates, key=size)
        if size(merged) >= best:
            break
        best, runs = size(merged), merged
    return join_frames([frame(r) for r in runs])


def encode_float(g: GaussianImage, mode: Mode) -> bytes:
    """Payload of ``g`` in a float mode, Gaussians in their given order."""
    dtype = _FLOAT_DTYPES[mode]
    with np.errstate(over="ignore"):
        fields = np.ascontiguousarray(g.params().T.astype(dtype))
    if mode == Mode.FLOAT16 and not np.isfinite(fields).all():
        raise ParameterError("a parameter is too large for float16 storage; use FLOAT32 or QUANTIZED")
    chunks = [np.ascontiguousarray(f.view(np.uint8).reshape(-1, dtype.itemsize).T).tobytes() for f in fields]
    return _best_frames(chunks)


def decode_float(data: memoryview, mode: Mode, width: int, height: int, count: int) -> GaussianImage:
    """Inverse of :func:`encode_float`."""
    dtype = _FLOAT_DTYPES[mode]
    raw = unpack_frames(data, 8 * count * dtype.itemsize)
    planes = np.frombuffer(raw, dtype=np.uint8).reshape(8, dtype.itemsize, count)
    fields = np.ascontiguousarray(planes.transpose(0, 2, 1)).view(dtype).reshape(8, count).astype(np.float32)
    t = np.ascontiguousarray(fields.T)
    return _validated(width, height, t[:, 0:2], t[:, 2:5], t[:, 5:8])


def encode_quantized(qg: QuantizedGaussians) -> bytes:
    """Version-1 payload of quantized Gaussians (already in Morton order)."""
    p = qg.position_bits
    deltas, fraction, codes = _symbols(qg)
    streams = [deltas] + [zigzag(codes[f]) for f in range(len(FIELD_NAMES))]
    if int(max((s.max() for s in streams if s.size), default=0)) >> VALUE_BITS:
        raise ParameterError(f"a field code needs more than {VALUE_BITS} bits; use fewer bits")
    configs = [choose_config(s) for s in streams]
    coded = [tokenize(s, c) for s, c in zip(streams, configs)]
    extra_values = [coded[0][1], fraction] + [c[1] for c in coded[1:]]
    extra_bits = [coded[0][2], np.full(qg.count, 2 * p, dtype=np.int64)] + [c[2] for c in coded[1:]]
    table = bytearray(struct.pack("<BB", p, qg.color_transform))
    for f in range(len(FIELD_NAMES)):
        table += _FIELD_ENTRY.pack(float(qg.offsets[f]), float(qg.steps[f]))
    table += bytes(configs)
    bits = pack_bits(np.concatenate(extra_values), np.concatenate(extra_bits))
    return bytes(table) + _best_frames([c[0].tobytes() for c in coded]) + bits


def _parse_table(data: memoryview, table_size: int) -> tuple[int, int, list[float], list[float]]:
    """Position bits, colour transform, offsets and steps of a quantized payload's table (checks Q1-Q4)."""
    if len(data) < table_size:
        raise TruncatedError("payload ends inside its quantization table")
    p, color_transform = struct.unpack_from("<BB", data)
    if p > MAX_POSITION_FRACTION_BITS:
        raise HeaderError(f"position_bits {p} exceeds {MAX_POSITION_FRACTION_BITS}")
    if color_transform not in (COLOR_RGB, COLOR_YCOCG):
        raise HeaderError(f"unknown colour transform {color_transform}")
    offsets, steps = [], []
    for f in range(len(FIELD_NAMES)):
        offset, step = _FIELD_ENTRY.unpack_from(data, 2 + f * _FIELD_ENTRY.size)
        if not (np.isfinite(offset) and np.isfinite(step) and step > 0):
            raise HeaderError(f"field {FIELD_NAMES[f]} has offset {offset} and step {step}; need finite, step > 0")
        offsets.append(offset)
        steps.append(step)
    return p, color_transform, offsets, steps


def parse_quantized(data: memoryview, width: int, height: int, count: int) -> QuantizedGaussians:
    """Parse a version-1 quantized payload to codes, checking the table and the position grid."""
    p, color_transform, offsets, steps = _parse_table(data, QUANT_TABLE_SIZE)
    streams = len(FIELD_NAMES) + 1
    configs = bytes(data[QUANT_TABLE_SIZE - streams : QUANT_TABLE_SIZE])
    for j, config in enumerate(configs):
        if config not in CONFIGS:
            raise HeaderError(f"token stream {j} has an invalid config byte {config:#04x}")
    body = data[QUANT_TABLE_SIZE:]
    end = frames_end(body)
    tokens = np.frombuffer(unpack_frames(body[:end], count * streams), dtype=np.uint8).reshape(streams, count)
    deltas, fraction, values = decode_streams(tokens, configs, bytes(body[end:]), 2 * p)
    ix, iy, codes, last, max_ix, max_iy = _positions_and_codes(deltas, fraction, values, p)
    _check_positions(last, max_ix, max_iy, width, height, p, count)
    return QuantizedGaussians(width, height, p, color_transform, ix, iy,
                              np.array(offsets, dtype=np.float32), np.array(steps, dtype=np.float32), codes)


def _check_positions(last: int, max_ix: int, max_iy: int, width: int, height: int, p: int, count: int) -> None:
    if last >= 1 << 40:
        raise ParameterError("a position lies outside the image")
    grid = 2**p
    if count and (max_ix > width * grid or max_iy > height * grid):
        raise ParameterError("a position lies outside the image")


def _symbols(qg: QuantizedGaussians) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pixel deltas and position fractions (uint64 ``(N,)``) of Gaussians in Morton order, and their codes."""
    p = qg.position_bits
    if np.any(np.diff(morton_encode(qg.ix, qg.iy).astype(np.int64)) < 0):
        raise ParameterError("quantized Gaussians are not in Morton order")
    pixel = morton_encode(qg.ix >> p, qg.iy >> p)
    deltas = np.diff(pixel, prepend=np.uint64(0)) if pixel.size else pixel
    mask = (1 << p) - 1
    return deltas, morton_encode(qg.ix & mask, qg.iy & mask), qg.codes


def encode_quantized_v2(qg: QuantizedGaussians) -> bytes:
    """Version-2 payload of quantized Gaussians (already in Morton order): table, coded bytes, raw bits."""
    deltas, fraction, codes = _symbols(qg)
    if deltas.size and int(deltas.max()) >= _CODE_LIMIT:
        raise ParameterError("a pixel delta needs more than 32 bits")
    if codes.size and int(np.abs(codes).max()) >= _CODE_LIMIT:
        raise ParameterError("a field code needs more than 32 bits; use fewer bits")
    shift, coded, raw = choose_delta_shift(deltas, fraction, codes, 2 * qg.position_bits)
    table = bytearray(struct.pack("<BB", qg.position_bits, qg.color_transform))
    for f in range(len(FIELD_NAMES)):
        table += _FIELD_ENTRY.pack(float(qg.offsets[f]), float(qg.steps[f]))
    table += struct.pack("<BI", shift, len(coded))
    return bytes(table) + coded + raw


def parse_quantized_v2(data: memoryview, width: int, height: int, count: int) -> QuantizedGaussians:
    """Parse a version-2 quantized payload to codes (spec 7.6, checks in the order of 11.1)."""
    p, color_transform, offsets, steps = _parse_table(data, V2_TABLE_SIZE)
    shift, coded_length = struct.unpack_from("<BI", data, _V2_TABLE)
    if shift > MAX_DELTA_SHIFT:
        raise HeaderError(f"delta shift {shift} exceeds {MAX_DELTA_SHIFT}")
    if coded_length > len(data) - V2_TABLE_SIZE:
        raise TruncatedError(f"coded length {coded_length} runs past the payload")
    coded = bytes(data[V2_TABLE_SIZE : V2_TABLE_SIZE + coded_length])
    if coded and coded[-1] == 0:
        raise StreamError("the coded bytes end with a zero byte")
    raw = bytes(data[V2_TABLE_SIZE + coded_length :])
    deltas, fraction, codes, used, raw_bits = decode_symbols(coded, raw, count, 2 * p, shift)
    need = (raw_bits + 7) // 8
    if len(raw) < need:
        raise TruncatedError(f"the raw bits run past the end of the payload ({len(raw)} bytes)")
    if used < coded_length:
        raise StreamError(f"{coded_length - used} coded bytes are never read")
    if len(raw) > need:
        raise StreamError(f"{len(raw) - need} bytes follow the raw bits")
    if raw_bits % 8 and raw[-1] >> (raw_bits % 8):
        raise StreamError("the padding bits after the raw bits are not zero")
    if count and int(deltas.max()) >= _CODE_LIMIT:
        raise ParameterError("a pixel delta is 2^32 or more")
    ix, iy, last, max_ix, max_iy = _positions(deltas, fraction, p)
    _check_positions(last, max_ix, max_iy, width, height, p, count)
    return QuantizedGaussians(width, height, p, color_transform, ix, iy,
                              np.array(offsets, dtype=np.float32), np.array(steps, dtype=np.float32), codes)


@njit(cache=True)
def _compact(v: np.uint64) -> np.int64:  # pragma: no cover - compiled
    """The even bits of ``v`` packed together (one coordinate of a Morton code)."""
    v &= np.uint64(0x5555555555555555)
    v = (v | (v >> np.uint64(1))) & np.uint64(0x3333333333333333)
    v = (v | (v >> np.uint64(2))) & np.uint64(0x0F0F0F0F0F0F0F0F)
    v = (v | (v >> np.uint64(4))) & np.uint64(0x00FF00FF00FF00FF)
    v = (v | (v >> np.uint64(8))) & np.uint64(0x0000FFFF0000FFFF)
    v = (v | (v >> np.uint64(16))) & np.uint64(0x00000000FFFFFFFF)
    return np.int64(v)


@njit(cache=True)
def _positions(deltas: np.ndarray, fraction: np.ndarray, p: int):  # pragma: no cover - compiled
    """Grid coordinates from pixel deltas and fractions (spec 7.3).

    Returns int64 ``ix, iy (N,)``, the last running pixel sum and the largest
    ``ix`` and ``iy`` (0 when empty). The sum of uint64 deltas below ``2**32``
    each cannot wrap for ``N <= 2**22``.
    """
    n = deltas.shape[0]
    ix = np.empty(n, dtype=np.int64)
    iy = np.empty(n, dtype=np.int64)
    pixel = np.uint64(0)
    max_ix = 0
    max_iy = 0
    shift = np.uint64(2 * p)
    for i in range(n):
        pixel += deltas[i]
        # positions of a sum of 2**40 or more are garbage, but the caller raises before using them
        m = (pixel << shift) | fraction[i]
        ix[i] = _compact(m)
        iy[i] = _compact(m >> np.uint64(1))
        max_ix = max(max_ix, ix[i])
        max_iy = max(max_iy, iy[i])
    return ix, iy, pixel, max_ix, max_iy


@njit(cache=True)
def _positions_and_codes(deltas: np.ndarray, fraction: np.ndarray, values: np.ndarray, p: int):  # pragma: no cover
    """:func:`_positions` and the signed codes ``(F, N)`` int64 of the zigzag values ``(F, N)`` (spec 7.4)."""
    ix, iy, pixel, max_ix, max_iy = _positions(deltas, fraction, p)
    n = deltas.shape[0]
    codes = np.empty(values.shape, dtype=np.int64)
    for f in range(values.shape[0]):
        for i in range(n):
            u = values[f, i]
            codes[f, i] = np.int64(u >> np.uint64(1)) ^ -np.int64(u & np.uint64(1))
    return ix, iy, codes, pixel, max_ix, max_iy


@njit(cache=True)
def _dequantize(codes: np.ndarray, offsets: np.ndarray, steps: np.ndarray, ix: np.ndarray, iy: np.ndarray,
                position_bits: int, ycocg: bool):  # pragma: no cover - compiled
    """:func:`gscodec.quantize.dequantize`'s arithmetic in one pass: float32 ``means (N, 2)``, ``chol (N, 3)``,
    ``colors (N, 3)`` from the codes ``(6, N)``, the float32 offsets and steps and the grid coordinates.

    The same float64 operations in the same order (no fused multiply-adds), then rounded to float32, so
    the values are bit for bit :func:`~gscodec.quantize.dequantize`'s (``tests/test_format_v2.py``).
    """
    n = codes.shape[1]
    means = np.empty((n, 2), dtype=np.float32)
    chol = np.empty((n, 3), dtype=np.float32)
    colors = np.empty((n, 3), dtype=np.float32)
    o = offsets.astype(np.float64)
    s = steps.astype(np.float64)
    scale = 2.0 ** -position_bits
    for i in range(n):
        f0 = o[0] + s[0] * np.float64(codes[0, i])
        f1 = o[1] + s[1] * np.float64(codes[1, i])
        f2 = o[2] + s[2] * np.float64(codes[2, i])
        f3 = o[3] + s[3] * np.float64(codes[3, i])
        f4 = o[4] + s[4] * np.float64(codes[4, i])
        f5 = o[5] + s[5] * np.float64(codes[5, i])
        l22 = np.exp2(f1)
        chol[i, 0] = np.float32(np.exp2(f0))
        chol[i, 1] = np.float32(f2 * l22)
        chol[i, 2] = np.float32(l22)
        if ycocg:
            colors[i, 0] = np.float32(f3 + f4 - f5)
            colors[i, 1] = np.float32(f3 + f5)
            colors[i, 2] = np.float32(f3 - f4 - f5)
        else:
            colors[i, 0] = np.float32(f3)
            colors[i, 1] = np.float32(f4)
            colors[i, 2] = np.float32(f5)
        means[i, 0] = np.float32(ix[i] * scale)
        means[i, 1] = np.float32(iy[i] * scale)
    return means, chol, colors


def dequantized(qg: QuantizedGaussians) -> GaussianImage:
    """``dequantize(qg)`` by one numba pass (the decoder's; about a tenth of the numpy one's time at 10,000
    Gaussians); raises :class:`ParameterError` where the values are invalid (e.g. an overflowing scale)."""
    means, chol, colors = _dequantize(qg.codes, qg.offsets, qg.steps, qg.ix, qg.iy, qg.position_bits,
                                      qg.color_transform == COLOR_YCOCG)
    return _validated(qg.width, qg.height, means, chol, colors)


def decode_quantized(data: memoryview, width: int, height: int, count: int, version: int = 1) -> GaussianImage:
    """Inverse of :func:`encode_quantized` (version 1) or :func:`encode_quantized_v2` (version 2), dequantized."""
    parse = parse_quantized_v2 if version == 2 else parse_quantized
    return dequantized(parse(data, width, height, count))


def _validated(width: int, height: int, means, chol, colors) -> GaussianImage:
    try:
        return GaussianImage(width, height, means, chol, colors)
    except InvalidGaussiansError as exc:
        raise ParameterError(f"decoded parameters are invalid: {exc}") from None
