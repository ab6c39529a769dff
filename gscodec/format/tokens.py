"""Hybrid integer coding: unsigned integers to one-byte tokens plus raw extra bits (spec section 7.2).

A stream's *config* byte holds ``s`` (split exponent, bits 0-3, 0..7) and ``m``
(mantissa bits in the token, bits 4-7, ``m <= min(s, 2)``). A value
``v < 2**s`` is its own token with no extra bits. A larger value with
``n = floor(log2 v)`` is the token ``2**s + (n - s) * 2**m + h``, where ``h``
is the ``m`` bits of ``v`` below its leading one, followed by the ``n - m`` low
bits of ``v`` as extra bits. Tokens carry the skewed part of a distribution
(magnitude and first mantissa bits) into zstd's entropy coder through a small
alphabet; the extra bits are close to uniform, so they are stored packed,
least significant bit first. ``s = 7, m = 0`` stores values below 128 whole.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from numba import njit

from .errors import HeaderError, ParameterError, StreamError, TruncatedError

VALUE_BITS = 32
"""Tokens cover values below ``2**VALUE_BITS``."""
MAX_SPLIT = 7
MAX_MANTISSA = 2


def config_byte(split: int, mantissa: int) -> int:
    """The config byte of split exponent ``split`` and ``mantissa`` token bits; raises ``ValueError`` if invalid."""
    if not (0 <= split <= MAX_SPLIT and 0 <= mantissa <= min(split, MAX_MANTISSA)):
        raise ValueError(f"invalid token config: split {split}, mantissa {mantissa}")
    return split | mantissa << 4


CONFIGS = tuple(config_byte(s, m) for s in range(MAX_SPLIT + 1) for m in range(min(s, MAX_MANTISSA) + 1))
"""Every valid config byte."""


@lru_cache(maxsize=None)
def _tables(config: int) -> tuple[int, np.ndarray, np.ndarray]:
    """Largest token, and extra-bit count and value of the leading bits per token (256 entries each)."""
    if config not in CONFIGS:
        raise HeaderError(f"invalid token config byte {config}")
    s, m = config & 15, config >> 4
    t = np.arange(256, dtype=np.int64)
    big = t >= 1 << s
    n = s + ((t - (1 << s)) >> m)
    nbits = np.where(big, np.minimum(n - m, 63), 0)
    lead = np.where(big, ((1 << m) | ((t - (1 << s)) & ((1 << m) - 1))).astype(np.uint64) << nbits.astype(np.uint64),
                    t.astype(np.uint64))
    max_token = (1 << s) + ((VALUE_BITS - 1 - s) << m) + (1 << m) - 1
    return max_token, nbits, lead


def tokenize(values: np.ndarray, config: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(N,)`` unsigned ints to uint8 tokens, extra-bit values and int64 extra-bit counts (``(N,)`` each)."""
    s, m = config & 15, config >> 4
    _tables(config)
    v = values.astype(np.uint64)
    big = v >= np.uint64(1 << s)
    n = np.zeros(v.shape, dtype=np.int64)
    if big.any():
        # frexp is exact below 2**53; anything that large fails the check below anyway
        n[big] = np.frexp(v[big].astype(np.float64))[1] - 1
    if int(n.max(initial=0)) >= VALUE_BITS:
        raise ParameterError(f"a value needs more than {VALUE_BITS} bits")
    nbits = np.where(big, n - m, 0)
    high = (v >> nbits.astype(np.uint64)) & np.uint64((1 << m) - 1)
    tokens = np.where(big, (1 << s) + ((n - s) << m) + high.astype(np.int64), v.astype(np.int64))
    extra = v & _MASK[nbits]
    return tokens.astype(np.uint8), extra, nbits


