"""Regenerate the golden vectors in this folder (run only when the format changes).

    python spec/vectors/generate.py

Each ``NAME.gsi`` gets ``NAME.json`` (header fields, metadata, every decoded
parameter as exact float32 hex, SHA-256 of the decoded RGB8 pixels) and
``NAME.png`` (the reference decode). ``invalid/`` holds malformed files and
``invalid/expected.json`` the error each must raise.
"""

from __future__ import annotations

import hashlib
import json
import struct
import sys
import zlib
from pathlib import Path

import numpy as np
import torch
from PIL import Image

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

import gscodec  # noqa: E402
from gscodec.format.header import HEADER_SIZE  # noqa: E402
from gscodec.format.payload import QUANT_TABLE_SIZE  # noqa: E402
from gscodec.quantize import COLOR_RGB, Quantization  # noqa: E402


def _random_gaussians(width: int, height: int, n: int, seed: int, spread: float = 1.0) -> gscodec.GaussianImage:
    gen = torch.Generator().manual_seed(seed)
    means = torch.rand(n, 2, generator=gen) * torch.tensor([width, height]) * spread
    base = (width * height / max(n, 1)) ** 0.5
    l11 = base * (0.3 + torch.rand(n, generator=gen))
    l22 = base * (0.3 + torch.rand(n, generator=gen))
    l21 = base * 0.5 * torch.randn(n, generator=gen)
    colors = torch.rand(n, 3, generator=gen) * 0.6 - 0.05
    return gscodec.GaussianImage(width, height, means, torch.stack([l11, l21, l22], 1), colors)


def _hex(t: torch.Tensor) -> list[list[str]]:
    return [[float(v).hex() for v in row] for row in t.numpy().astype(np.float64)]


def describe(path: Path, note: str) -> dict:
    data = path.read_bytes()
    f = gscodec.decode(data)
    pixels = gscodec.render(f.gaussians, backend="torch")
    Image.fromarray(pixels).save(path.with_suffix(".png"))
    h = f.header
    return {
        "file": path.name,
        "note": note,
        "file_size": len(data),
        "header": {"version": h.version, "mode": int(h.mode), "width": h.width, "height": h.height,
                   "count": h.count, "metadata_length": h.metadata_length, "payload_length": h.payload_length},
        "metadata": f.metadata,
        "means": _hex(f.gaussians.means),
        "chol": _hex(f.gaussians.chol),
        "colors": _hex(f.gaussians.colors),
        "decoded_sha256": hashlib.sha256(pixels.tobytes()).hexdigest(),
        "decoded_png": path.with_suffix(".png").name,
    }


def _fix_crc(data: bytearray) -> bytes:
    data[-4:] = zlib.crc32(bytes(data[:-4])).to_bytes(4, "little")
    return bytes(data)


