"""Regenerate the regression corpus of hostile `.gsi` files (run by hand; the files are committed).

    python tests/corpus/make_corpus.py
"""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import numpy as np
import zstandard

HERE = Path(__file__).resolve().parent
MAGIC = b"\x89GSI"


def gsi(mode: int, width: int, height: int, count: int, payload: bytes, meta: bytes = b"", version: int = 1) -> bytes:
    body = struct.pack("<4sBBHHIHI", MAGIC, version, mode, width, height, count, len(meta), len(payload)) + meta + payload
    return body + zlib.crc32(body).to_bytes(4, "little")


def frames(*chunks: bytes) -> bytes:
    return struct.pack(f"<B{len(chunks)}I", len(chunks), *map(len, chunks)) + b"".join(chunks)


def zframe(data: bytes, content_size: bool = True) -> bytes:
    return zstandard.ZstdCompressor(level=3, write_content_size=content_size, write_checksum=False).compress(data)


def quant_table(offset: float = 0.0, step: float = 0.0625, config: int = 0x12) -> bytes:
    """p = 2, YCoCg, six fields alike, all seven token streams with split 2 and 1 mantissa bit."""
    return struct.pack("<BB", 2, 1) + struct.pack("<ff", offset, step) * 6 + bytes([config] * 7)


def v2_table(shift: int, coded_length: int, p: int = 2) -> bytes:
    """A version-2 table (spec 7.6): p, YCoCg, six fields alike, the delta shift and the coded length."""
    return struct.pack("<BB", p, 1) + struct.pack("<ff", 0.0, 0.0625) * 6 + struct.pack("<BI", shift, coded_length)


def v2(count: int, coded: bytes, raw: bytes, shift: int = 0, p: int = 2, coded_length: int | None = None) -> bytes:
    length = len(coded) if coded_length is None else coded_length
    return gsi(2, 8, 8, count, v2_table(shift, length, p) + coded + raw, version=2)


