"""Version 2 of the quantized payload (spec 7.6, 7.7): the range coder against a transcription of the spec,
the writer's choice of version, and version 1 kept as it was."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import torch

import gscodec
from gscodec.format import HeaderError, ParameterError, StreamError, TruncatedError, UnsupportedVersionError
from gscodec.format.header import HEADER_SIZE
from gscodec.format.payload import _dequantize, dequantized, parse_quantized, parse_quantized_v2
from gscodec.format.rangecoder import choose_delta_shift, decode_symbols, encode_symbols
from gscodec.quantize import (COLOR_RGB, COLOR_YCOCG, Quantization, QuantizedGaussians, dequantize, fields_to_params,
                              grid_positions, morton_encode, quantize)

VECTORS = Path(__file__).resolve().parents[1] / "spec" / "vectors"


class SpecDecoder:
    """Spec 7.6-7.7 written out line by line in plain Python integers (slow, independent of the numba decoder)."""

    def __init__(self, coded: bytes, raw: bytes) -> None:
        self.coded, self.raw = coded, raw
        self.R = 2**32 - 1
        self.V = self.b(0) * 2**24 + self.b(1) * 2**16 + self.b(2) * 2**8 + self.b(3)
        self.j = 4
        self.pos = 0
        self.tables: dict[tuple, list[int]] = {}

    def b(self, j: int) -> int:
        return self.coded[j] if j < len(self.coded) else 0

    def read_raw(self, e: int) -> int:
        value = 0
        for k in range(e):
            at = self.pos + k
            if at >= 8 * len(self.raw):
                raise TruncatedError("raw read past the payload")
            value += ((self.raw[at // 8] >> (at % 8)) & 1) << k
        self.pos += e
        return value

    def decode_bit(self, entry: tuple) -> int:
        state = self.tables.setdefault(entry, [32768, 0])
        P, n = state
        bound = (self.R >> 16) * P
        if self.V < bound:
            bit, self.R = 0, bound
        else:
            bit, self.V, self.R = 1, self.V - bound, self.R - bound
        shift = min((n + 1).bit_length(), 6)
        P = P + ((65536 - P) >> shift) if bit == 0 else P - (P >> shift)
        state[:] = [P, min(n + 1, 31)]
        while self.R < 2**24:
            self.R *= 256
            self.V = (self.V * 256 + self.b(self.j)) % 2**32
            self.j += 1
        return bit

    def decode_integer(self, U: tuple, S: tuple | None, M: tuple) -> int:
        k = 0
        while k < 32 and self.decode_bit(U + (k,)) == 1:
            k += 1
        negative = self.decode_bit(S) if S is not None and k >= 1 else 0
        a = 0 if k == 0 else 1
        if k >= 2:
            a = (2 + self.decode_bit(M + (k,))) * 2 ** (k - 2) + self.read_raw(k - 2)
        return -a if negative else a


def spec_decode(coded: bytes, raw: bytes, count: int, p: int, shift: int):
    """Deltas, fractions, codes ``(6, N)``, coded bytes consumed, raw bits consumed, by the spec's text."""
    dec = SpecDecoder(coded, raw)
    deltas, fractions, codes = [], [], []
    previous_q0 = 0

    def cls(x: int) -> int:
        return 0 if x == 0 else 2 * min(abs(x).bit_length(), 4) - 1 + (1 if x < 0 else 0)

    for _ in range(count):
        h = dec.decode_integer(("DU",), None, ("DM",))
        deltas.append(h * 2**shift + dec.read_raw(shift))
        fractions.append(dec.read_raw(2 * p))
        q: list[int] = []
        for f in range(6):
            x = previous_q0 if f == 0 else q[(0, 0, 1, 0, 3, 4)[f]]
            c = cls(x)
            q.append(dec.decode_integer(("FU", f, c), ("FS", f, c), ("FM", f)))
        previous_q0 = q[0]
        codes.append(q)
    return deltas, fractions, np.array(codes, dtype=np.int64).reshape(-1, 6).T, dec.j, dec.pos


