"""Payload bodies: Gaussian parameters to raw byte planes and back, for each storage mode.

Float modes (FLOAT32, FLOAT16): eight fields ``x, y, l11, l21, l22, r, g, b``,
field after field, each split into byte planes (all first bytes, then all
second bytes, ...), little-endian.

Quantized mode: a 57-byte quantization table, then the tokens
(:mod:`.tokens`) of the pixel-level Morton code deltas and of the zigzag-coded
field codes in zstd frames, then their packed extra bits with the sub-pixel
position fractions (see :mod:`gscodec.quantize`).
"""

from __future__ import annotations

import struct

import numpy as np
import torch
from numba import njit

from ..gaussians import GaussianImage, InvalidGaussiansError
from ..limits import MAX_POSITION_FRACTION_BITS
from ..quantize import (COLOR_RGB, COLOR_YCOCG, FIELD_NAMES, QuantizedGaussians, dequantize,
                        morton_encode)
from .errors import HeaderError, ParameterError, TruncatedError
from .header import Mode
from .streams import frames_end, pack_frames, unpack_frames
from .tokens import CONFIGS, VALUE_BITS, choose_config, decode_streams, pack_bits, tokenize

_FLOAT_DTYPES = {Mode.FLOAT32: np.dtype("<f4"), Mode.FLOAT16: np.dtype("<f2")}
_FIELD_ENTRY = struct.Struct("<ff")
QUANT_TABLE_SIZE = 2 + _FIELD_ENTRY.size * len(FIELD_NAMES) + 1 + len(FIELD_NAMES)


def zigzag(q: np.ndarray) -> np.ndarray:
    """Signed int64 to unsigned: 0, -1, 1, -2, ... -> 0, 1, 2, 3, ..."""
    q = q.astype(np.int64)
    return ((q << 1) ^ (q >> 63)).astype(np.uint64)


def _best_frames(chunks: list[bytes]) -> bytes:
    """Frames for ``chunks``: greedily merge neighbouring frames while that makes the payload smaller.

    Each zstd frame carries its own entropy tables: separate frames fit each
    stream's statistics, merged frames save the tables; the best cut depends on
    the data, and decoders accept any.
    """
    groups = [[c] for c in chunks]
    best = pack_frames([b"".join(g) for g in groups])
    while len(groups) > 1:
        candidates = []
        for i in range(len(groups) - 1):
            merged = groups[:i] + [groups[i] + groups[i + 1]] + groups[i + 2 :]
            candidates.append((pack_frames([b"".join(g) for g in merged]), merged))
        packed, merged = min(candidates, key=lambda c: len(c[0]))
        if len(packed) >= len(best):
            break
        best, groups = packed, merged
    return best


def encode_float(g: GaussianImage, mode: Mode) -> bytes:
    """Payload of ``g`` in a float mode, Gaussians in their given order."""
    dtype = _FLOAT_DTYPES[mode]
    with np.errstate(over="ignore"):
        fields = np.ascontiguousarray(torch.cat([g.means, g.chol, g.colors], dim=1).numpy().T.astype(dtype))
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
    t = torch.from_numpy(np.ascontiguousarray(fields.T))
    return _validated(width, height, t[:, 0:2], t[:, 2:5], t[:, 5:8])


def encode_quantized(qg: QuantizedGaussians) -> bytes:
    """Payload of quantized Gaussians (already in Morton order)."""
    p = qg.position_bits
    if np.any(np.diff(morton_encode(qg.ix, qg.iy).astype(np.int64)) < 0):
        raise ParameterError("quantized Gaussians are not in Morton order")
    pixel = morton_encode(qg.ix >> p, qg.iy >> p)
    deltas = np.diff(pixel, prepend=np.uint64(0)) if pixel.size else pixel
    mask = (1 << p) - 1
    fraction = morton_encode(qg.ix & mask, qg.iy & mask)
    streams = [deltas] + [zigzag(qg.codes[f]) for f in range(len(FIELD_NAMES))]
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


def parse_quantized(data: memoryview, width: int, height: int, count: int) -> QuantizedGaussians:
    """Parse a quantized payload to codes, checking the table and the position grid."""
    if len(data) < QUANT_TABLE_SIZE:
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
    if last >= 1 << 40:
        raise ParameterError("a position lies outside the image")
    grid = 2**p
    if count and (max_ix > width * grid or max_iy > height * grid):
        raise ParameterError("a position lies outside the image")
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
def _positions_and_codes(deltas: np.ndarray, fraction: np.ndarray, values: np.ndarray, p: int):  # pragma: no cover
    """Grid coordinates and signed codes from the decoded streams (spec 7.3, 7.4), in one pass.

    Returns int64 ``ix, iy (N,)``, int64 codes ``(F, N)`` (zigzag undone), the
    last running pixel sum and the largest ``ix`` and ``iy`` (0 when empty). The
    sum of uint64 deltas below ``2**32`` each cannot wrap for ``N <= 2**22``.
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
    codes = np.empty(values.shape, dtype=np.int64)
    for f in range(values.shape[0]):
        for i in range(n):
            u = values[f, i]
            codes[f, i] = np.int64(u >> np.uint64(1)) ^ -np.int64(u & np.uint64(1))
    return ix, iy, codes, pixel, max_ix, max_iy


def decode_quantized(data: memoryview, width: int, height: int, count: int) -> GaussianImage:
    """Inverse of :func:`encode_quantized`, dequantized."""
    qg = parse_quantized(data, width, height, count)
    with np.errstate(over="ignore", invalid="ignore"):
        try:
            return dequantize(qg)
        except InvalidGaussiansError as exc:
            raise ParameterError(f"decoded parameters are invalid: {exc}") from None


def _validated(width: int, height: int, means, chol, colors) -> GaussianImage:
    try:
        return GaussianImage(width, height, means, chol, colors)
    except InvalidGaussiansError as exc:
        raise ParameterError(f"decoded parameters are invalid: {exc}") from None
