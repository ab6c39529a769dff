"""Hybrid integer tokens and packed extra bits of quantized payloads (spec section 7.2)."""

from __future__ import annotations

import numpy as np
import pytest

from gscodec.format.errors import HeaderError, ParameterError, StreamError, TruncatedError
from gscodec.format.streams import pack_frames
from gscodec.format.tokens import (CONFIGS, VALUE_BITS, choose_config, config_byte, detokenize, extra_bit_counts,
                                   pack_bits, tokenize, unpack_bits)


def _values(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    edges = [0, 1, 3, 4, 5, 6, 7, 8, 127, 128, 255, 256, 1 << 31, (1 << VALUE_BITS) - 1]
    return np.concatenate([edges] + [rng.integers(0, 1 << k, 10) for k in range(1, VALUE_BITS + 1)]).astype(np.uint64)


@pytest.mark.parametrize("config", CONFIGS)
def test_tokens_and_extra_bits_round_trip(config: int) -> None:
    v = _values(config)
    tokens, extra, nbits = tokenize(v, config)
    np.testing.assert_array_equal(extra_bit_counts(tokens, config), nbits)
    data = pack_bits(extra, nbits)
    assert len(data) == (int(nbits.sum()) + 7) // 8
    np.testing.assert_array_equal(detokenize(tokens, unpack_bits(data, nbits), config), v)


def test_token_table_matches_spec() -> None:
    # split 2, one mantissa bit: 0..3 direct; then 4 + 2 * (n - 2) + (bit below the leading one), n - 1 extra bits
    v = np.array([0, 3, 4, 5, 6, 7, 8, 12, 1000], dtype=np.uint64)
    tokens, extra, nbits = tokenize(v, config_byte(2, 1))
    assert tokens.tolist() == [0, 3, 4, 4, 5, 5, 6, 7, 4 + 2 * 7 + 1]
    assert nbits.tolist() == [0, 0, 1, 1, 1, 1, 2, 2, 8]
    assert extra.tolist() == [0, 0, 0, 1, 0, 1, 0, 0, 1000 - 768]
    # split 7, no mantissa bits: values below 128 whole, 1000 = 2^9 + 488 -> token 128 + 2, 9 extra bits
    tokens, extra, nbits = tokenize(np.array([127, 1000], dtype=np.uint64), config_byte(7, 0))
    assert tokens.tolist() == [127, 130] and nbits.tolist() == [0, 9] and extra.tolist() == [0, 488]


def test_extra_bits_are_lsb_first() -> None:
    assert pack_bits(np.array([1, 0b101], dtype=np.uint64), np.array([1, 3])) == bytes([0b1011])


@pytest.mark.parametrize("scale", [0.7, 6.0, 40.0, 3000.0])
def test_chosen_config_is_near_the_smallest(scale: float) -> None:
    rng = np.random.default_rng(1)
    v = np.abs(np.rint(rng.laplace(0, scale, 3000))).astype(np.uint64)

    def size(config: int) -> int:
        tokens, extra, nbits = tokenize(v, config)
        return len(pack_frames([tokens.tobytes()])) + len(pack_bits(extra, nbits))

    sizes = {c: size(c) for c in CONFIGS}
    assert sizes[choose_config(v)] <= 1.02 * min(sizes.values())


def test_invalid_values_tokens_and_configs_are_refused() -> None:
    with pytest.raises(ParameterError):
        tokenize(np.array([1 << VALUE_BITS], dtype=np.uint64), config_byte(2, 1))
    with pytest.raises(ParameterError):
        extra_bit_counts(np.array([64], dtype=np.uint8), config_byte(2, 1))
    with pytest.raises(HeaderError):
        extra_bit_counts(np.array([0], dtype=np.uint8), 0x33)
    with pytest.raises(ValueError):
        config_byte(1, 2)


def test_extra_bits_length_and_padding_are_checked() -> None:
    nbits = np.array([3, 2])
    good = pack_bits(np.array([5, 2], dtype=np.uint64), nbits)
    with pytest.raises(TruncatedError):
        unpack_bits(b"", nbits)
    with pytest.raises(StreamError):
        unpack_bits(good + b"\x00", nbits)
    with pytest.raises(StreamError):
        unpack_bits(bytes([good[0] | 0x80]), nbits)


def _greedy_frames_reference(chunks: list[bytes]) -> bytes:
    """The frame choice re-packing every candidate in full: merge the neighbours whose merge packs smallest."""
    groups = [[c] for c in chunks]
    best = pack_frames([b"".join(g) for g in groups])
    while len(groups) > 1:
        candidates = []
        for i in range(len(groups) - 1):
            merged = groups[:i] + [groups[i] + groups[i + 1]] + groups[i + 2:]
            candidates.append((pack_frames([b"".join(g) for g in merged]), merged))
        packed, merged = min(candidates, key=lambda c: len(c[0]))
        if len(packed) >= len(best):
            break
        best, groups = packed, merged
    return best


@pytest.mark.parametrize("seed", range(6))
def test_best_frames_matches_the_plain_greedy_search(seed: int) -> None:
    """Compressing each run of streams once picks the same frames, byte for byte, as re-packing every candidate."""
    from gscodec.format.payload import _best_frames

    rng = np.random.default_rng(seed)
    chunks = []
    for k in range(int(rng.integers(1, 8))):
        n = int(rng.integers(0, 3000))
        spread = int(rng.choice([2, 16, 256]))  # repetitive to noisy streams, so some merges pay and some do not
        chunks.append(rng.integers(0, spread, n, dtype=np.uint8).tobytes())
    assert _best_frames(chunks) == _greedy_frames_reference(chunks)


def _choose_config_reference(values: np.ndarray) -> int:
    """The config choice by tokenizing ``values`` under every config."""
    best, best_cost = CONFIGS[0], float("inf")
    for config in CONFIGS:
        try:
            tokens, _, nbits = tokenize(values, config)
        except ParameterError:
            continue
        counts = np.bincount(tokens, minlength=256)
        counts = counts[counts > 0]
        cost = float(-(counts * np.log2(counts / max(tokens.size, 1))).sum()) + int(nbits.sum()) + 4 * counts.size
        if cost < best_cost:
            best, best_cost = config, cost
    return best


@pytest.mark.parametrize("seed", range(8))
def test_choose_config_matches_tokenizing_every_config(seed: int) -> None:
    """Scoring configs from the histogram picks what tokenizing under each config picks."""
    rng = np.random.default_rng(seed)
    for kind in range(4):
        n = int(rng.integers(0, 2000))
        if kind == 0:
            v = rng.geometric(rng.uniform(0.01, 0.9), n) - 1
        elif kind == 1:
            v = rng.integers(0, 2 ** int(rng.integers(1, 32)), n)
        elif kind == 2:
            v = np.abs(rng.normal(0, 10 ** rng.uniform(0, 6), n)).astype(np.int64)
        else:
            v = rng.integers(0, 300, n)
        v = v.astype(np.uint64)
        assert choose_config(v) == _choose_config_reference(v)
    assert choose_config(np.array([2**40], dtype=np.uint64)) == _choose_config_reference(
        np.array([2**40], dtype=np.uint64))  # too large for any config