def _gaussians(width: int, height: int, n: int, seed: int) -> gscodec.GaussianImage:
    """``n`` random Gaussians (``n`` may be 0)."""
    gen = torch.Generator().manual_seed(seed)
    means = torch.rand(n, 2, generator=gen) * torch.tensor([width, height])
    base = (width * height / max(n, 1)) ** 0.5
    chol = torch.stack([base * (0.3 + torch.rand(n, generator=gen)), base * 0.5 * torch.randn(n, generator=gen),
                        base * (0.3 + torch.rand(n, generator=gen))], 1)
    return gscodec.GaussianImage(width, height, means, chol, torch.rand(n, 3, generator=gen) * 0.6)


def _split(data: bytes) -> tuple[gscodec.Header, bytes, bytes, int, int]:
    """Header, coded bytes, raw bytes, delta shift and position bits of a version-2 file."""
    h = gscodec.decode(data).header
    payload = data[HEADER_SIZE + h.metadata_length : len(data) - 4]
    shift, length = struct.unpack_from("<BI", payload, 50)
    return h, payload[55 : 55 + length], payload[55 + length :], shift, payload[0]


V2_VECTORS = sorted(VECTORS.glob("*-v2.gsi"))


@pytest.mark.parametrize("path", V2_VECTORS, ids=[p.name for p in V2_VECTORS])
def test_numba_decoder_matches_the_spec_text_on_the_vectors(path: Path) -> None:
    h, coded, raw, shift, p = _split(path.read_bytes())
    want = spec_decode(coded, raw, h.count, p, shift)
    got = decode_symbols(coded, raw, h.count, 2 * p, shift)
    assert [int(v) for v in got[0]] == want[0] and [int(v) for v in got[1]] == want[1]
    np.testing.assert_array_equal(got[2], want[2])
    assert (got[3], got[4]) == (want[3], want[4])


