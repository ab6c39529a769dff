"""The version-2 quantized payload's entropy coder (spec section 7.7): an adaptive binary range coder and its model.

The coder is LZMA's binary range coder with 16-bit probabilities: a 32-bit
``range`` and ``code``, one byte shifted in whenever ``range < 2**24``. Each
probability adapts at a rate that starts fast and slows as it sees more bits
(a count per probability), so small files learn quickly. Bits that are close
to uniform (the low bits of values, the position fractions) skip the coder:
they go to a separate raw bit string, least significant bit first, as in
version 1. Everything is integer arithmetic on values below ``2**32``,
pinned bit for bit by the spec so that the JavaScript decoder in ``web/``
decodes the same symbols.

The model codes, per Gaussian in Morton order: the pixel delta (its high part
``delta >> delta_shift`` as an unsigned integer, its low ``delta_shift`` bits
raw), the position fraction (raw) and the six field codes. An integer is its
bit length ``k`` in unary (one adaptive bit per position), then for a field
its sign, then the bit below the leading one (adaptive, by ``k``), then the
remaining ``k - 2`` bits raw. A field's unary and sign bits take their
context from a field decoded before it (:data:`CONTEXT_SOURCE`).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .tokens import pack_bits

FIELDS = 6
UNARY = 32
"""Unary positions of a bit length: lengths are 0..32; a 33rd bit is never coded."""
CLASS_CAP = 4
FIELD_CLASSES = 2 * CLASS_CAP + 1
"""Context classes of a field code ``q``: 0 for 0, else ``2 * min(bitlen(|q|), CLASS_CAP) - 1 + (q < 0)``."""
CONTEXT_SOURCE = (-1, 0, 1, 0, 3, 4)
"""Per field, the field of the same Gaussian whose class is its context; -1: field 0 of the previous Gaussian."""
MAX_COUNT = 31
MAX_RATE = 6
"""A probability moves by ``1 / 2**shift`` of its distance to the bit, ``shift = min(bitlen(count + 1), MAX_RATE)``."""
PROB_ONE = 1 << 16
_TOP = 1 << 24
_MASK32 = 0xFFFFFFFF

# offsets into the model: one state per adaptive bit, ``probability of a 0 | count << 16``
D_UNARY = 0                                        # [UNARY]
D_MANT = D_UNARY + UNARY                           # [33], by bit length
F_UNARY = D_MANT + 33                              # [FIELDS][FIELD_CLASSES][UNARY]
F_SIGN = F_UNARY + FIELDS * FIELD_CLASSES * UNARY  # [FIELDS][FIELD_CLASSES]
F_MANT = F_SIGN + FIELDS * FIELD_CLASSES           # [FIELDS][33], by bit length
MODEL_SIZE = F_MANT + FIELDS * 33

_SHIFT = np.array([min((c + 1).bit_length(), MAX_RATE) for c in range(MAX_COUNT + 1)], dtype=np.int64)


@njit(cache=True, inline="always")
def _bitlen(v: np.int64) -> int:  # pragma: no cover - compiled
    n = 0
    while v:
        v >>= 1
        n += 1
    return n


_CLASS_OF = np.array([0] + [2 * min(a.bit_length(), CLASS_CAP) - 1 for a in range(1, 1 << CLASS_CAP)], dtype=np.int64)


@njit(cache=True, inline="always")
def _field_class(q: np.int64) -> int:  # pragma: no cover - compiled
    a = -q if q < 0 else q
    return _CLASS_OF[min(a, (1 << CLASS_CAP) - 1)] + (1 if q < 0 else 0)


@njit(cache=True, inline="always")
def _adapted(state: np.int64, bit: np.int64) -> np.int64:  # pragma: no cover - compiled
    """The state after coding ``bit`` (0 or 1): the probability moves towards it, the count grows. Branch-free."""
    c = state >> 16
    p = state & 0xFFFF
    shift = _SHIFT[c]
    p += ((PROB_ONE - p) >> shift) * (1 - bit) - (p >> shift) * bit
    return p | (min(c + 1, MAX_COUNT) << 16)


# ---- encoder -------------------------------------------------------------------------------------

@njit(cache=True)
def _shift_low(st: np.ndarray, out: np.ndarray) -> None:  # pragma: no cover - compiled
    """LZMA's carry-propagating byte output. ``st``: low, range, cache, cache_size, bytes out."""
    low = st[0]
    if low < 0xFF000000 or low > _MASK32:
        carry = low >> 32
        temp = st[2]
        while True:
            out[st[4]] = (temp + carry) & 0xFF
            st[4] += 1
            temp = 0xFF
            st[3] -= 1
            if st[3] == 0:
                break
        st[2] = (low >> 24) & 0xFF
    st[3] += 1
    st[0] = (low & 0x00FFFFFF) << 8