def main() -> None:
    cases: dict[str, tuple[bytes, str]] = {}
    # a zstd frame header declaring a 1 TiB content size (frame header descriptor: 8-byte size, single segment)
    huge = b"\x28\xb5\x2f\xfd" + bytes([0xE0]) + struct.pack("<Q", 1 << 40) + b"\x01\x00\x00"
    cases["zstd-declares-1tib"] = (gsi(0, 8, 8, 2, frames(huge)), "StreamError")
    cases["zstd-unknown-content-size"] = (gsi(0, 8, 8, 1, frames(zframe(bytes(32), content_size=False))), "StreamError")
    cases["zstd-garbage"] = (gsi(0, 8, 8, 1, frames(b"\x28\xb5\x2f\xfd" + bytes(range(40)))), "StreamError")
    # frame lengths summing past the payload (u32 overflow bait)
    cases["frame-lengths-overflow"] = (gsi(0, 8, 8, 1, struct.pack("<B2I", 2, 0xFFFFFFFF, 0xFFFFFFFF)), "StreamError")
    cases["frame-table-truncated"] = (gsi(0, 8, 8, 1, struct.pack("<BI", 3, 10)), "TruncatedError")
    # a frame shorter than its slot: bytes after the frame's end inside the slot
    f = zframe(bytes(32)) + b"JUNK"
    cases["bytes-after-frame"] = (gsi(0, 8, 8, 1, frames(f)), "StreamError")
    # float payloads with NaN and with a zero scale
    vals = np.array([[1, 1, 1, 0, 1, 0.5, 0.5, 0.5]], dtype="<f4").T.copy()
    vals[0, 0] = np.nan
    planes = np.ascontiguousarray(vals.view(np.uint8).reshape(8, 4).reshape(8, 1, 4).transpose(0, 2, 1)).tobytes()
    cases["float32-nan"] = (gsi(0, 8, 8, 1, frames(zframe(planes))), "ParameterError")
    vals[0, 0] = 1.0
    vals[2, 0] = 0.0
    planes = np.ascontiguousarray(vals.view(np.uint8).reshape(8, 1, 4).transpose(0, 2, 1)).tobytes()
    cases["float32-zero-scale"] = (gsi(0, 8, 8, 1, frames(zframe(planes))), "ParameterError")
    # quantized (p = 2, one Gaussian: seven tokens, then extra bits with a 4-bit fraction)
    # pixel delta token 63 (the largest): 30 extra bits of ones, a Morton code far past the image
    tokens = bytes([63]) + bytes(6)
    extra = bytes([0xFF] * 3) + bytes([0x3F, 0x00])  # 30 ones, 4 fraction bits 0, 6 padding bits 0
    cases["morton-far-outside"] = (gsi(2, 8, 8, 1, quant_table() + frames(zframe(tokens)) + extra), "ParameterError")
    cases["token-too-large"] = (gsi(2, 8, 8, 1, quant_table() + frames(zframe(bytes([64]) + bytes(6))) + bytes(5)),
                                "ParameterError")
    cases["bad-token-config"] = (gsi(2, 8, 8, 1, quant_table(config=0x33) + frames(zframe(bytes(7))) + b"\x00"),
                                 "HeaderError")
    tokens = bytes(7)
    cases["scale-underflow"] = (gsi(2, 8, 8, 1, quant_table(offset=-400.0) + frames(zframe(tokens)) + b"\x00"),
                                "ParameterError")
    cases["negative-step"] = (gsi(2, 8, 8, 1, quant_table(step=-1.0) + frames(zframe(tokens)) + b"\x00"), "HeaderError")
    cases["extra-bits-missing"] = (gsi(2, 8, 8, 1, quant_table() + frames(zframe(tokens))), "TruncatedError")
    cases["extra-bits-trailing"] = (gsi(2, 8, 8, 1, quant_table() + frames(zframe(tokens)) + bytes(2)), "StreamError")
    cases["extra-bits-bad-padding"] = (gsi(2, 8, 8, 1, quant_table() + frames(zframe(tokens)) + b"\x10"), "StreamError")
    cases["quantized-frames-past-payload"] = (gsi(2, 8, 8, 1, quant_table() + struct.pack("<BI", 1, 1000) + bytes(8)),
                                              "StreamError")
    cases["quant-table-truncated"] = (gsi(2, 8, 8, 1, quant_table()[:20]), "TruncatedError")
    # metadata: 300 empty-valued entries, and a key that is not UTF-8
    meta = b"".join(b"\x02" + f"{i:02x}".encode() + b"\x00\x00" for i in range(300))
    cases["metadata-300-entries"] = (gsi(0, 8, 8, 0, frames(zframe(b"")), meta), "MetadataError")
    cases["metadata-bad-utf8"] = (gsi(0, 8, 8, 0, frames(zframe(b"")), b"\x02\xc3\x28\x00\x00"), "MetadataError")
    cases["sixteen-empty-frames-short"] = (gsi(0, 8, 8, 1, frames(*[zframe(b"")] * 16)), "StreamError")
    cases["seventeen-frames"] = (gsi(0, 8, 8, 1, frames(*[zframe(b"")] * 17)), "StreamError")
    # version 2 (range coder): a count of 2^22 with no raw bytes (the first fraction runs out at once), coded
    # bytes of all ones (V above R from the start), garbage, a huge coded length, a delta shift out of range
    cases["v2-count-bomb"] = (v2(1 << 22, b"", b""), "TruncatedError")
    cases["v2-coded-all-ones"] = (v2(40, b"\xff" * 64, bytes(64)), "TruncatedError")
    cases["v2-coded-garbage"] = (v2(30, bytes(range(1, 256)), bytes(range(200))), "StreamError")
    cases["v2-coded-length-huge"] = (v2(1, b"\x01", b"", coded_length=0xFFFFFFFF), "TruncatedError")
    cases["v2-delta-shift-255"] = (v2(1, b"\x01", b"", shift=255), "HeaderError")
    cases["v2-float-mode"] = (gsi(0, 8, 8, 1, frames(zframe(bytes(32))), version=2), "HeaderError")
    expected = {}
    for name, (data, error) in cases.items():
        (HERE / f"{name}.gsi").write_bytes(data)
        expected[f"{name}.gsi"] = error
    (HERE / "expected.json").write_text(json.dumps(expected, indent=1) + "\n")


if __name__ == "__main__":
    main()
