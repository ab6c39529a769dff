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

from ..gaussians import GaussianImage, InvalidGaussiansError
from ..limits import MAX_POSITION_FRACTION_BITS
from ..quantize import (COLOR_RGB, COLOR_YCOCG, FIELD_NAMES, QuantizedGaussians, dequantize, morton_decode,
                        morton_encode)
from .errors import HeaderError, ParameterError, TruncatedError
from .header import Mode
from .streams import frames_end, pack_frames, unpack_frames
from .tokens import CONFIGS, VALUE_BITS, choose_config, detokenize, extra_bit_counts, pack_bits, tokenize, unpack_bits

_FLOAT_DTYPES = {Mode.FLOAT32: np.dtype("<f4"), Mode.FLOAT16: np.dtype("<f2")}
_FIELD_ENTRY = struct.Struct("<ff")
QUANT_TABLE_SIZE = 2 + _FIELD_ENTRY.size * len(FIELD_NAMES) + 1 + len(FIELD_NAMES)


def zigzag(q: np.ndarray) -> np.ndarray:
    """Signed int64 to unsigned: 0, -1, 1, -2, ... -> 0, 1, 2, 3, ..."""
    q = q.astype(np.int64)
    return ((q << 1) ^ (q >> 63)).astype(np.uint64)


def unzigzag(u: np.ndarray) -> np.ndarray:
    """Inverse of :func:`zigzag`."""
    u = u.astype(np.uint64)
    return ((u >> np.uint64(1)).astype(np.int64)) ^ -((u & np.uint64(1)).astype(np.int64))


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
    nbits = np.stack([extra_bit_counts(tokens[i], c) for i, c in enumerate(configs)])
    layout = np.concatenate([nbits[:1], np.full((1, count), 2 * p, dtype=np.int64), nbits[1:]])
    extra = unpack_bits(bytes(body[end:]), layout.reshape(-1)).reshape(streams + 1, count)
    pixel = np.cumsum(detokenize(tokens[0], extra[0], configs[0]), dtype=np.uint64)
    if count and int(pixel[-1]) >= 1 << 40:
        raise ParameterError("a position lies outside the image")
    ix, iy = morton_decode((pixel << np.uint64(2 * p)) | extra[1])
    grid = 2**p
    if count and (int(ix.max()) > width * grid or int(iy.max()) > height * grid):
        raise ParameterError("a position lies outside the image")
    codes = np.stack([unzigzag(detokenize(tokens[1 + f], extra[2 + f], configs[1 + f]))
                      for f in range(len(FIELD_NAMES))])
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