def choose_config(values: np.ndarray) -> int:
    """The config whose tokens and extra bits have the fewest estimated bits for ``values`` ``(N,)``.

    The estimate is the order-0 entropy of the tokens plus the extra bits plus
    4 bits per distinct token (a rough Huffman table cost). A value's token
    depends only on the value below 128 (``2**MAX_SPLIT``), and above it on its
    bit length and the two bits below its leading one, so every config is
    scored from one histogram of those instead of tokenizing ``values`` again.
    """
    v = np.asarray(values).astype(np.uint64)
    small = v < np.uint64(1 << MAX_SPLIT)
    small_counts = np.bincount(v[small].astype(np.int64), minlength=1 << MAX_SPLIT)
    big = v[~small]
    big_n = big_h = big_counts = np.zeros(0, dtype=np.int64)
    if big.size:
        n = np.frexp(big.astype(np.float64))[1] - 1  # exact below 2**53, and anything that large is refused
        if int(n.max()) >= VALUE_BITS:
            return CONFIGS[0]  # no config can code it; the caller's range check reports it
        h = ((big >> (n - MAX_MANTISSA).astype(np.uint64)) & np.uint64((1 << MAX_MANTISSA) - 1)).astype(np.int64)
        keys, big_counts = np.unique(n * (1 << MAX_MANTISSA) + h, return_counts=True)
        big_n, big_h = keys >> MAX_MANTISSA, keys & ((1 << MAX_MANTISSA) - 1)
    size = max(v.size, 1)
    best, best_cost = CONFIGS[0], float("inf")
    for config in CONFIGS:
        s, m = config & 15, config >> 4
        small_tokens, extra_small = _small_tokens(config)
        big_tokens = (1 << s) + ((big_n - s) << m) + (big_h >> (MAX_MANTISSA - m))
        counts = np.bincount(np.concatenate([small_tokens, big_tokens]),
                             weights=np.concatenate([small_counts, big_counts]).astype(np.float64), minlength=256)
        counts = counts[counts > 0]
        extra = int((small_counts * extra_small).sum()) + int((big_counts * (big_n - m)).sum())
        cost = float(-(counts * np.log2(counts / size)).sum()) + extra + 4 * counts.size
        if cost < best_cost:
            best, best_cost = config, cost
    return best


@lru_cache(maxsize=None)
def _small_tokens(config: int) -> tuple[np.ndarray, np.ndarray]:
    """Token and extra-bit count of every value below ``2**MAX_SPLIT`` under ``config``."""
    tokens, _, nbits = tokenize(np.arange(1 << MAX_SPLIT, dtype=np.uint64), config)
    return tokens.astype(np.int64), nbits


def extra_bit_counts(tokens: np.ndarray, config: int) -> np.ndarray:
    """Int64 extra-bit counts of uint8 ``tokens`` (any shape); :class:`ParameterError` for a token out of range."""
    max_token, nbits, _ = _tables(config)
    if tokens.size and int(tokens.max()) > max_token:
        raise ParameterError(f"token {int(tokens.max())} exceeds {max_token} (token config {config})")
    return nbits[tokens]


def detokenize(tokens: np.ndarray, extra: np.ndarray, config: int) -> np.ndarray:
    """Inverse of :func:`tokenize`: uint64 values from valid uint8 tokens and their extra bits."""
    return _tables(config)[2][tokens] | extra


_MASK = (np.uint64(1) << np.arange(64, dtype=np.uint64)) - np.uint64(1)


def pack_bits(values: np.ndarray, nbits: np.ndarray) -> bytes:
    """Concatenate the low ``nbits[i]`` bits of each ``values[i]``, LSB first, zero-padded to whole bytes."""
    total = int(nbits.sum())
    if total == 0:
        return b""
    owner = np.repeat(np.arange(values.size), nbits)
    starts = np.cumsum(nbits) - nbits
    shift = (np.arange(total) - starts[owner]).astype(np.uint64)
    bits = ((values.astype(np.uint64)[owner] >> shift) & np.uint64(1)).astype(np.uint8)
    return np.packbits(bits, bitorder="little").tobytes()


def unpack_bits(data: bytes, nbits: np.ndarray) -> np.ndarray:
    """Inverse of :func:`pack_bits` for ``data`` of exactly ``ceil(sum(nbits) / 8)`` bytes: uint64 ``(N,)``.

    Raises :class:`TruncatedError` if ``data`` is too short, :class:`StreamError`
    if it is too long or its padding bits are not zero.
    """
    total = int(nbits.sum())
    buf = _extra_bit_buffer(data, total)
    if total == 0:
        return np.zeros(nbits.shape, dtype=np.uint64)
    return _read_bits(buf, nbits.astype(np.int64))


