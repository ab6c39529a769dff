"""Round trips, one test per error class, atomic writes, peek and metadata."""

from __future__ import annotations

import io
import os
import struct
import zlib

import numpy as np
import pytest
import torch

import gscodec
from gscodec import GaussianImage
from gscodec.format import (ChecksumError, GsiError, HeaderError, LimitError, MetadataError, Mode, NotGsiError,
                            ParameterError, StreamError, TrailingDataError, TruncatedError, UnsupportedVersionError,
                            WriteError, decode, encode, peek, read, write)
from gscodec.format.header import HEADER_SIZE
from gscodec.format.payload import QUANT_TABLE_SIZE, encode_quantized
from gscodec.quantize import COLOR_RGB, Quantization, QuantizedGaussians, morton_encode, quantize, snap

from .conftest import random_gaussians


def fix_crc(data: bytes | bytearray) -> bytes:
    data = bytearray(data)
    data[-4:] = zlib.crc32(bytes(data[:-4])).to_bytes(4, "little")
    return bytes(data)


def test_float32_round_trip_is_bit_exact(gaussians: GaussianImage) -> None:
    assert decode(encode(gaussians, mode="float32")).gaussians.equal(gaussians)


def test_float16_round_trip_equals_half_precision(gaussians: GaussianImage) -> None:
    out = decode(encode(gaussians, mode=Mode.FLOAT16)).gaussians
    assert np.array_equal(out.means, gaussians.means.astype(np.float16).astype(np.float32))
    assert np.array_equal(out.colors, gaussians.colors.astype(np.float16).astype(np.float32))


@pytest.mark.parametrize("q", [Quantization(), Quantization(position_bits=0, color_transform=COLOR_RGB),
                               Quantization(position_bits=4, scale_bits=12, shear_bits=12, color_bits=12)])
def test_quantized_round_trip_equals_dequantized(gaussians: GaussianImage, q: Quantization) -> None:
    expected = snap(gaussians, q)
    out = decode(encode(gaussians, quantization=q)).gaussians
    assert out.equal(expected)
    assert decode(encode(out, quantization=q)).gaussians.equal(expected), "re-encoding must be idempotent"


def test_quantized_positions_are_within_half_a_grid_step(gaussians: GaussianImage) -> None:
    q = Quantization()
    out = snap(gaussians, q)
    assert out.count == gaussians.count
    nearest = np.linalg.norm(out.means[:, None] - gaussians.means[None], axis=2).min(axis=1)
    assert float(nearest.max()) <= 0.5 * 2**-q.position_bits * 2**0.5 + 1e-6


def test_quantized_file_sorts_along_morton_curve(gaussians: GaussianImage) -> None:
    qg = quantize(gaussians)
    codes = morton_encode(qg.ix, qg.iy)
    assert np.all(np.diff(codes.astype(np.int64)) >= 0)


def test_empty_image_round_trips() -> None:
    g = GaussianImage(3, 5, torch.zeros(0, 2), torch.zeros(0, 3), torch.zeros(0, 3))
    for mode in Mode:
        out = decode(encode(g, mode=mode))
        assert out.gaussians.count == 0 and (out.header.width, out.header.height) == (3, 5)
    assert gscodec.render(g).sum() == 0


def test_paths_and_file_objects(tmp_path, gaussians: GaussianImage) -> None:
    path = tmp_path / "a.gsi"
    size = write(gaussians, path, metadata={"source": "a.png"})
    assert path.stat().st_size == size
    buf = io.BytesIO()
    write(gaussians, buf, metadata={"source": "a.png"})
    assert buf.getvalue() == path.read_bytes()
    buf.seek(0)
    assert read(buf).gaussians.equal(read(path).gaussians)
    info = peek(path)
    assert info.header.count == gaussians.count and info.metadata == {"source": "a.png"}
    assert peek(io.BytesIO(path.read_bytes())).header == info.header


def test_read_from_stream_stops_at_end_of_file(gaussians: GaussianImage) -> None:
    data = encode(gaussians)
    with pytest.raises(TrailingDataError):
        read(io.BytesIO(data + b"more"))


def test_metadata_round_trip_keeps_order_and_unicode(gaussians: GaussianImage) -> None:
    meta = {"source": "phötö.png", "psnr": "31.25", "empty": ""}
    assert list(decode(encode(gaussians, metadata=meta)).metadata.items()) == list(meta.items())


@pytest.mark.parametrize("meta", [{"": "x"}, {"k" * 256: "x"}, {"k": "v" * 70000}])
def test_writer_rejects_bad_metadata(gaussians: GaussianImage, meta: dict) -> None:
    with pytest.raises((MetadataError, LimitError)):
        encode(gaussians, metadata=meta)


def test_writer_rejects_too_many_metadata_entries(gaussians: GaussianImage) -> None:
    with pytest.raises(LimitError):
        encode(gaussians, metadata={f"k{i}": "" for i in range(300)})