def invalid_cases(valid: bytes) -> dict[str, tuple[bytes, str]]:
    """Malformed variants of a valid quantized file: name -> (bytes, expected error class)."""
    meta_len = struct.unpack_from("<H", valid, 14)[0]
    payload_at = HEADER_SIZE + meta_len
    cases: dict[str, tuple[bytes, str]] = {}
    cases["bad-magic"] = (b"\x89PNG" + valid[4:], "NotGsiError")
    cases["version-2"] = (valid[:4] + b"\x02" + valid[5:], "UnsupportedVersionError")
    cases["short-header"] = (valid[:11], "TruncatedError")
    cases["truncated"] = (valid[:-7], "TruncatedError")
    cases["trailing-byte"] = (valid + b"\x00", "TrailingDataError")
    cases["bad-crc"] = (valid[:-1] + bytes([valid[-1] ^ 0xFF]), "ChecksumError")
    b = bytearray(valid); b[5] = 7
    cases["unknown-mode"] = (_fix_crc(b), "HeaderError")
    b = bytearray(valid); struct.pack_into("<H", b, 6, 0)
    cases["zero-width"] = (_fix_crc(b), "HeaderError")
    b = bytearray(valid); struct.pack_into("<H", b, 8, 20000)
    cases["height-over-limit"] = (_fix_crc(b), "LimitError")
    b = bytearray(valid); struct.pack_into("<I", b, 10, 0xFFFFFFFF)
    cases["count-over-limit"] = (_fix_crc(b), "LimitError")
    b = bytearray(valid); struct.pack_into("<I", b, 16, 0xFFFFFFF0)
    cases["huge-payload-length"] = (_fix_crc(b), "LimitError")
    b = bytearray(valid); b[HEADER_SIZE] = 250
    cases["metadata-overrun"] = (_fix_crc(b), "MetadataError")
    b = bytearray(valid); b[payload_at] = 9
    cases["position-bits-9"] = (_fix_crc(b), "HeaderError")
    b = bytearray(valid); struct.pack_into("<f", b, payload_at + 6, float("nan"))
    cases["nan-step"] = (_fix_crc(b), "HeaderError")
    b = bytearray(valid); b[payload_at + QUANT_TABLE_SIZE] = 0
    cases["zero-frames"] = (_fix_crc(b), "StreamError")
    frames_at = payload_at + QUANT_TABLE_SIZE
    b = bytearray(valid); b[frames_at + 1 + 4 * b[frames_at] + 1] ^= 0x55  # the first frame's magic number
    cases["corrupt-zstd"] = (_fix_crc(b), "StreamError")
    b = bytearray(valid); struct.pack_into("<I", b, 10, struct.unpack_from("<I", b, 10)[0] + 1)
    cases["count-plus-one"] = (_fix_crc(b), "StreamError")
    b = bytearray(valid); struct.pack_into("<f", b, payload_at + 2, 1e30)
    cases["scale-overflow"] = (_fix_crc(b), "ParameterError")
    return cases


def main() -> None:
    notes = {}
    g = gscodec.GaussianImage(8, 8, torch.zeros(0, 2), torch.zeros(0, 3), torch.zeros(0, 3))
    gscodec.write(g, HERE / "empty-float32.gsi", mode="float32")
    notes["empty-float32.gsi"] = "no Gaussians: decodes to black"
    g = gscodec.GaussianImage(16, 12, torch.tensor([[7.25, 5.5]]), torch.tensor([[3.0, 1.5, 2.0]]),
                              torch.tensor([[0.9, 0.5, -0.1]]))
    gscodec.write(g, HERE / "single-float32.gsi", mode="float32", metadata={"source": "single"})
    notes["single-float32.gsi"] = "one anisotropic Gaussian, a negative colour channel clamps to 0"
    gscodec.write(_random_gaussians(32, 24, 20, 1, spread=1.2), HERE / "small-float16.gsi", mode="float16")
    notes["small-float16.gsi"] = "float16 mode, some means off the image"
    gscodec.write(_random_gaussians(48, 32, 64, 2), HERE / "small-quantized.gsi",
                  metadata={"source": "random.png", "psnr": "31.00", "note": "ünïcode ✓"})
    notes["small-quantized.gsi"] = "quantized mode with the default bits (YCoCg, 1/4 px) and metadata"
    gscodec.write(_random_gaussians(40, 40, 50, 3), HERE / "rgb-wide-quantized.gsi",
                  quantization=Quantization(position_bits=0, scale_bits=12, shear_bits=10, color_bits=11,
                                            chroma_bits=11, color_transform=COLOR_RGB))
    notes["rgb-wide-quantized.gsi"] = "quantized RGB, integer positions, wide codes (many extra bits)"
    vectors = [describe(HERE / name, note) for name, note in notes.items()]
    (HERE / "vectors.json").write_text(json.dumps(vectors, indent=1, ensure_ascii=False) + "\n")

    invalid = HERE / "invalid"
    invalid.mkdir(exist_ok=True)
    expected = {}
    for name, (data, error) in invalid_cases((HERE / "small-quantized.gsi").read_bytes()).items():
        (invalid / f"{name}.gsi").write_bytes(data)
        expected[f"{name}.gsi"] = error
    (invalid / "expected.json").write_text(json.dumps(expected, indent=1) + "\n")


if __name__ == "__main__":
    main()
