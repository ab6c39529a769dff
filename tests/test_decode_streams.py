"""The fused stream decoder (``decode_streams``) against the plain reference (``tokenize``/``detokenize``)."""

from __future__ import annotations

import numpy as np
import pytest

from gscodec.format.errors import ParameterError
from gscodec.format.tokens import (CONFIGS, VALUE_BITS, decode_streams, detokenize, pack_bits, tokenize,
                                   unpack_bits)


def _streams(seed: int, n: int, streams: int, fraction_bits: int):
    rng = np.random.default_rng(seed)
    configs = tuple(int(c) for c in rng.choice(CONFIGS, streams))
    top = rng.integers(1, VALUE_BITS + 1, (streams, n))  # magnitudes from 1 bit to VALUE_BITS per value
    values = (rng.integers(0, 1 << 62, (streams, n)).astype(np.uint64) % (np.uint64(1) << top.astype(np.uint64)))
    fractions = rng.integers(0, 1 << fraction_bits, n).astype(np.uint64) if fraction_bits else np.zeros(n, np.uint64)
    coded = [tokenize(values[s], configs[s]) for s in range(streams)]
    tokens = np.stack([t for t, _, _ in coded]).astype(np.uint8)
    order = [coded[0][1:], (fractions, np.full(n, fraction_bits, np.int64))] + [c[1:] for c in coded[1:]]
    data = pack_bits(np.concatenate([v for v, _ in order]), np.concatenate([b for _, b in order]))
    return configs, values, fractions, tokens, data


@pytest.mark.parametrize("seed", range(12))
def test_fused_decoder_matches_detokenize_on_random_streams(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    n, streams, fraction_bits = int(rng.integers(0, 300)), int(rng.integers(1, 8)), int(rng.integers(0, 5))
    configs, values, fractions, tokens, data = _streams(seed, n, streams, fraction_bits)
    first, frac, rest = decode_streams(tokens, configs, data, fraction_bits)
    # the plain path: each stream's extra bits unpacked on their own, then detokenized
    nbits = [tokenize(values[s], configs[s])[2] for s in range(streams)]
    counts = [nbits[0], np.full(n, fraction_bits, np.int64), *nbits[1:]]
    raw = unpack_bits(data, np.concatenate(counts))
    parts = np.split(raw, np.cumsum([c.size for c in counts])[:-1])
    plain = [detokenize(tokens[0], parts[0], configs[0])] + [detokenize(tokens[s], parts[s + 1], configs[s])
                                                             for s in range(1, streams)]
    np.testing.assert_array_equal(first, plain[0])
    np.testing.assert_array_equal(frac, parts[1])
    np.testing.assert_array_equal(rest, np.array(plain[1:], np.uint64).reshape(streams - 1, n))
    np.testing.assert_array_equal(first, values[0])  # and both are the values that were coded
    np.testing.assert_array_equal(frac, fractions)
    np.testing.assert_array_equal(rest, values[1:])


def test_fused_decoder_refuses_a_token_past_its_config() -> None:
    configs, _, _, tokens, data = _streams(0, 20, 2, 0)
    tokens[1, 3] = 255
    with pytest.raises(ParameterError):
        decode_streams(tokens, configs, data, 0)