def test_float16_overflow_is_refused() -> None:
    g = GaussianImage(8, 8, torch.tensor([[1.0, 1.0]]), torch.tensor([[1.0, 0.0, 1.0]]), torch.tensor([[1e6, 0, 0]]))
    with pytest.raises(ParameterError):
        encode(g, mode="float16")


# --- one test per error class -------------------------------------------------------------------------------

@pytest.fixture
def valid(gaussians: GaussianImage) -> bytes:
    return encode(gaussians, metadata={"source": "x"})


def test_not_gsi(valid: bytes) -> None:
    with pytest.raises(NotGsiError):
        decode(b"\x89PNG\r\n\x1a\n" + valid[8:])
    with pytest.raises(TruncatedError):
        decode(b"")


def test_unsupported_version(valid: bytes) -> None:
    with pytest.raises(UnsupportedVersionError):
        decode(valid[:4] + b"\x00" + valid[5:])


def test_truncated(valid: bytes) -> None:
    for cut in (3, 10, HEADER_SIZE, len(valid) - 1):
        with pytest.raises(TruncatedError):
            decode(valid[:cut])


def test_header_error(valid: bytes) -> None:
    b = bytearray(valid)
    b[5] = 3
    with pytest.raises(HeaderError):
        decode(fix_crc(b))


def test_limit_error(valid: bytes) -> None:
    b = bytearray(valid)
    struct.pack_into("<H", b, 6, 16385)
    with pytest.raises(LimitError):
        decode(fix_crc(b))
    b = bytearray(valid)
    struct.pack_into("<I", b, 16, 64 * 64 + 4097)
    with pytest.raises(LimitError):
        decode(fix_crc(b))


def test_trailing_data(valid: bytes) -> None:
    with pytest.raises(TrailingDataError):
        decode(valid + b"\0")


def test_checksum(valid: bytes) -> None:
    b = bytearray(valid)
    b[HEADER_SIZE + 3] ^= 1
    with pytest.raises(ChecksumError):
        decode(bytes(b))


@pytest.mark.parametrize("meta", [b"\x00\x00\x00", b"\x01k\x05\x00ab", b"\x01\xff\x00\x00",
                                  b"\x01k\x00\x00\x01k\x00\x00"])
def test_metadata_error(gaussians: GaussianImage, meta: bytes) -> None:
    data = encode(gaussians)
    b = bytearray(data[:HEADER_SIZE]) + meta + data[HEADER_SIZE:]
    struct.pack_into("<H", b, 14, len(meta))
    with pytest.raises(MetadataError):
        decode(fix_crc(b))


def test_stream_error(valid: bytes) -> None:
    meta_len = struct.unpack_from("<H", valid, 14)[0]
    at = HEADER_SIZE + meta_len + QUANT_TABLE_SIZE
    b = bytearray(valid)
    struct.pack_into("<I", b, at + 1, struct.unpack_from("<I", b, at + 1)[0] + 1)
    with pytest.raises(StreamError):
        decode(fix_crc(b))


def test_parameter_error_for_position_outside_image(gaussians: GaussianImage) -> None:
    qg = quantize(gaussians)
    ix = qg.ix.copy()
    ix[-1] = 4 * qg.width + 1  # the last Gaussian has the largest Morton code; push it past the right edge
    bad = QuantizedGaussians(qg.width, qg.height, qg.position_bits, qg.color_transform,
                             ix, qg.iy, qg.offsets, qg.steps, qg.codes)
    data = encode(bad)
    with pytest.raises(ParameterError):
        decode(data)


def test_every_error_is_a_gsi_error_and_value_error() -> None:
    for cls in (ChecksumError, HeaderError, LimitError, MetadataError, NotGsiError, ParameterError, StreamError,
                TrailingDataError, TruncatedError, UnsupportedVersionError, WriteError):
        assert issubclass(cls, GsiError) and issubclass(cls, ValueError)


# --- atomic writes ------------------------------------------------------------------------------------------

def test_failed_write_keeps_previous_file_and_leaves_no_temp(tmp_path, gaussians: GaussianImage, monkeypatch) -> None:
    path = tmp_path / "a.gsi"
    write(gaussians, path)
    before = path.read_bytes()

    def disk_full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(WriteError, match="No space left"):
        write(random_gaussians(seed=5), path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.gsi"]


def test_write_to_missing_folder_is_a_write_error(tmp_path, gaussians: GaussianImage) -> None:
    with pytest.raises(WriteError):
        write(gaussians, tmp_path / "missing" / "a.gsi")


def test_default_file_is_smaller_than_float16(gaussians: GaussianImage) -> None:
    assert len(encode(gaussians)) < len(encode(gaussians, mode="float16")) < len(encode(gaussians, mode="float32"))


def test_atomic_write_gives_normal_permissions(tmp_path, gaussians: GaussianImage) -> None:
    path = tmp_path / "a.gsi"
    old = os.umask(0o022)
    try:
        write(gaussians, path)
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644
    path.chmod(0o600)
    write(gaussians, path)
    assert path.stat().st_mode & 0o777 == 0o600, "rewriting keeps the existing file's mode"