@pytest.mark.parametrize("seed", range(3))
def test_encoder_round_trips_through_the_spec_decoder(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 200
    deltas = rng.integers(0, 1 << rng.integers(1, 31), n).astype(np.uint64)
    fractions = rng.integers(0, 16, n).astype(np.uint64)
    scale = rng.choice([3, 40, 1 << 20, (1 << 32) - 1], size=(6, 1))
    codes = (rng.standard_normal((6, n)) * scale).clip(-(2**32 - 1), 2**32 - 1).astype(np.int64)
    for shift in (0, 3):
        coded, raw = encode_symbols(deltas, fractions, codes, 4, shift)
        assert not coded or coded[-1] != 0
        d, f, q, used, raw_bits = spec_decode(coded, raw, n, 2, shift)
        assert d == [int(v) for v in deltas] and f == [int(v) for v in fractions]
        np.testing.assert_array_equal(q, codes)
        assert used >= len(coded) and (raw_bits + 7) // 8 == len(raw)


@pytest.mark.parametrize("seed", range(4))
def test_numba_decoder_matches_the_spec_text_on_damaged_streams(seed: int) -> None:
    """Random coded bytes, shorter than what the Gaussians read (the decoder reads far past their end, the
    zero bytes there included) and random raw bits: the same symbols, bytes and bits consumed as the spec's text."""
    rng = np.random.default_rng(seed)
    coded = rng.integers(0, 256, int(rng.integers(0, 40)), dtype=np.uint8).tobytes()
    raw = rng.integers(0, 256, 3000, dtype=np.uint8).tobytes()
    n, p, shift = 120, int(rng.integers(0, 5)), int(rng.integers(0, 32))
    got = decode_symbols(coded, raw, n, 2 * p, shift)
    try:
        want = spec_decode(coded, raw, n, p, shift)
    except TruncatedError:  # the spec's reader stops at the first raw bit past the end; compare up to it
        assert got[4] > 8 * len(raw)
        return
    assert [int(v) for v in got[0]] == want[0] and [int(v) for v in got[1]] == want[1]
    np.testing.assert_array_equal(got[2], want[2])
    assert (got[3], got[4]) == (want[3], want[4])


def test_numba_decoder_reads_zeros_past_the_coded_bytes() -> None:
    """Eight coded bytes and a thousand Gaussians: the decoder reads over a thousand zero bytes past the end,
    several times its padding, exactly as the spec's text does."""
    coded, raw, n = b"\xff" * 8, b"\0" * 1000, 1000
    got = decode_symbols(coded, raw, n, 0, 0)
    want = spec_decode(coded, raw, n, 0, 0)
    assert got[3] == want[3] > 1000 and got[4] == want[4]
    np.testing.assert_array_equal(got[2], want[2])
    assert [int(v) for v in got[0]] == want[0]


def test_adaptation_by_one_shift_is_the_spec_update() -> None:
    """The decoder's ``P + ((T - P) >> s)``, ``T = 2**s - 1`` after a 1, is the spec's ``P - (P >> s)``
    (and ``T = 65536`` after a 0 its ``P + ((65536 - P) >> s)``) for every ``P`` and shift."""
    p = np.arange(1, 65536, dtype=np.int64)
    for s in range(1, 7):
        np.testing.assert_array_equal(p + (((1 << s) - 1 - p) >> s), p - (p >> s))
        np.testing.assert_array_equal(p + ((65536 - p) >> s), p + ((65536 - p) >> s))


@pytest.mark.parametrize("transform", [COLOR_RGB, COLOR_YCOCG])
def test_decoder_dequantization_is_the_normative_arithmetic(transform: int) -> None:
    """The decoder's one-pass dequantization gives quantize.dequantize's float32 values bit for bit (NaN and
    infinities included), for fitted-like codes and for any codes, offsets and steps a file may hold."""
    rng = np.random.default_rng(transform)
    n = 20000
    codes = np.concatenate([rng.integers(-300, 300, (6, n // 2)), rng.integers(-(2**32) + 1, 2**32, (6, n // 2))], 1)
    ix, iy = rng.integers(0, 16384 * 16, n), rng.integers(0, 16384 * 16, n)
    for offsets, steps in ((np.array([0.5, -0.25, 0.0, 0.4, 0.0, 0.01]), Quantization().steps()),
                           (rng.standard_normal(6) * 50, np.exp(rng.uniform(-20, 3, 6))),
                           (rng.standard_normal(6), np.exp(rng.uniform(-40, -20, 6)))):
        o, st = np.asarray(offsets, np.float32), np.asarray(steps, np.float32)
        means, chol, colors = _dequantize(codes, o, st, ix, iy, 3, transform == COLOR_YCOCG)
        fields = o.astype(np.float64)[:, None] + st.astype(np.float64)[:, None] * codes.astype(np.float64)
        with np.errstate(over="ignore", invalid="ignore"):
            want_chol, want_colors = fields_to_params(fields, transform)
        for got, want in ((means, grid_positions(ix, iy, 3)), (chol, want_chol), (colors, want_colors)):
            np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))
    g = _gaussians(200, 150, 3000, 11)
    qg = quantize(g, Quantization(color_transform=transform))
    for name in ("means", "chol", "colors"):
        np.testing.assert_array_equal(np.asarray(getattr(dequantized(qg), name)), np.asarray(getattr(dequantize(qg), name)))


QUANTIZATIONS = [Quantization(), Quantization(position_bits=0, scale_bits=12, shear_bits=10, color_bits=11,
                                              chroma_bits=11, color_transform=COLOR_RGB),
                 Quantization(position_bits=4, scale_bits=4, shear_bits=2, color_bits=3, chroma_bits=2)]


@pytest.mark.parametrize("q", QUANTIZATIONS)
@pytest.mark.parametrize("n", [0, 1, 700, 5000])
def test_versions_decode_to_the_same_gaussians(q: Quantization, n: int) -> None:
    g = _gaussians(96, 64, n, n)
    one, two = gscodec.decode(gscodec.encode(g, quantization=q, version=1)), gscodec.decode(
        gscodec.encode(g, quantization=q, version=2))
    assert (one.header.version, two.header.version) == (1, 2)
    for name in ("means", "chol", "colors"):
        assert np.array_equal(getattr(one.gaussians, name), getattr(two.gaussians, name)), name


def test_writer_picks_the_smaller_version() -> None:
    g = _gaussians(128, 96, 400, 5)
    sizes = {v: len(gscodec.encode(g, version=v)) for v in (1, 2)}
    data = gscodec.encode(g)
    assert len(data) == min(sizes.values())
    assert gscodec.decode(data).header.version == (2 if sizes[2] < sizes[1] else 1)
    assert gscodec.decode(gscodec.encode(g, mode="float32")).header.version == 1
    with pytest.raises(ValueError):
        gscodec.encode(g, mode="float16", version=2)
    with pytest.raises(ValueError):
        gscodec.encode(g, version=3)


def test_codes_too_wide_for_version_1_go_to_version_2(tmp_path: Path) -> None:
    qg = quantize(_gaussians(32, 32, 20, 1))
    codes = qg.codes.copy()
    codes[3, 0] = 1 << 31  # zigzag 2^32: past version 1's tokens
    wide = QuantizedGaussians(qg.width, qg.height, qg.position_bits, qg.color_transform, qg.ix, qg.iy,
                              qg.offsets, np.full(6, 2.0**-40, np.float32), codes)
    with pytest.raises(ParameterError):
        gscodec.encode(wide, version=1)
    path = tmp_path / "wide.gsi"
    gscodec.write(wide, path)
    f = gscodec.read(path)
    assert f.header.version == 2
    np.testing.assert_array_equal(parse_quantized_v2(memoryview(path.read_bytes())[HEADER_SIZE:-4], 32, 32,
                                                     20).codes, codes)


def test_version_1_files_parse_as_before() -> None:
    data = (VECTORS / "small-quantized.gsi").read_bytes()
    h = gscodec.decode(data).header
    assert h.version == 1
    qg = parse_quantized(memoryview(data)[HEADER_SIZE + h.metadata_length : -4], h.width, h.height, h.count)
    again = gscodec.encode(qg, version=1, metadata=gscodec.decode(data).metadata)
    assert again == data


def test_decoder_stops_when_raw_bits_run_out() -> None:
    """A damaged count does not make the decoder walk (or allocate) through it all: R4 comes first."""
    data = (VECTORS / "small-v2.gsi").read_bytes()
    h, coded, raw, shift, p = _split(data)
    deltas, *_ , raw_bits = decode_symbols(coded, raw, 1 << 22, 2 * p, shift)
    assert raw_bits > 8 * len(raw) and deltas.size < 1 << 16
    b = bytearray(data)
    struct.pack_into("<I", b, 10, 1 << 22)
    b[-4:] = __import__("zlib").crc32(bytes(b[:-4])).to_bytes(4, "little")
    with pytest.raises(TruncatedError):
        gscodec.decode(bytes(b))


def test_grows_its_arrays_past_the_first_block() -> None:
    g = _gaussians(256, 256, 9000, 7)
    qg = quantize(g)
    p = qg.position_bits
    deltas = np.diff(morton_encode(qg.ix >> p, qg.iy >> p), prepend=np.uint64(0))
    fraction = morton_encode(qg.ix & 3, qg.iy & 3)
    shift, coded, raw = choose_delta_shift(deltas, fraction, qg.codes, 2 * p)
    d, f, codes, *_ = decode_symbols(coded, raw, qg.count, 2 * p, shift)
    np.testing.assert_array_equal(d[: qg.count], deltas)
    np.testing.assert_array_equal(codes[:, : qg.count], qg.codes)


@pytest.mark.parametrize("version, error", [(0, UnsupportedVersionError), (3, UnsupportedVersionError)])
def test_unknown_versions(version: int, error: type) -> None:
    data = bytearray((VECTORS / "small-v2.gsi").read_bytes())
    data[4] = version
    with pytest.raises(error):
        gscodec.decode(bytes(data))


def test_version_2_float_is_a_header_error() -> None:
    data = bytearray((VECTORS / "single-float32.gsi").read_bytes())
    data[4] = 2
    data[-4:] = __import__("zlib").crc32(bytes(data[:-4])).to_bytes(4, "little")
    with pytest.raises(HeaderError):
        gscodec.decode(bytes(data))


def test_trailing_zero_and_unread_bytes_are_stream_errors() -> None:
    data = (VECTORS / "small-v2.gsi").read_bytes()
    h, coded, raw, shift, p = _split(data)
    payload_at = HEADER_SIZE + h.metadata_length
    for extra in (b"\0", b"\x05"):  # a zero last byte (R3), a byte never read (R5)
        body = bytearray(data[payload_at : payload_at + 55])
        struct.pack_into("<I", body, 51, len(coded) + 1)
        used = decode_symbols(coded, raw, h.count, 2 * p, shift)[3]
        padded = coded + b"\0" * (used - len(coded)) + extra if extra != b"\0" else coded + extra
        struct.pack_into("<I", body, 51, len(padded))
        with pytest.raises(StreamError):
            parse_quantized_v2(memoryview(bytes(body) + padded + raw), h.width, h.height, h.count)
