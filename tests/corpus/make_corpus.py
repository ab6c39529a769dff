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


def gsi(mode: int, width: int, height: int, count: int, payload: bytes, meta: bytes = b"") -> bytes:
    body = struct.pack("<4sBBHHIHI", MAGIC, 1, mode, width, height, count, len(meta), len(payload)) + meta + payload
    return body + zlib.crc32(body).to_bytes(4, "little")


def frames(*chunks: bytes) -> bytes:
    return struct.pack(f"<B{len(chunks)}I", len(chunks), *map(len, chunks)) + b"".join(chunks)


def zframe(data: bytes, content_size: bool = True) -> bytes:
    return zstandard.ZstdCompressor(level=3, write_content_size=content_size, write_checksum=False).compress(data)


def quant_table(pos_bytes: int = 1, offset: float = 0.0, step: float = 0.0625) -> bytes:
    return struct.pack("<BBB", 2, 1, pos_bytes) + struct.pack("<ffB", offset, step, 1) * 6


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
    # quantized: Morton deltas that run far past the image, exp2 underflow to a zero scale
    raw = bytes([0xFF] * 5) + bytes(1 + 6)  # 5-byte pixel delta, fraction, six fields
    cases["morton-far-outside"] = (gsi(2, 8, 8, 1, quant_table(pos_bytes=5) + frames(zframe(raw))), "ParameterError")
    raw = bytes(1 + 1 + 6)
    cases["scale-underflow"] = (gsi(2, 8, 8, 1, quant_table(offset=-400.0) + frames(zframe(raw))), "ParameterError")
    cases["negative-step"] = (gsi(2, 8, 8, 1, quant_table(step=-1.0) + frames(zframe(raw))), "HeaderError")
    raw = bytes(1) + bytes([0x10]) + bytes(6)  # fraction 16 needs 5 bits; p = 2 allows 4
    cases["position-fraction-too-wide"] = (gsi(2, 8, 8, 1, quant_table() + frames(zframe(raw))), "ParameterError")
    cases["quant-table-truncated"] = (gsi(2, 8, 8, 1, quant_table()[:20]), "TruncatedError")
    # metadata: 300 empty-valued entries, and a key that is not UTF-8
    meta = b"".join(b"\x02" + f"{i:02x}".encode() + b"\x00\x00" for i in range(300))
    cases["metadata-300-entries"] = (gsi(0, 8, 8, 0, frames(zframe(b"")), meta), "MetadataError")
    cases["metadata-bad-utf8"] = (gsi(0, 8, 8, 0, frames(zframe(b"")), b"\x02\xc3\x28\x00\x00"), "MetadataError")
    cases["sixteen-empty-frames-short"] = (gsi(0, 8, 8, 1, frames(*[zframe(b"")] * 16)), "StreamError")
    cases["seventeen-frames"] = (gsi(0, 8, 8, 1, frames(*[zframe(b"")] * 17)), "StreamError")
    expected = {}
    for name, (data, error) in cases.items():
        (HERE / f"{name}.gsi").write_bytes(data)
        expected[f"{name}.gsi"] = error
    (HERE / "expected.json").write_text(json.dumps(expected, indent=1) + "\n")


if __name__ == "__main__":
    main()