@njit(cache=True)
def _enc_bit(st: np.ndarray, out: np.ndarray, model: np.ndarray, at: int, bit: int, cost: np.ndarray, part: int
             ) -> None:  # pragma: no cover - compiled
    state = model[at]
    if cost.size:
        p0 = (state & 0xFFFF) / PROB_ONE
        cost[part] -= np.log2(1.0 - p0 if bit else p0)
    bound = (st[1] >> 16) * (state & 0xFFFF)
    if bit:
        st[0] += bound
        st[1] -= bound
    else:
        st[1] = bound
    model[at] = _adapted(state, np.int64(bit))
    while st[1] < _TOP:
        st[1] <<= 8
        _shift_low(st, out)


@njit(cache=True)
def _enc_integer(st, out, model, raw_v, raw_n, r, unary_at: int, sign_at: int, mant_at: int, q: np.int64,
                 cost: np.ndarray, part: int) -> int:  # pragma: no cover - compiled
    """Code ``q`` (signed when ``sign_at >= 0``); raw bits are appended at ``r``; returns the new ``r``.

    ``cost[part]`` gains the ideal bits spent (``-log2`` of each coded bit's probability, plus the raw bits)."""
    a = -q if q < 0 else q
    k = _bitlen(a)
    for j in range(UNARY):
        bit = 1 if k > j else 0
        _enc_bit(st, out, model, unary_at + j, bit, cost, part)
        if not bit:
            break
    if sign_at >= 0 and k >= 1:
        _enc_bit(st, out, model, sign_at, 1 if q < 0 else 0, cost, part)
    if k >= 2:
        _enc_bit(st, out, model, mant_at + k, (a >> (k - 2)) & 1, cost, part)
        if cost.size:
            cost[part] += k - 2
        raw_v[r] = a & ((np.int64(1) << (k - 2)) - 1)
        raw_n[r] = k - 2
        r += 1
    return r