def _extra_bit_buffer(data: bytes, total: int) -> np.ndarray:
    """``data`` checked to hold exactly ``total`` bits with zero padding, as uint8 with 8 spare zero bytes.

    Raises :class:`TruncatedError` if ``data`` is too short, :class:`StreamError`
    if it is too long or its padding bits are not zero.
    """
    need = (total + 7) // 8
    if len(data) < need:
        raise TruncatedError(f"extra bits need {need} bytes, the payload holds {len(data)}")
    if len(data) > need:
        raise StreamError(f"{len(data) - need} bytes follow the extra bits")
    if total % 8 and data[-1] >> (total % 8):
        raise StreamError("the padding bits after the extra bits are not zero")
    buf = np.zeros(need + 8, dtype=np.uint8)
    buf[:need] = np.frombuffer(data, dtype=np.uint8)
    return buf


@njit(cache=True)
def _read_bits(buf: np.ndarray, nbits: np.ndarray) -> np.ndarray:  # pragma: no cover - compiled
    out = np.zeros(nbits.size, dtype=np.uint64)
    pos = 0
    for i in range(nbits.size):
        nb = nbits[i]
        if nb:
            at = pos >> 3
            word = np.uint64(0)
            for k in range(8):
                word |= np.uint64(buf[at + k]) << np.uint64(8 * k)
            out[i] = (word >> np.uint64(pos & 7)) & ((np.uint64(1) << np.uint64(nb)) - np.uint64(1))
            pos += nb
    return out


@lru_cache(maxsize=64)
def _stream_tables(configs: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per stream: largest token ``(S,)``, extra-bit counts ``(S, 256)`` int64 and leading bits ``(S, 256)`` uint64."""
    tables = [_tables(c) for c in configs]
    return (np.array([t[0] for t in tables], dtype=np.int64), np.stack([t[1] for t in tables]),
            np.stack([t[2] for t in tables]))


def decode_streams(tokens: np.ndarray, configs: tuple[int, ...], data: bytes, fraction_bits: int
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Values of ``S`` token streams of ``N`` each and their packed extra bits, in one pass.

    The extra bits hold those of stream 0, then ``fraction_bits`` per value
    (returned raw), then those of streams ``1..S-1`` (as in the quantized
    payload). Returns uint64 ``(N,)`` values of stream 0, uint64 ``(N,)``
    fractions and uint64 ``(S - 1, N)`` values of the other streams. Raises, in
    this order, :class:`ParameterError` for a token above its config's largest,
    then the errors of :func:`unpack_bits`.
    """
    max_tokens, nbits, lead = _stream_tables(tuple(configs))
    if tokens.shape[1]:
        top = tokens.max(axis=1)
        for s in range(tokens.shape[0]):
            if int(top[s]) > max_tokens[s]:
                raise ParameterError(f"token {int(top[s])} exceeds {max_tokens[s]} (token config {configs[s]})")
    total = _total_bits(tokens, nbits) + tokens.shape[1] * fraction_bits
    return _decode_values(tokens, nbits, lead, _extra_bit_buffer(data, total), fraction_bits)


@njit(cache=True)
def _total_bits(tokens: np.ndarray, nbits: np.ndarray) -> int:  # pragma: no cover - compiled
    total = 0
    for s in range(tokens.shape[0]):
        for i in range(tokens.shape[1]):
            total += nbits[s, tokens[s, i]]
    return total


@njit(cache=True)
def _decode_values(tokens: np.ndarray, nbits: np.ndarray, lead: np.ndarray, buf: np.ndarray, fraction_bits: int
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # pragma: no cover - compiled
    """Stream values in the bit order of :func:`decode_streams`; every extra-bit count is at most 32."""
    streams, n = tokens.shape
    out = np.empty((streams + 1, n), dtype=np.uint64)
    acc = np.uint64(0)  # bits read ahead, LSB first
    have = 0
    at = 0
    for row in range(streams + 1):
        s = 0 if row == 0 else row - 1
        for i in range(n):
            if row == 1:
                nb = fraction_bits
                v = np.uint64(0)
            else:
                t = tokens[s, i]
                nb = nbits[s, t]
                v = lead[s, t]
            if nb:
                while have < nb:
                    acc |= np.uint64(buf[at]) << np.uint64(have)
                    at += 1
                    have += 8
                v |= acc & ((np.uint64(1) << np.uint64(nb)) - np.uint64(1))
                acc >>= np.uint64(nb)
                have -= nb
            out[row, i] = v
    return out[0], out[1], out[2:]
