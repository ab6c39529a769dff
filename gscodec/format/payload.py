"""Payload bodies: Gaussian parameters to raw byte planes and back, for each storage mode.

Float modes (FLOAT32, FLOAT16): eight fields ``x, y, l11, l21, l22, r, g, b``,
field after field, each split into byte planes (all first bytes, then all
second bytes, ...), little-endian.

Quantized mode: a 57-byte quantization table, then byte planes of the
pixel-level Morton code deltas, of the sub-pixel position fractions, and of the
zigzag-coded field codes (see :mod:`gscodec.quantize`).
"""

from __future__ import annotations

import struct

import numpy as np
import torch

from ..gaussians import GaussianImage, InvalidGaussiansError
from ..limits import MAX_POSITION_FRACTION_BITS
from ..quantize import (COLOR_RGB, COLOR_YCOCG, FIELD_NAMES, QuantizedGaussians, dequantize, morton_decode,
                        morton_encode)
from .errors import HeaderError, ParameterError, TruncatedError
from .header import Mode
from .streams import pack_frames, unpack_frames

_FLOAT_DTYPES = {Mode.FLOAT32: np.dtype("<f4"), Mode.FLOAT16: np.dtype("<f2")}
_FIELD_ENTRY = struct.Struct("<ffB")
QUANT_TABLE_SIZE = 3 + _FIELD_ENTRY.size * len(FIELD_NAMES)
MAX_POSITION_BYTES = 5


def to_planes(values: np.ndarray, width: int) -> bytes:
    """Byte planes of non-negative integers ``values`` ``(N,)``: ``width`` planes of N bytes, low byte first."""
    le = values.astype("<u8").view(np.uint8).reshape(-1, 8)[:, :width]
    return np.ascontiguousarray(le.T).tobytes()


def from_planes(raw: bytes, n: int, width: int) -> np.ndarray:
    """Inverse of :func:`to_planes`: uint64 ``(n,)``."""
    planes = np.frombuffer(raw, dtype=np.uint8, count=n * width).reshape(width, n)
    out = np.zeros((n, 8), dtype=np.uint8)
    out[:, :width] = planes.T
    return out.view("<u8").reshape(n)


def zigzag(q: np.ndarray) -> np.ndarray:
    """Signed int64 to unsigned: 0, -1, 1, -2, ... -> 0, 1, 2, 3, ..."""
    q = q.astype(np.int64)
    return ((q << 1) ^ (q >> 63)).astype(np.uint64)


def unzigzag(u: np.ndarray) -> np.ndarray:
    """Inverse of :func:`zigzag`."""
    u = u.astype(np.uint64)
    return ((u >> np.uint64(1)).astype(np.int64)) ^ -((u & np.uint64(1)).astype(np.int64))


def _bytes_needed(values: np.ndarray) -> int:
    top = int(values.max()) if values.size else 0
    return max(1, (top.bit_length() + 7) // 8)


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
    pixel = morton_encode(qg.ix >> p, qg.iy >> p)
    deltas = np.diff(pixel, prepend=np.uint64(0)) if pixel.size else pixel
    if np.any(np.diff(morton_encode(qg.ix, qg.iy).astype(np.int64)) < 0):
        raise ParameterError("quantized Gaussians are not in Morton order")
    pos_bytes = _bytes_needed(deltas)
    chunks = [to_planes(deltas, pos_bytes)]
    if p:
        mask = (1 << p) - 1
        chunks.append(to_planes(morton_encode(qg.ix & mask, qg.iy & mask), 1))
    table = bytearray(struct.pack("<BBB", p, qg.color_transform, pos_bytes))
    for f in range(len(FIELD_NAMES)):
        codes = zigzag(qg.codes[f])
        width = _bytes_needed(codes)
        if width > 2:
            raise ParameterError(f"field {FIELD_NAMES[f]} needs codes wider than 16 bits; use fewer bits")
        table += _FIELD_ENTRY.pack(float(qg.offsets[f]), float(qg.steps[f]), width)
        chunks.append(to_planes(codes, width))
    return bytes(table) + _best_frames(chunks)


def parse_quantized(data: memoryview, width: int, height: int, count: int) -> QuantizedGaussians:
    """Parse a quantized payload to codes, checking the table and the position grid."""
    if len(data) < QUANT_TABLE_SIZE:
        raise TruncatedError("payload ends inside its quantization table")
    p, color_transform, pos_bytes = struct.unpack_from("<BBB", data)
    if p > MAX_POSITION_FRACTION_BITS:
        raise HeaderError(f"position_bits {p} exceeds {MAX_POSITION_FRACTION_BITS}")
    if color_transform not in (COLOR_RGB, COLOR_YCOCG):
        raise HeaderError(f"unknown colour transform {color_transform}")
    if not 1 <= pos_bytes <= MAX_POSITION_BYTES:
        raise HeaderError(f"position code width {pos_bytes} is outside 1..{MAX_POSITION_BYTES}")
    offsets, steps, widths = [], [], []
    for f in range(len(FIELD_NAMES)):
        offset, step, code_width = _FIELD_ENTRY.unpack_from(data, 3 + f * _FIELD_ENTRY.size)
        if not (np.isfinite(offset) and np.isfinite(step) and step > 0):
            raise HeaderError(f"field {FIELD_NAMES[f]} has offset {offset} and step {step}; need finite, step > 0")
        if code_width not in (1, 2):
            raise HeaderError(f"field {FIELD_NAMES[f]} code width {code_width} is not 1 or 2")
        offsets.append(offset)
        steps.append(step)
        widths.append(code_width)
    fraction_bytes = 1 if p else 0
    raw = unpack_frames(data[QUANT_TABLE_SIZE:], count * (pos_bytes + fraction_bytes + sum(widths)))
    pixel = np.cumsum(from_planes(raw[: count * pos_bytes], count, pos_bytes), dtype=np.uint64)
    pos = count * pos_bytes
    if count and int(pixel[-1]) >= 1 << 40:
        raise ParameterError("a position lies outside the image")
    morton = pixel << np.uint64(2 * p)
    if p:
        fraction = from_planes(raw[pos : pos + count], count, 1)
        pos += count
        if count and int(fraction.max()) >= 1 << (2 * p):
            raise ParameterError(f"a position fraction exceeds {2 * p} bits")
        morton |= fraction
    ix, iy = morton_decode(morton)
    grid = 2**p
    if count and (int(ix.max()) > width * grid or int(iy.max()) > height * grid):
        raise ParameterError("a position lies outside the image")
    codes = np.zeros((len(FIELD_NAMES), count), dtype=np.int64)
    for f, code_width in enumerate(widths):
        codes[f] = unzigzag(from_planes(raw[pos : pos + count * code_width], count, code_width))
        pos += count * code_width
    return QuantizedGaussians(width, height, p, color_transform, ix, iy,
                              np.array(offsets, dtype=np.float32), np.array(steps, dtype=np.float32), codes)


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