@njit(cache=True)
def _encode(deltas: np.ndarray, fractions: np.ndarray, codes: np.ndarray, fraction_bits: int, delta_shift: int,
            out: np.ndarray, raw_v: np.ndarray, raw_n: np.ndarray, cost: np.ndarray
            ) -> tuple[int, int]:  # pragma: no cover - compiled
    """Range-code the symbols into ``out`` and list the raw values and widths in ``raw_v``, ``raw_n``.

    ``cost`` ``(7,)`` gains the ideal bits of the positions and of each field (``(0,)``: not measured).
    Returns the coded bytes written (LZMA's leading zero byte included, or -1
    if ``out`` is too small) and the number of raw values.
    """
    model = np.full(MODEL_SIZE, PROB_ONE // 2, dtype=np.int64)
    st = np.zeros(5, dtype=np.int64)
    st[1] = _MASK32
    st[3] = 1
    cls = np.zeros(FIELDS, dtype=np.int64)
    r = 0
    for i in range(deltas.shape[0]):
        if st[4] + st[3] + 1024 > out.size:
            return -1, r
        d = deltas[i]
        r = _enc_integer(st, out, model, raw_v, raw_n, r, D_UNARY, -1, D_MANT, d >> delta_shift, cost, 0)
        if cost.size:
            cost[0] += delta_shift + fraction_bits
        raw_v[r] = d & ((np.int64(1) << delta_shift) - 1)
        raw_n[r] = delta_shift
        raw_v[r + 1] = fractions[i]
        raw_n[r + 1] = fraction_bits
        r += 2
        prev_c0 = cls[0]
        for f in range(FIELDS):
            src = CONTEXT_SOURCE[f]
            c = prev_c0 if src < 0 else cls[src]
            q = codes[f, i]
            r = _enc_integer(st, out, model, raw_v, raw_n, r, F_UNARY + (f * FIELD_CLASSES + c) * UNARY,
                             F_SIGN + f * FIELD_CLASSES + c, F_MANT + f * 33, q, cost, f + 1)
            cls[f] = _field_class(q)
    # flush: the value in [low, low + range) with the most trailing zero bits, then low's bytes
    low, rng = st[0], st[1]
    for s in range(32, -1, -1):
        mask = (np.int64(1) << s) - 1
        v = (low + mask) & ~mask
        if v < low + rng:
            st[0] = v
            break
    for _ in range(5):
        _shift_low(st, out)
    return st[4], r


def encode_symbols(deltas: np.ndarray, fractions: np.ndarray, codes: np.ndarray, fraction_bits: int,
                   delta_shift: int, cost: np.ndarray | None = None) -> tuple[bytes, bytes]:
    """The coded bytes and the raw bit string of a version-2 quantized payload (spec 7.7).

    ``deltas``, ``fractions``: ``(N,)`` pixel deltas (``< 2**32``) and
    ``fraction_bits``-bit position fractions; ``codes``: ``(6, N)`` signed
    field codes, ``|q| < 2**32``; the low ``delta_shift`` bits of each delta
    are raw. The coder's leading zero byte and trailing zero bytes are left out.
    ``cost``, float64 ``(7,)`` if given, gains the ideal bits of the positions
    and of each field (what the bytes are spent on).
    """
    n = deltas.shape[0]
    raw_v = np.zeros(9 * n, dtype=np.int64)  # at most 9 raw values per Gaussian
    raw_n = np.zeros(9 * n, dtype=np.int64)
    args = (deltas.astype(np.int64), fractions.astype(np.int64), codes.astype(np.int64), fraction_bits, delta_shift)
    out = np.zeros(4096 + n * 16, dtype=np.uint8)
    spent = np.zeros(0 if cost is None else FIELDS + 1)
    while (result := _encode(*args, out, raw_v, raw_n, spent))[0] < 0:
        out = np.zeros(2 * out.size, dtype=np.uint8)
        spent[:] = 0
    if cost is not None:
        cost += spent
    size, r = result
    assert out[0] == 0, "LZMA's first output byte is always 0"
    return out[1:size].tobytes().rstrip(b"\0"), pack_bits(raw_v[:r], raw_n[:r])


def choose_delta_shift(deltas: np.ndarray, fractions: np.ndarray, codes: np.ndarray, fraction_bits: int
                       ) -> tuple[int, bytes, bytes]:
    """The delta shift below the deltas' median bit length that codes smallest, with its coded and raw bytes."""
    nonzero = deltas[deltas > 0]
    median = int(np.median(nonzero)).bit_length() if nonzero.size else 0
    best = None
    for shift in range(max(0, median - 5), max(1, median - 1)):
        coded, raw = encode_symbols(deltas, fractions, codes, fraction_bits, shift)
        if best is None or len(coded) + len(raw) < len(best[1]) + len(best[2]):
            best = (shift, coded, raw)
    return best


# ---- decoder -------------------------------------------------------------------------------------
#
# The decoder is one straight loop per run of Gaussians with the coder state in locals: helper functions
# take no loops (an inlined loop that takes an array costs numba a reference-count increment and
# decrement, atomic calls, per use), array indices are unsigned (no negative-index wraparound code), the
# coded bytes carry :data:`_CODED_PAD` zero bytes (no end-of-input test per byte) and the raw bits are
# read from 64-bit words at their bit position (no refill loop). The symbols are the same.

_CODED_PAD = 512
"""Zero bytes after the coded bytes: more than one Gaussian reads (2 bytes per decision at most, as ``R``
stays at least ``2**8`` after a decision, and at most 237 decisions)."""
_RAW_PAD = 64
"""Zero bytes after the raw bits: more than one Gaussian reads past the last raw byte before the decoder
stops (at most 249 bits: 30 + 31 + 8 for the position, 30 per field)."""
_NEXT_COUNT = np.array([min(c + 1, MAX_COUNT) << 16 for c in range(MAX_COUNT + 1)], dtype=np.int64)
_CONTEXT_SOURCE = np.array(CONTEXT_SOURCE, dtype=np.int64)


@njit(cache=True, inline="always")
def _u(i: int) -> np.uintp:  # pragma: no cover - compiled
    """An index as unsigned: numba then emits no negative-index wraparound."""
    return np.uintp(i)


@njit(cache=True, inline="always")
def _dec_bit(buf, bpos, rng, code, model, at):  # pragma: no cover - compiled
    """One adaptive bit (spec 7.7 ``DecodeBit``); returns ``(bit, bpos, rng, code)``.

    The update is :func:`_adapted`'s as one arithmetic shift: ``P + ((T - P) >> shift)`` with ``T = 65536``
    after a 0 and ``T = 2**shift - 1`` after a 1 (``floor((2**s - 1 - P) / 2**s) = -floor(P / 2**s)``)."""
    state = model[_u(at)]
    p = state & 0xFFFF
    bound = (rng >> 16) * p
    bit = np.int64(code >= bound)
    code = code - bound if bit else code  # selects, not branches: LLVM emits conditional moves
    rng = rng - bound if bit else bound
    c = state >> 16
    shift = _SHIFT[_u(c)]
    target = ((np.int64(1) << shift) - 1) if bit else np.int64(PROB_ONE)
    model[_u(at)] = (p + ((target - p) >> shift)) | _NEXT_COUNT[_u(c)]
    while rng < _TOP:
        rng <<= 8
        code = ((code << 8) | np.int64(buf[_u(bpos)])) & _MASK32
        bpos += 1
    return bit, bpos, rng, code


@njit(cache=True, inline="always")
def _raw_at(words, at, nbits):  # pragma: no cover - compiled
    """``nbits`` (0..32) raw bits from bit position ``at``, least significant first (``words``: the raw
    bytes as little-endian uint64, zero-padded)."""
    w = _u(at >> 6)
    off = np.uint64(at & 63)
    lo = words[w] >> off
    hi = (words[w + np.uintp(1)] << np.uint64(1)) << (np.uint64(63) - off)  # two shifts: off may be 0
    return np.int64(lo | hi) & ((np.int64(1) << nbits) - 1)


@njit(cache=True)
def _decode_run(buf, size, words, raw_size, model, st, cls, fraction_bits, delta_shift, deltas, fractions,
                codes, i0, i1):  # pragma: no cover - compiled
    """Decode Gaussians ``i0 .. i1 - 1`` into the arrays; returns the index after the last one decoded.

    ``st`` holds the coder state between runs: range, code, byte position in ``buf``, bytes skipped past
    the end, raw bits consumed. Stops after a Gaussian whose raw bits run past ``raw_size`` bytes.
    """
    rng = st[0]
    code = st[1]
    bpos = st[2]
    skipped = st[3]
    raw_bits = st[4]
    limit = 8 * raw_size
    for i in range(i0, i1):
        if bpos > size:  # every byte past the coded ones is 0: read them from the start of the padding
            skipped += bpos - size
            bpos = size
        k = 0
        while k < UNARY:
            bit, bpos, rng, code = _dec_bit(buf, bpos, rng, code, model, D_UNARY + k)
            if not bit:
                break
            k += 1
        v = np.int64(k > 0)
        if k >= 2:
            bit, bpos, rng, code = _dec_bit(buf, bpos, rng, code, model, D_MANT + k)
            v = (((v << 1) | bit) << (k - 2)) | _raw_at(words, raw_bits, k - 2)
            raw_bits += k - 2
        deltas[_u(i)] = np.uint64((v << delta_shift) | _raw_at(words, raw_bits, delta_shift))
        raw_bits += delta_shift
        fractions[_u(i)] = np.uint64(_raw_at(words, raw_bits, fraction_bits))
        raw_bits += fraction_bits
        prev_c0 = cls[0]
        for f in range(FIELDS):
            src = _CONTEXT_SOURCE[_u(f)]
            c = prev_c0 if src < 0 else cls[_u(src)]
            unary_at = F_UNARY + (f * FIELD_CLASSES + c) * UNARY
            k = 0
            while k < UNARY:  # written out twice: see the note above
                bit, bpos, rng, code = _dec_bit(buf, bpos, rng, code, model, unary_at + k)
                if not bit:
                    break
                k += 1
            q = np.int64(0)
            if k >= 1:
                negative, bpos, rng, code = _dec_bit(buf, bpos, rng, code, model, F_SIGN + f * FIELD_CLASSES + c)
                q = 1
                if k >= 2:
                    bit, bpos, rng, code = _dec_bit(buf, bpos, rng, code, model, F_MANT + f * 33 + k)
                    q = (((q << 1) | bit) << (k - 2)) | _raw_at(words, raw_bits, k - 2)
                    raw_bits += k - 2
                if negative:
                    q = -q
            codes[_u(f), _u(i)] = q
            cls[_u(f)] = _field_class(q)
        if raw_bits > limit:
            i1 = i + 1
            break
    st[0] = rng
    st[1] = code
    st[2] = bpos
    st[3] = skipped
    st[4] = raw_bits
    return i1


@njit(cache=True)
def _grown(a: np.ndarray, size: int) -> np.ndarray:  # pragma: no cover - compiled
    out = np.empty(size, dtype=a.dtype)
    out[: a.size] = a
    return out


@njit(cache=True)
def _decode(buf: np.ndarray, size: int, words: np.ndarray, raw_size: int, n: int, fraction_bits: int,
            delta_shift: int):  # pragma: no cover - compiled
    """Decode ``n`` Gaussians from the coded bytes ``buf[:size]`` (zero-padded by :data:`_CODED_PAD`) and
    the raw bits, ``raw_size`` bytes as zero-padded little-endian words ``words``.

    Returns uint64 deltas ``(N,)``, uint64 fractions ``(N,)``, int64 codes
    ``(6, N)``, the coded bytes consumed and the raw bits consumed. Stops
    after the first Gaussian whose raw bits run past ``raw_size`` bytes (the
    raw bits consumed then exceed ``8 * raw_size``).
    """
    model = np.full(MODEL_SIZE, PROB_ONE // 2, dtype=np.int64)
    cap = min(n, 4096)  # grown as Gaussians decode: a damaged file's count allocates nothing it does not fill
    deltas = np.empty(cap, dtype=np.uint64)
    fractions = np.empty(cap, dtype=np.uint64)
    codes = np.empty((FIELDS, cap), dtype=np.int64)
    cls = np.zeros(FIELDS, dtype=np.int64)
    st = np.zeros(5, dtype=np.int64)
    st[0] = _MASK32
    st[1] = (np.int64(buf[0]) << 24) | (np.int64(buf[1]) << 16) | (np.int64(buf[2]) << 8) | np.int64(buf[3])
    st[2] = 4
    i = 0
    while i < n:
        if i == cap:
            cap = min(2 * cap, n)
            deltas = _grown(deltas, cap)
            fractions = _grown(fractions, cap)
            wider = np.empty((FIELDS, cap), dtype=np.int64)
            wider[:, :i] = codes
            codes = wider
        end = _decode_run(buf, size, words, raw_size, model, st, cls, fraction_bits, delta_shift, deltas,
                          fractions, codes, i, cap)
        if end < cap:
            break
        i = end
    return deltas, fractions, codes, st[2] + st[3], st[4]


def decode_symbols(coded: bytes, raw: bytes, count: int, fraction_bits: int, delta_shift: int
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, int]:
    """Inverse of :func:`encode_symbols`: deltas, fractions, codes, coded bytes consumed, raw bits consumed."""
    buf = np.zeros(len(coded) + _CODED_PAD, dtype=np.uint8)
    buf[: len(coded)] = np.frombuffer(coded, dtype=np.uint8)
    words = np.zeros((len(raw) + _RAW_PAD + 7) // 8, dtype="<u8")
    words.view(np.uint8)[: len(raw)] = np.frombuffer(raw, dtype=np.uint8)
    return _decode(buf, len(coded), words, len(raw), count, fraction_bits, delta_shift)
