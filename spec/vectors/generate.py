"""Regenerate the golden vectors in this folder (run only when the format or a vector changes).

    python spec/vectors/generate.py

Writes each valid ``NAME.gsi`` with ``NAME.png`` (the reference decode at the
stored size) and ``NAME@WxH.png`` for each extra render size, and one
``vectors.json`` describing all of them; ``invalid/`` gets the malformed files
and ``invalid/expected.json`` (error class and spec check of each).
``README.md`` documents every field. Files are built byte by byte here where
the gscodec writer would never produce them (several frames, forced token
configs, hand-made zstd frames), so the vectors pin the spec, not the writer.
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
import zstandard
from PIL import Image

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

import gscodec  # noqa: E402
from gscodec.format.rangecoder import choose_delta_shift, decode_symbols, encode_symbols  # noqa: E402
from gscodec.format.tokens import pack_bits, tokenize  # noqa: E402
from gscodec.quantize import (COLOR_RGB, COLOR_YCOCG, Quantization, QuantizedGaussians,  # noqa: E402
                              morton_encode, quantize)

MAGIC = b"\x89GSI"
FLOAT32, FLOAT16, QUANTIZED = 0, 1, 2
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


# ---- bytes of a file ---------------------------------------------------------------------------

def file_bytes(mode: int, width: int, height: int, count: int, meta: bytes, payload: bytes, *,
               version: int = 1) -> bytes:
    """A whole file: header, metadata, payload and a correct CRC-32."""
    body = struct.pack("<4sBBHHIHI", MAGIC, version, mode, width, height, count, len(meta), len(payload))
    body += meta + payload
    return body + zlib.crc32(body).to_bytes(4, "little")


def fix_crc(data: bytes | bytearray) -> bytes:
    data = bytearray(data)
    data[-4:] = zlib.crc32(bytes(data[:-4])).to_bytes(4, "little")
    return bytes(data)


def meta_bytes(entries: list[tuple[bytes, bytes]]) -> bytes:
    return b"".join(struct.pack("<B", len(k)) + k + struct.pack("<H", len(v)) + v for k, v in entries)


def zframe(chunk: bytes) -> bytes:
    """A zstd frame as gscodec writes it (level 22, content size, no checksum)."""
    return zstandard.ZstdCompressor(level=22, write_content_size=True, write_checksum=False,
                                    write_dict_id=False).compress(chunk)


def raw_frame(content: bytes, *, single_segment: bool = True, fcs: int | None = None, fcs_flag: int | None = None,
              window_exp: int = 0, dict_flag: int = 0, dict_id: int = 0, checksum: bool = False,
              reserved: bool = False, blocks: list[tuple[int, bytes, int]] | None = None) -> bytes:
    """A hand-made zstd frame (RFC 8878 3.1.1) of raw blocks, header fields chosen freely.

    ``blocks``: ``(type, data, size)`` per block (type 0 raw, 1 RLE), default one raw block of ``content``.
    """
    fcs = len(content) if fcs is None else fcs
    if fcs_flag is None:
        fcs_flag = 0 if (single_segment and fcs < 256) else 1 if 256 <= fcs < 65536 + 256 else 2
    fhd = fcs_flag << 6 | int(single_segment) << 5 | int(reserved) << 3 | int(checksum) << 2 | dict_flag
    out = bytearray(ZSTD_MAGIC) + bytes([fhd])
    if not single_segment:
        out.append(window_exp << 3)
    out += dict_id.to_bytes({0: 0, 1: 1, 2: 2, 3: 4}[dict_flag], "little")
    size = {0: int(single_segment), 1: 2, 2: 4, 3: 8}[fcs_flag]
    out += (fcs - 256 if fcs_flag == 1 else fcs).to_bytes(size, "little") if size else b""
    blocks = [(0, content, len(content))] if blocks is None else blocks
    for i, (kind, data, n) in enumerate(blocks):
        last = int(i == len(blocks) - 1)
        out += (last | kind << 1 | n << 3).to_bytes(3, "little") + data
    if checksum:
        out += b"\0\0\0\0"
    return bytes(out)


def frame_table(frames: list[bytes]) -> bytes:
    return struct.pack(f"<B{len(frames)}I", len(frames), *(len(f) for f in frames)) + b"".join(frames)


def cut(raw: bytes, points: list[int]) -> list[bytes]:
    """``raw`` cut at ``points`` (offsets, non-decreasing: equal offsets make empty pieces)."""
    edges = [0, *points, len(raw)]
    return [raw[a:b] for a, b in zip(edges, edges[1:])]


def float_raw(means: np.ndarray, chol: np.ndarray, colors: np.ndarray, dtype: str) -> bytes:
    """The raw body of a float payload: eight fields as byte planes (spec section 6)."""
    fields = np.ascontiguousarray(np.concatenate([means, chol, colors], axis=1).T.astype(dtype))
    return b"".join(np.ascontiguousarray(f.view(np.uint8).reshape(-1, f.itemsize).T).tobytes() for f in fields)


def float_file(width: int, height: int, means, chol, colors, *, dtype: str = "<f4", meta: bytes = b"",
               frames: list[bytes] | None = None) -> bytes:
    raw = float_raw(np.asarray(means, np.float64).reshape(-1, 2), np.asarray(chol, np.float64).reshape(-1, 3),
                    np.asarray(colors, np.float64).reshape(-1, 3), dtype)
    payload = frame_table(frames if frames is not None else [zframe(raw)])
    return file_bytes(FLOAT32 if dtype == "<f4" else FLOAT16, width, height, len(raw) // (8 * np.dtype(dtype).itemsize),
                      meta, payload)


def zigzag(q: np.ndarray) -> np.ndarray:
    q = q.astype(np.int64)
    return ((q << 1) ^ (q >> 63)).astype(np.uint64)


class Quantized:
    """The parts of a quantized payload, each open to tampering before :meth:`payload` joins them."""

    def __init__(self, qg: QuantizedGaussians, configs: list[int] | None = None, order_check: bool = True) -> None:
        p = qg.position_bits
        self.p, self.transform, self.count = p, qg.color_transform, qg.count
        self.offsets = [float(v) for v in qg.offsets]
        self.steps = [float(v) for v in qg.steps]
        pixel = morton_encode(qg.ix >> p, qg.iy >> p).astype(np.uint64)
        if order_check:
            assert np.all(np.diff(pixel.astype(np.int64)) >= 0), "pixel codes must be non-decreasing"
        deltas = np.diff(pixel, prepend=np.uint64(0)) if pixel.size else pixel
        mask = (1 << p) - 1
        fraction = morton_encode(qg.ix & mask, qg.iy & mask).astype(np.uint64)
        values = [deltas] + [zigzag(qg.codes[f]) for f in range(6)]
        if configs is None:
            from gscodec.format.tokens import choose_config
            configs = [choose_config(v) for v in values]
        self.configs = list(configs)
        coded = [tokenize(v, c) for v, c in zip(values, self.configs)]
        self.tokens = np.stack([c[0] for c in coded]) if self.count else np.zeros((7, 0), np.uint8)
        ev = [coded[0][1], fraction] + [c[1] for c in coded[1:]]
        eb = [coded[0][2], np.full(self.count, 2 * p, dtype=np.int64)] + [c[2] for c in coded[1:]]
        self.extra_values, self.extra_widths = np.concatenate(ev), np.concatenate(eb)
        self.extra = pack_bits(self.extra_values, self.extra_widths)
        self.frames: list[bytes] | None = None

    def table(self) -> bytes:
        out = struct.pack("<BB", self.p, self.transform)
        for o, s in zip(self.offsets, self.steps):
            out += struct.pack("<ff", o, s)
        return out + bytes(self.configs)

    def raw(self) -> bytes:
        return self.tokens.tobytes()

    def payload(self) -> bytes:
        frames = self.frames if self.frames is not None else [zframe(self.raw())]
        return self.table() + frame_table(frames) + self.extra

    def file(self, width: int, height: int, meta: bytes = b"", count: int | None = None) -> bytes:
        return file_bytes(QUANTIZED, width, height, self.count if count is None else count, meta, self.payload())


class QuantizedV2:
    """The parts of a version-2 quantized payload (spec 7.6), each open to tampering before :meth:`payload`."""

    def __init__(self, qg: QuantizedGaussians, shift: int | None = None, deltas: np.ndarray | None = None) -> None:
        p = qg.position_bits
        self.p, self.transform, self.count = p, qg.color_transform, qg.count
        self.offsets = [float(v) for v in qg.offsets]
        self.steps = [float(v) for v in qg.steps]
        if deltas is None:
            pixel = morton_encode(qg.ix >> p, qg.iy >> p).astype(np.uint64)
            deltas = np.diff(pixel, prepend=np.uint64(0)) if pixel.size else pixel
        mask = (1 << p) - 1
        fraction = morton_encode(qg.ix & mask, qg.iy & mask).astype(np.uint64)
        if shift is None:
            self.shift, self.coded, self.raw = choose_delta_shift(deltas, fraction, qg.codes, 2 * p)
        else:
            self.shift = shift
            self.coded, self.raw = encode_symbols(deltas, fraction, qg.codes, 2 * p, shift)
        self.consumed = decode_symbols(self.coded, self.raw, self.count, 2 * p, self.shift)[3]
        self.coded_length: int | None = None

    def payload(self) -> bytes:
        out = struct.pack("<BB", self.p, self.transform)
        for o, s in zip(self.offsets, self.steps):
            out += struct.pack("<ff", o, s)
        length = len(self.coded) if self.coded_length is None else self.coded_length
        return out + struct.pack("<BI", self.shift, length) + self.coded + self.raw

    def file(self, width: int, height: int, meta: bytes = b"", count: int | None = None) -> bytes:
        return file_bytes(QUANTIZED, width, height, self.count if count is None else count, meta, self.payload(),
                          version=2)


def qg_from(width: int, height: int, p: int, transform: int, ix, iy, offsets, steps, codes) -> QuantizedGaussians:
    return QuantizedGaussians(width, height, p, transform, np.asarray(ix, np.int64), np.asarray(iy, np.int64),
                              np.asarray(offsets, np.float32), np.asarray(steps, np.float32),
                              np.asarray(codes, np.int64).reshape(6, -1))


# ---- valid vectors -----------------------------------------------------------------------------

def _random_gaussians(width: int, height: int, n: int, seed: int, spread: float = 1.0) -> gscodec.GaussianImage:
    gen = torch.Generator().manual_seed(seed)
    means = torch.rand(n, 2, generator=gen) * torch.tensor([width, height]) * spread
    base = (width * height / max(n, 1)) ** 0.5
    l11 = base * (0.3 + torch.rand(n, generator=gen))
    l22 = base * (0.3 + torch.rand(n, generator=gen))
    l21 = base * 0.5 * torch.randn(n, generator=gen)
    colors = torch.rand(n, 3, generator=gen) * 0.6 - 0.05
    return gscodec.GaussianImage(width, height, means, torch.stack([l11, l21, l22], 1), colors)


def _widest() -> tuple[QuantizedGaussians, int, int]:
    """Five Gaussians on the widest image (``MAX_DIMENSION`` x 2) at position_bits 4, one at ix = 2^18 (the
    right edge): ``(gaussians, width, height)``, shared by the version-1 and version-2 vectors."""
    w, h = gscodec.limits.MAX_DIMENSION, 2
    ix = np.array([0, 3000 * 16 + 5, 8192 * 16 + 3, 16000 * 16 + 15, w * 16])
    iy = np.array([16, 0, 31, 8, 32])
    order = np.argsort(morton_encode(ix, iy), kind="stable")
    codes = np.array([[0, 1, 2, -1, 40], [0, -2, 1, 3, 0], [0, 1, -1, 2, -3], [0, 5, -5, 10, 0], [0, 1, -1, 2, 3],
                      [0, -1, 2, 1, 0]])
    qg = qg_from(w, h, 4, COLOR_YCOCG, ix[order], iy[order], [3.0, 0.0, 0.0, 0.5, 0.0, 0.0],
                 [0.0625, 0.125, 0.125, 0.0625, 0.03125, 0.03125], codes[:, order])
    return qg, w, h


def valid_vectors() -> list[tuple[str, bytes, str, list[tuple[int, int]]]]:
    """``(name, bytes, note, extra render sizes)`` of every valid vector."""
    out = []

    def enc(*args, **kwargs) -> bytes:  # the version-1 vectors stay version 1
        return gscodec.encode(*args, version=1, **kwargs)

    g = gscodec.GaussianImage(8, 8, torch.zeros(0, 2), torch.zeros(0, 3), torch.zeros(0, 3))
    out.append(("empty-float32", enc(g, mode="float32"), "no Gaussians: decodes to black", []))
    g = gscodec.GaussianImage(16, 12, torch.tensor([[7.25, 5.5]]), torch.tensor([[3.0, 1.5, 2.0]]),
                              torch.tensor([[0.9, 0.5, -0.1]]))
    out.append(("single-float32", enc(g, mode="float32", metadata={"source": "single"}),
                "one anisotropic Gaussian, a negative colour channel clamps to 0; also rendered at 40x30", [(40, 30)]))
    out.append(("small-float16", enc(_random_gaussians(32, 24, 20, 1, spread=1.2), mode="float16"),
                "float16 mode, some means off the image; also rendered at 16x12 (downscale)", [(16, 12)]))
    out.append(("small-quantized", enc(_random_gaussians(48, 32, 64, 2),
                                       metadata={"source": "random.png", "psnr": "31.00", "note": "ünïcode ✓"}),
                "quantized mode with the default bits (YCoCg, 1/4 px) and metadata; also rendered at 96x64 "
                "and 31x17 (another aspect ratio)", [(96, 64), (31, 17)]))
    out.append(("rgb-wide-quantized", enc(_random_gaussians(40, 40, 50, 3),
                                          quantization=Quantization(position_bits=0, scale_bits=12, shear_bits=10,
                                                                    color_bits=11, chroma_bits=11,
                                                                    color_transform=COLOR_RGB)),
                "quantized RGB, integer positions (p = 0), wide codes (many extra bits)", []))

    empty = Quantized(qg_from(8, 4, 2, COLOR_YCOCG, [], [], [0] * 6, [1] * 6, np.zeros((6, 0))), configs=[0x07] * 7)
    out.append(("empty-quantized", empty.file(8, 4), "quantized mode with no Gaussians: one frame of empty "
                "content, no extra bits", []))

    for p, seed in ((1, 11), (3, 13)):
        q = Quantization(position_bits=p)
        out.append((f"p{p}-quantized", enc(_random_gaussians(24, 20, 30, seed), quantization=q),
                    f"quantized with position_bits {p} (1/{2 ** p} px)", []))

    # p = 4 with positions on every edge: (0, 0), the right and bottom edges (ix = width * 16), both corners
    w, h, p = 24, 16, 4
    g = _random_gaussians(w, h, 36, 14)
    qg = quantize(g, Quantization(position_bits=p))
    ix, iy = qg.ix.copy(), qg.iy.copy()
    ix[:4] = [0, w * 16, 0, w * 16]
    iy[:4] = [0, 0, h * 16, h * 16]
    order = np.argsort(morton_encode(ix, iy), kind="stable")
    qg = qg_from(w, h, p, qg.color_transform, ix[order], iy[order], qg.offsets, qg.steps, qg.codes[:, order])
    out.append(("p4-edges-quantized", Quantized(qg).file(w, h),
                "position_bits 4 with Gaussians at (0, 0), on the right and bottom edges and at the far corner "
                "(ix = width * 16, iy = height * 16: the largest positions allowed)", [(12, 8)]))

    # the widest image: MAX_DIMENSION x 2 at p = 4, a Gaussian at ix = 16384 * 16 = 2^18
    qg, w, h = _widest()
    assert qg.count == 5
    out.append(("widest-quantized", Quantized(qg).file(w, h),
                f"the largest width ({w}) at position_bits 4, a Gaussian at ix = 2^18 (the right edge)", []))

    # 16 frames (the limit), cut inside fields, of every kind: zstd-compressed, raw-block, RLE-block, empty
    g = _random_gaussians(20, 16, 12, 4)
    raw = float_raw(g.means, g.chol, g.colors, "<f4")
    pieces = cut(raw, [7, 7, 50, 99, 130, 131, 200, 201, 250, 300, 301, 302, 333, 380, 381])
    frames = []
    for i, piece in enumerate(pieces):
        if i % 3 == 0:
            frames.append(zframe(piece))
        elif i % 3 == 1:
            frames.append(raw_frame(piece, single_segment=(i % 2 == 1)))
        elif len(set(piece)) == 1:
            frames.append(raw_frame(piece, blocks=[(1, piece[:1], len(piece))]))
        else:  # a raw block, then an RLE block of the piece's last byte run
            k = len(piece) - 1
            frames.append(raw_frame(piece, blocks=[(0, piece[:k], k), (1, piece[k:], 1)]))
    assert len(frames) == 16 and any(len(p) == 0 for p in pieces)
    out.append(("frames-float32", float_file(20, 16, g.means, g.chol, g.colors, frames=frames),
                "float32 in 16 frames (the limit) cut inside fields: zstd-compressed frames, raw-block frames with "
                "and without Single_Segment_flag, RLE blocks, an empty frame", []))

    g = _random_gaussians(24, 24, 100, 7)
    raw = float_raw(g.means, g.chol, g.colors, "<f4")
    out.append(("window-small-float32",
                float_file(24, 24, g.means, g.chol, g.colors,
                           frames=[raw_frame(raw, single_segment=False, fcs_flag=1, window_exp=0)]),
                "one raw block of 3200 bytes in a frame whose Window_Size is 1 KiB (allowed: blocks may exceed "
                "the window up to 128 KiB)", []))

    qg = quantize(_random_gaussians(36, 28, 40, 5))
    qz = Quantized(qg)
    raw = qz.raw()
    qz.frames = [zframe(pc) for pc in cut(raw, [17, 17, 100, 201])] + [raw_frame(b"")]
    out.append(("frames-quantized", qz.file(36, 28),
                "quantized token streams in 6 frames cut inside streams, two of them empty", []))

    # token configs forced to cover m = 0, 1, 2 and s = 0 .. 7, codes at the extremes (u = 2^32 - 1: MAX_TOKEN)
    w, h = 32, 24
    rng = np.random.default_rng(6)
    n = 24
    ix = np.sort(rng.integers(0, w * 4 + 1, n))
    iy = rng.integers(0, h * 4 + 1, n)
    order = np.argsort(morton_encode(ix, iy), kind="stable")
    ix, iy = ix[order], iy[order]
    codes = rng.integers(-40, 41, (6, n))
    lo, hi = -(1 << 31), (1 << 31) - 1
    codes[2, :4] = [lo, hi, lo + 1, 1 << 30]
    codes[4, :4] = [hi, lo, 0, -(1 << 30)]
    codes[5, :3] = [lo, -1, 1]
    steps = [1 / 16, 1 / 16, 2.0 ** -30, 1 / 64, 2.0 ** -33, 2.0 ** -33]
    offsets = [2.0, 2.0, 0.0, 0.3, 0.0, 0.0]
    qg = qg_from(w, h, 2, COLOR_YCOCG, ix, iy, offsets, steps, codes)
    configs = [0x12, 0x00, 0x11, 0x22, 0x07, 0x27, 0x25]  # (s, m) = (2,1) (0,0) (1,1) (2,2) (7,0) (7,2) (5,2)
    out.append(("tokens-quantized", Quantized(qg, configs=configs).file(w, h),
                "token configs (s, m) = (2,1), (0,0), (1,1), (2,2), (7,0), (7,2), (5,2); codes -2^31 and "
                "2^31 - 1 (u = 2^32 - 1 and 2^32 - 2: MAX_TOKEN with 29..31 extra bits)", []))

    # two Gaussians in one pixel with their fractions in decreasing order: allowed
    ix = np.array([5, 13, 12, 30])
    iy = np.array([6, 9, 8, 2])
    qg = qg_from(10, 8, 2, COLOR_RGB, ix, iy, [1.0, 1.0, 0.0, 0.2, 0.3, 0.1], [0.125, 0.125, 0.25, 0.05, 0.05, 0.05],
                 [[0, 3, -2, 1], [1, 0, 2, -1], [0, 1, -1, 2], [4, 5, 6, 7], [0, -1, 1, 2], [3, 2, 1, 0]])
    out.append(("unsorted-fractions-quantized", Quantized(qg, order_check=True).file(10, 8),
                "two Gaussians share pixel (3, 2) with fractions in decreasing order (13, 9 then 12, 8): "
                "readers accept any order within a pixel and keep it", []))

    # metadata at its limits: 256 entries, exactly 65535 bytes, a 255-byte key, empty values, BOM and NUL
    entries = [(b"k" * 255, "a 255-byte key".encode())]
    entries += [(f"key{i:03d}".encode(), b"") for i in range(1, 200)]
    entries += [("ключ-✓".encode(), "\ufeffBOM and NUL \x00 kept".encode()), (b"emoji", "🙂".encode())]
    while len(entries) < 255:
        entries.append((f"pad{len(entries):03d}".encode(), b"x"))
    used = len(meta_bytes(entries)) + 1 + 4 + 2
    entries.append((b"last", b"y" * (65535 - used)))
    meta = meta_bytes(entries)
    assert len(entries) == 256 and len(meta) == 65535
    out.append(("metadata-limits-float32",
                float_file(4, 4, [[2.0, 2.0]], [[1.0, 0.0, 1.0]], [[0.5, 0.25, 0.75]], meta=meta),
                "metadata at its limits: 256 entries in exactly 65535 bytes, a 255-byte key, empty values, "
                "non-ASCII keys, a value with a byte order mark and a NUL", []))

    # float edge values: subnormal and tiny scales, -0, far and negative means, huge colours
    tiny = float(np.float32(2.0 ** -140))  # subnormal in float32
    means = [[2.5, 1.5], [-1e6, 3.0], [1e30, -1e30], [4.5, 3.5], [-2.0, -3.0], [7.5, 0.5]]
    chol = [[tiny, -0.0, 1.5], [2.0, 0.0, 2.0], [1.0, 1.0, 1.0], [1e-3, 0.0, 1e-3], [3.0, -2.5, 2.0],
            [0.75, 1e3, 4.0]]
    colors = [[0.8, -0.0, 0.3], [1.0, 1.0, 1.0], [0.5, 0.5, 0.5], [1e30, 1e30, -1e30], [0.3, 0.6, -2.0],
              [0.2, 0.2, 0.2]]
    out.append(("edges-float32", float_file(9, 7, means, chol, colors),
                "float32 edge values: a subnormal l11 on a pixel centre (one column wide), -0 in l21 and a colour, "
                "means far off the image, a 1e-3 scale, huge colours that clamp, a steep shear", [(18, 14)]))
    h16 = np.float16
    means = [[h16(65504.0), 1.0], [2.0, 3.0], [h16(5.96e-08), 2.5]]
    chol = [[h16(6.1e-05), h16(-0.0), 1.0], [h16(2.0 ** -24), 0.5, h16(2.0 ** -14)], [1.5, h16(-0.0), 2.0]]
    colors = [[1.0, 0.5, h16(-65504.0)], [0.25, 0.5, 0.75], [0.6, 0.4, 0.2]]
    out.append(("edges-float16", float_file(5, 5, means, chol, colors, dtype="<f2"),
                "float16 edge values: the largest finite value, subnormals (widened exactly), -0", []))
    out += valid_v2_vectors()
    return out


def valid_v2_vectors() -> list[tuple[str, bytes, str, list[tuple[int, int]]]]:
    """Version-2 files (spec 7.6, 7.7): the writer's choice and hand-made payloads."""
    out = []
    out.append(("small-v2", gscodec.encode(_random_gaussians(48, 32, 64, 2), version=2,
                                           metadata={"source": "random.png", "psnr": "31.00"}),
                "version 2 of the Gaussians of small-quantized (default bits, YCoCg, 1/4 px), metadata; also "
                "rendered at 96x64", [(96, 64)]))
    out.append(("rgb-wide-v2", gscodec.encode(_random_gaussians(40, 40, 50, 3), version=2,
                                              quantization=Quantization(position_bits=0, scale_bits=12, shear_bits=10,
                                                                        color_bits=11, chroma_bits=11,
                                                                        color_transform=COLOR_RGB)),
                "version 2, RGB, integer positions (p = 0), wide codes (many raw bits)", []))
    g = _random_gaussians(64, 48, 300, 21)
    out.append(("dense-v2", gscodec.encode(g, version=2, quantization=Quantization(position_bits=3)),
                "version 2, 300 Gaussians at p = 3: the probabilities adapt over many symbols", []))
    empty = QuantizedV2(qg_from(8, 4, 2, COLOR_YCOCG, [], [], [0] * 6, [1] * 6, np.zeros((6, 0))), shift=0)
    out.append(("empty-v2", empty.file(8, 4), "version 2 with no Gaussians: no coded bytes, no raw bits", []))
    n = 40
    zero = QuantizedV2(qg_from(6, 5, 0, COLOR_YCOCG, np.zeros(n), np.zeros(n), [2.0, 1.0, 0.5, 0.3, 0.01, -0.02],
                               [0.125] * 6, np.zeros((6, n))), shift=0)
    assert zero.coded == b"" and zero.raw == b"" and zero.consumed > 4
    out.append(("zeros-v2", zero.file(6, 5),
                "version 2, 40 equal Gaussians at (0, 0), all codes 0: the coded bytes are all zero, so C = 0 and "
                "the decoder reads only the zeros past the end", []))
    # codes at the extremes (|q| = 2^32 - 1: bit length 32, no stop bit), every sign, and a large delta shift
    w, h = 32, 24
    rng = np.random.default_rng(22)
    n = 24
    ix = rng.integers(0, w * 4 + 1, n)
    iy = rng.integers(0, h * 4 + 1, n)
    order = np.argsort(morton_encode(ix, iy), kind="stable")
    codes = rng.integers(-40, 41, (6, n))
    top = (1 << 32) - 1
    codes[2, :4] = [top, -top, 1 << 31, -(1 << 31)]
    codes[4, :3] = [-top, top, 2]
    codes[5, :2] = [1, -1]
    steps = [1 / 16, 1 / 16, 2.0 ** -31, 1 / 64, 2.0 ** -34, 1 / 64]
    qg = qg_from(w, h, 2, COLOR_YCOCG, ix[order], iy[order], [2.0, 2.0, 0.0, 0.3, 0.0, 0.0], steps,
                 codes[:, order])
    out.append(("extremes-v2", QuantizedV2(qg, shift=7).file(w, h),
                "version 2, codes +-(2^32 - 1) (32 unary ones, no stop bit) and +-2^31, delta shift 7 "
                "(deltas mostly raw)", []))
    qg, w, h = _widest()
    out.append(("widest-v2", QuantizedV2(qg, shift=0).file(w, h),
                f"version 2, the largest width ({w}) at p = 4, pixel deltas up to 2^28 coded whole (delta shift 0)",
                []))
    return out


def _hex(t: np.ndarray) -> list[list[str]]:
    return [[float(v).hex() for v in row] for row in t.astype(np.float64)]


def describe(name: str, data: bytes, note: str, sizes: list[tuple[int, int]]) -> dict:
    path = HERE / f"{name}.gsi"
    path.write_bytes(data)
    f = gscodec.decode(data)
    g = f.gaussians
    pixels = gscodec.render(g, backend="torch", max_overlap=None)
    Image.fromarray(pixels).save(HERE / f"{name}.png")
    renders = []
    for w, h in sizes:
        px = gscodec.render(g, w, h, backend="torch", max_overlap=None)
        png = f"{name}@{w}x{h}.png"
        Image.fromarray(px).save(HERE / png)
        renders.append({"width": w, "height": h, "png": png, "sha256": hashlib.sha256(px.tobytes()).hexdigest()})
    h = f.header
    return {
        "file": path.name,
        "note": note,
        "file_size": len(data),
        "header": {"version": h.version, "mode": int(h.mode), "width": h.width, "height": h.height,
                   "count": h.count, "metadata_length": h.metadata_length, "payload_length": h.payload_length},
        "metadata": f.metadata,
        "means": _hex(g.means),
        "chol": _hex(g.chol),
        "colors": _hex(g.colors),
        "decoded_sha256": hashlib.sha256(pixels.tobytes()).hexdigest(),
        "decoded_png": f"{name}.png",
        "renders": renders,
    }


# ---- invalid vectors ---------------------------------------------------------------------------

def _base_quantized() -> tuple[QuantizedGaussians, int, int]:
    """A small quantized image (12 x 8, 6 Gaussians, p = 2) for the tampered payloads."""
    ix = np.array([2, 9, 14, 20, 33, 44])
    iy = np.array([3, 1, 12, 25, 7, 30])
    order = np.argsort(morton_encode(ix, iy), kind="stable")
    codes = np.array([[0, 1, -1, 2, 3, -2], [0, 2, 1, -1, 0, 1], [0, 1, -1, 0, 2, 1], [1, 2, 3, 4, 5, 6],
                      [0, 1, -1, 2, -2, 0], [0, -1, 1, 0, 2, -2]])
    return (qg_from(12, 8, 2, COLOR_YCOCG, ix[order], iy[order], [1.0, 1.0, 0.0, 0.3, 0.0, 0.0],
                    [0.125, 0.125, 0.125, 0.05, 0.05, 0.05], codes[:, order]), 12, 8)


def invalid_cases(valid: bytes) -> list[tuple[str, bytes, str, str, str]]:
    """Malformed files: ``(name, bytes, error class, check id of spec 11.1, what is wrong)``."""
    cases: list[tuple[str, bytes, str, str, str]] = []

    def add(name: str, data: bytes, error: str, check: str, note: str) -> None:
        cases.append((name, data, error, check, note))

    meta_len = struct.unpack_from("<H", valid, 14)[0]
    payload_at = 20 + meta_len
    frames_at = payload_at + 57

    def patched(offset: int, fmt: str, *values, data: bytes = valid) -> bytes:
        b = bytearray(data)
        struct.pack_into(fmt, b, offset, *values)
        return fix_crc(b)

    # header (H1-H10)
    add("empty", b"", "TruncatedError", "H1", "an empty file (a prefix of the magic)")
    add("magic-prefix", MAGIC[:3], "TruncatedError", "H1", "the first 3 bytes of the magic and nothing else")
    add("short-not-magic", b"GSI", "NotGsiError", "H2", "3 bytes that are not a prefix of the magic")
    add("bad-magic", b"\x89PNG" + valid[4:], "NotGsiError", "H2", "a PNG signature in place of the magic")
    add("version-only", MAGIC + b"\x03", "UnsupportedVersionError", "H3", "5 bytes: the magic and version 3")
    add("version-3", valid[:4] + b"\x03" + valid[5:], "UnsupportedVersionError", "H3", "version byte 3")
    add("version-0", patched(4, "<B", 0), "UnsupportedVersionError", "H3", "version byte 0")
    add("magic-only", MAGIC, "TruncatedError", "H4", "the magic alone (4 bytes)")
    add("seven-bytes", valid[:7], "TruncatedError", "H4", "the first 7 bytes of a valid file")
    add("short-header", valid[:11], "TruncatedError", "H4", "the first 11 bytes of a valid file")
    add("unknown-mode", patched(5, "<B", 3), "HeaderError", "H5", "mode 3")
    add("zero-width", patched(6, "<H", 0), "HeaderError", "H6", "width 0")
    add("zero-height", patched(8, "<H", 0), "HeaderError", "H6", "height 0")
    add("width-over-limit", patched(6, "<H", 16385), "LimitError", "H7", "width 16385 (MAX_DIMENSION + 1)")
    add("height-over-limit", patched(8, "<H", 20000), "LimitError", "H7", "height 20000")
    add("count-over-limit", patched(10, "<I", (1 << 22) + 1), "LimitError", "H8",
        "count 4194305 (MAX_GAUSSIANS + 1)")
    add("count-max-u32", patched(10, "<I", 0xFFFFFFFF), "LimitError", "H8", "count 2^32 - 1")
    count = struct.unpack_from("<I", valid, 10)[0]
    add("payload-over-limit", patched(16, "<I", 64 * count + 4097), "LimitError", "H10",
        "payload_length 64 * count + 4097 (the limit + 1)")
    add("huge-payload-length", patched(16, "<I", 0xFFFFFFF0), "LimitError", "H10", "payload_length near 2^32")
    # file length (L1, L2) and checksum (C1)
    add("truncated", valid[:-7], "TruncatedError", "L1", "the last 7 bytes cut off")
    add("header-only", valid[:20], "TruncatedError", "L1", "a valid header and nothing after it")
    add("trailing-byte", valid + b"\x00", "TrailingDataError", "L2", "one byte after the checksum")
    add("bad-crc", valid[:-1] + bytes([valid[-1] ^ 0xFF]), "ChecksumError", "C1", "the CRC's last byte flipped")
    b = bytearray(valid)
    b[payload_at + 10] ^= 0x01
    add("payload-bit-flip", bytes(b), "ChecksumError", "C1", "one payload bit flipped, CRC left as it was")

    # metadata (M1): on a float32 file with one Gaussian
    def with_meta(meta: bytes) -> bytes:
        return float_file(4, 4, [[2.0, 2.0]], [[1.0, 0.0, 1.0]], [[0.5, 0.5, 0.5]], meta=meta)

    add("metadata-empty-key", with_meta(b"\x00\x00\x00"), "MetadataError", "M1", "a key of length 0")
    add("metadata-key-overrun", with_meta(b"\x05abc"), "MetadataError", "M1", "a 5-byte key in a 4-byte section")
    add("metadata-length-overrun", with_meta(b"\x01a\x00"), "MetadataError", "M1",
        "only one of the value length's two bytes")
    add("metadata-value-overrun", with_meta(b"\x01a\x05\x00abc"), "MetadataError", "M1",
        "a 5-byte value with 3 bytes left")
    add("metadata-bad-utf8-key", with_meta(meta_bytes([(b"\xff", b"v")])), "MetadataError", "M1",
        "key byte 0xFF (never UTF-8)")
    add("metadata-overlong-utf8", with_meta(meta_bytes([(b"k", b"\xc0\xaf")])), "MetadataError", "M1",
        "value C0 AF (an overlong '/')")
    add("metadata-surrogate", with_meta(meta_bytes([(b"k", b"\xed\xa0\x80")])), "MetadataError", "M1",
        "value ED A0 80 (the surrogate U+D800)")
    add("metadata-above-unicode", with_meta(meta_bytes([(b"k", b"\xf4\x90\x80\x80")])), "MetadataError", "M1",
        "value F4 90 80 80 (above U+10FFFF)")
    add("metadata-truncated-utf8", with_meta(meta_bytes([(b"k", "✓".encode()[:2])])), "MetadataError", "M1",
        "a value ending inside a 3-byte UTF-8 sequence")
    add("metadata-duplicate-key", with_meta(meta_bytes([(b"a", b"1"), (b"b", b"2"), (b"a", b"3")])),
        "MetadataError", "M1", "key 'a' twice")
    add("metadata-257-entries", with_meta(meta_bytes([(f"k{i}".encode(), b"") for i in range(257)])),
        "MetadataError", "M1", "257 entries (MAX_METADATA_ENTRIES + 1)")

    # quantization table (Q1-Q5)
    add("quant-table-truncated", file_bytes(QUANTIZED, 12, 8, 0, b"", valid[payload_at:payload_at + 56]),
        "TruncatedError", "Q1", "a 56-byte payload: the table needs 57")
    add("position-bits-5", patched(payload_at, "<B", 5), "HeaderError", "Q2", "position_bits 5 (the limit + 1)")
    add("position-bits-9", patched(payload_at, "<B", 9), "HeaderError", "Q2", "position_bits 9")
    add("colour-transform-2", patched(payload_at + 1, "<B", 2), "HeaderError", "Q3", "colour transform 2")
    add("nan-step", patched(payload_at + 6, "<f", float("nan")), "HeaderError", "Q4", "step of field 0 is NaN")
    add("zero-step", patched(payload_at + 6 + 8 * 3, "<f", 0.0), "HeaderError", "Q4", "step of field 3 is 0")
    add("negative-zero-step", patched(payload_at + 6 + 8 * 5, "<f", -0.0), "HeaderError", "Q4",
        "step of field 5 is -0")
    add("negative-step", patched(payload_at + 6 + 8 * 2, "<f", -0.125), "HeaderError", "Q4",
        "step of field 2 is negative")
    add("infinite-offset", patched(payload_at + 2 + 8 * 4, "<f", float("inf")), "HeaderError", "Q4",
        "offset of field 4 is infinite")
    add("token-config-s8", patched(payload_at + 50, "<B", 0x08), "HeaderError", "Q5",
        "token config 0x08 (s = 8) in stream 0")
    add("token-config-m-over-s", patched(payload_at + 52, "<B", 0x10), "HeaderError", "Q5",
        "token config 0x10 (s = 0, m = 1) in stream 2")
    add("token-config-m3", patched(payload_at + 56, "<B", 0x37), "HeaderError", "Q5",
        "token config 0x37 (s = 7, m = 3) in stream 6")

    # frame tables (S1-S6)
    add("no-frame-count", file_bytes(QUANTIZED, 12, 8, 0, b"", valid[payload_at:payload_at + 57]),
        "TruncatedError", "S1", "a quantized payload that ends right after its table")
    add("float-empty-payload", file_bytes(FLOAT32, 4, 4, 0, b"", b""), "TruncatedError", "S1",
        "a float payload of 0 bytes")
    add("zero-frames", patched(frames_at, "<B", 0), "StreamError", "S2", "frame count 0")
    add("seventeen-frames", patched(frames_at, "<B", 17), "StreamError", "S2", "frame count 17 (the limit + 1)")
    one = float_raw(np.array([[2.0, 2.0]]), np.array([[1.0, 0.0, 1.0]]), np.array([[0.5, 0.5, 0.5]]), "<f4")
    add("frame-lengths-truncated", file_bytes(FLOAT32, 4, 4, 1, b"", b"\x03" + b"\x00" * 5), "TruncatedError", "S3",
        "3 frames declared, 5 bytes of frame lengths (12 needed)")
    zf = zframe(one)
    add("float-slots-short", file_bytes(FLOAT32, 4, 4, 1, b"", frame_table([zf]) + b"\x00"), "StreamError", "S4",
        "float payload: one byte after the last slot")
    add("float-slots-long", file_bytes(FLOAT32, 4, 4, 1, b"", frame_table([zf])[:-1]), "StreamError", "S4",
        "float payload: the slot runs one byte past the payload")
    b = bytearray(valid)
    first_len = struct.unpack_from("<I", b, frames_at + 1)[0]
    struct.pack_into("<I", b, frames_at + 1, first_len + 10_000)
    add("quantized-slots-past-payload", fix_crc(b), "StreamError", "S4",
        "quantized payload: the first slot is declared 10000 bytes too long")

    def float_frames(frames: list[bytes]) -> bytes:
        return file_bytes(FLOAT32, 4, 4, 1, b"", frame_table(frames))

    b = bytearray(valid)
    b[frames_at + 1 + 4 * b[frames_at] + 1] ^= 0x55
    add("corrupt-zstd-magic", fix_crc(b), "StreamError", "S5", "rule 1: the first frame's magic number damaged")
    add("skippable-frame", float_frames([b"\x50\x2a\x4d\x18\x00\x00\x00\x00", zf]), "StreamError", "S5",
        "rule 1: an empty skippable frame before the data frame")
    add("frame-magic-only", float_frames([ZSTD_MAGIC, zf]), "StreamError", "S5",
        "rule 1: a slot of the 4 magic bytes alone (no frame header)")
    add("frame-reserved-bit", float_frames([raw_frame(one, reserved=True)]), "StreamError", "S5",
        "rule 1: reserved bit 3 of the frame header descriptor set")
    add("frame-reserved-block", float_frames([raw_frame(one, blocks=[(3, one, len(one))])]), "StreamError", "S5",
        "rule 6: a block of the reserved type 3")
    add("frame-no-content-size", float_frames([raw_frame(one, single_segment=False, fcs_flag=0, window_exp=0)]),
        "StreamError", "S5", "rule 2: no Frame_Content_Size (Single_Segment_flag 0, FCS flag 0)")
    add("frame-dictionary", float_frames([raw_frame(one, dict_flag=1, dict_id=7)]), "StreamError", "S5",
        "rule 3: Dictionary_ID 7")
    add("frame-dictionary-zero", float_frames([raw_frame(one, dict_flag=1, dict_id=0)]), "StreamError", "S5",
        "rule 3: Dictionary_ID_flag 1 with the id 0")
    checked = zstandard.ZstdCompressor(level=3, write_content_size=True, write_checksum=True).compress(one)
    add("frame-checksum", float_frames([checked]), "StreamError", "S5",
        "rule 3: a frame with a (correct) content checksum")
    add("frame-window-too-large", float_frames([raw_frame(one, single_segment=False, fcs_flag=2, window_exp=18)]),
        "StreamError", "S5", "rule 4: Window_Size 2^28 (the limit is 2^27)")
    add("frame-size-over-r", float_frames([raw_frame(one + b"\x00")]), "StreamError", "S5",
        "rule 5: a frame declaring R + 1 bytes")
    add("frame-size-over-rest", float_frames([raw_frame(one[:20]), raw_frame(one[20:] + b"\x00")]), "StreamError",
        "S5", "rule 5: the second frame declares one byte more than what remains of R")
    add("frame-trailing-bytes", float_frames([raw_frame(one) + b"\x00"]), "StreamError", "S5",
        "rule 6: a byte after the frame's last block inside its slot")
    add("frame-two-in-slot", float_frames([raw_frame(one[:10]) + raw_frame(one[10:])]), "StreamError", "S5",
        "rule 6: two frames in one slot")
    add("frame-truncated", float_frames([raw_frame(one)[:-1]]), "StreamError", "S5",
        "rule 6: the raw block runs one byte past the slot")
    add("frame-size-mismatch", float_frames([raw_frame(one[:-1], fcs=len(one))]), "StreamError", "S5",
        "rule 6: declares R bytes, decompresses to R - 1")
    add("frame-no-last-block", float_frames([raw_frame(one)[:-len(one) - 3] +
                                             (len(one) << 3).to_bytes(3, "little") + one]),
        "StreamError", "S5", "rule 6: the only block is not marked last and the slot ends after it")
    n = 4097
    many = float_raw(np.tile([[1.0, 1.0]], (n, 1)), np.tile([[1.0, 0.0, 1.0]], (n, 1)),
                     np.tile([[0.1, 0.1, 0.1]], (n, 1)), "<f4")
    add("frame-block-over-128k", file_bytes(FLOAT32, 4, 4, n, b"", frame_table([raw_frame(many)])), "StreamError",
        "S5", "rule 6: one raw block of 131104 bytes (over 128 KiB)")
    add("frame-rle-over-128k",
        file_bytes(FLOAT32, 4, 4, n, b"", frame_table([raw_frame(many, blocks=[(1, many[:1], 131073),
                                                                               (0, many[131073:], len(many) - 131073)])])),
        "StreamError", "S5", "rule 6: an RLE block regenerating 131073 bytes")
    add("frames-short", float_frames([raw_frame(one[:-4])]), "StreamError", "S6",
        "the content sizes add up to R - 4")
    add("count-plus-one", patched(10, "<I", count + 1), "StreamError", "S6",
        "count one higher than stored: the frames hold 7 bytes too few")

    # float parameters (P1)
    def float_one(chol=(1.0, 0.0, 1.0), means=(2.0, 2.0), colors=(0.5, 0.5, 0.5), dtype="<f4") -> bytes:
        return float_file(4, 4, [means], [chol], [colors], dtype=dtype)

    add("float32-nan-mean", float_one(means=(float("nan"), 2.0)), "ParameterError", "P1", "x is NaN")
    add("float32-inf-colour", float_one(colors=(0.5, float("inf"), 0.5)), "ParameterError", "P1", "g is +inf")
    add("float32-zero-l11", float_one(chol=(0.0, 0.0, 1.0)), "ParameterError", "P1", "l11 = 0")
    add("float32-negative-zero-l22", float_one(chol=(1.0, 0.0, -0.0)), "ParameterError", "P1", "l22 = -0")
    add("float32-negative-l11", float_one(chol=(-1.0, 0.0, 1.0)), "ParameterError", "P1", "l11 = -1")
    add("float32-nan-l21", float_one(chol=(1.0, float("nan"), 1.0)), "ParameterError", "P1", "l21 is NaN")
    add("float16-inf-mean", float_one(means=(2.0, float("inf")), dtype="<f2"), "ParameterError", "P1",
        "float16: y is +inf (0x7C00)")
    add("float16-nan-colour", float_one(colors=(float("nan"), 0.5, 0.5), dtype="<f2"), "ParameterError", "P1",
        "float16: r is NaN")
    add("float16-negative-l22", float_one(chol=(1.0, 0.0, -2.0), dtype="<f2"), "ParameterError", "P1",
        "float16: l22 = -2")

    # quantized streams (Q6-Q10), tampered on a small base image
    base, w, h = _base_quantized()

    def q(configs=None, qg=base) -> Quantized:
        return Quantized(qg, configs=configs)

    z = q(configs=[0x00] * 7)  # s = 0, m = 0: MAX_TOKEN = 32
    z.tokens = z.tokens.copy()
    z.tokens[0, 0] = 33
    add("token-above-max-pixel", z.file(w, h), "ParameterError", "Q6",
        "pixel stream (config 0x00, MAX_TOKEN 32) holds token 33")
    z = q(configs=[0x12, 0x07, 0x07, 0x07, 0x07, 0x27, 0x07])
    z.tokens = z.tokens.copy()
    z.tokens[5, 2] = 228
    add("token-above-max-field", z.file(w, h), "ParameterError", "Q6",
        "stream 5 (config 0x27: s = 7, m = 2, MAX_TOKEN 227) holds token 228")
    z = q()
    assert len(z.extra) > 1
    z.extra = z.extra[:-1]
    add("extra-bits-truncated", z.file(w, h), "TruncatedError", "Q7", "the last byte of the extra bits missing")
    z = q()
    z.extra = z.extra + b"\x00"
    add("extra-bits-excess", z.file(w, h), "StreamError", "Q8", "a zero byte after the extra bits")
    z = q()
    total = int(z.extra_widths.sum())
    assert total % 8, "the base must leave padding bits"
    z.extra = z.extra[:-1] + bytes([z.extra[-1] | 1 << 7])
    add("extra-bits-padding", z.file(w, h), "StreamError", "Q8", "the last padding bit set")

    def moved(ix, iy, p=2, n_codes=None) -> QuantizedGaussians:
        ix, iy = np.asarray(ix), np.asarray(iy)
        n = ix.size
        codes = np.zeros((6, n), np.int64) if n_codes is None else n_codes
        return qg_from(w, h, p, COLOR_YCOCG, ix, iy, base.offsets, base.steps, codes)

    add("position-off-right", q(qg=moved([3, w * 4 + 1], [1, 5])).file(w, h), "ParameterError", "Q9",
        "ix = width * 4 + 1 (one grid step right of the edge)")
    add("position-off-bottom", q(qg=moved([0, 2], [1, h * 4 + 1])).file(w, h), "ParameterError", "Q9",
        "iy = height * 4 + 1")
    add("position-pixel-off", q(qg=moved([0, 4 * (w + 1)], [0, 0])).file(w, h), "ParameterError", "Q9",
        "a whole pixel right of the edge (ix = (width + 1) * 4)")
    # 300 deltas of 2^32 - 1: the running pixel sum passes 2^40 at the 257th
    n = 300
    z = Quantized(moved(np.zeros(n, np.int64), np.zeros(n, np.int64)), configs=[0x07] * 7)
    deltas = np.full(n, (1 << 32) - 1, dtype=np.uint64)
    tok, ev, eb = tokenize(deltas, 0x07)
    z.tokens = z.tokens.copy()
    z.tokens[0] = tok
    z.extra = pack_bits(np.concatenate([ev, np.zeros(n, np.uint64)]), np.concatenate([eb, np.full(n, 4)]))
    add("position-sum-2-40", z.file(w, h), "ParameterError", "Q9",
        "300 pixel deltas of 2^32 - 1: the running sum reaches 2^40")

    def retabled(field: int, offset: float | None = None, step: float | None = None, codes=None) -> bytes:
        z = Quantized(base if codes is None else qg_from(w, h, 2, COLOR_YCOCG, base.ix, base.iy, base.offsets,
                                                          base.steps, codes))
        if offset is not None:
            z.offsets[field] = offset
        if step is not None:
            z.steps[field] = step
        return z.file(w, h)

    add("scale-overflow", retabled(0, offset=1e30), "ParameterError", "Q10", "log2_l11 offset 1e30: l11 = inf")
    add("scale-above-float32", retabled(1, offset=128.5), "ParameterError", "Q10",
        "log2_l22 near 128.5: 2^v is finite in float64 but overflows float32")
    add("scale-underflow", retabled(0, offset=-200.0), "ParameterError", "Q10",
        "log2_l11 near -200: 2^v rounds to 0 in float32")
    big = base.codes.copy()
    big[2, 0] = (1 << 31) - 1
    add("shear-overflow", retabled(2, step=1e38, codes=big), "ParameterError", "Q10",
        "shear step 1e38 times code 2^31 - 1: l21 = inf in float32")
    big = base.codes.copy()
    big[4, 3] = -(1 << 31)
    add("colour-overflow", retabled(4, step=3e38, codes=big), "ParameterError", "Q10",
        "Co step 3e38 times code -2^31: r and b overflow float32")

    # several faults: the first in the order of spec 11.1 wins
    b = bytearray(valid)
    b[20] = 0
    add("first-crc-then-metadata", bytes(b), "ChecksumError", "C1",
        "an empty metadata key and a CRC that no longer matches: C1 before M1")
    add("first-version-then-short", MAGIC + b"\x03\x02\x00", "UnsupportedVersionError", "H3",
        "7 bytes with version 3: H3 before H4")
    b = bytearray(valid)
    struct.pack_into("<HH", b, 6, 0, 20000)
    add("first-zero-then-limit", fix_crc(b), "HeaderError", "H6", "width 0 and height 20000: H6 before H7")
    b = bytearray(valid)
    b[5] = 9
    struct.pack_into("<I", b, 10, 0xFFFFFFFF)
    add("first-mode-then-count", fix_crc(b), "HeaderError", "H5", "mode 9 and count 2^32 - 1: H5 before H8")
    b = bytearray(patched(10, "<I", 0xFFFFFFFF)) + b"\x00"
    add("first-limit-then-trailing", bytes(b), "LimitError", "H8", "count over the limit and a trailing byte")
    add("first-truncated-then-crc", valid[:-1], "TruncatedError", "L1",
        "the CRC's last byte cut off: L1 before C1")
    b = bytearray(valid)
    struct.pack_into("<f", b, payload_at + 6, float("nan"))
    b[frames_at] = 0
    add("first-table-then-frames", fix_crc(b), "HeaderError", "Q4", "a NaN step and frame count 0: Q4 before S2")
    add("first-metadata-then-stream",
        file_bytes(FLOAT32, 4, 4, 1, b"\x00\x00\x00", frame_table([b"junk"])), "MetadataError", "M1",
        "an empty metadata key and a slot with no zstd frame: M1 before S5")
    z = q(configs=[0x00] * 7)
    z.tokens = z.tokens.copy()
    z.tokens[3, 1] = 40
    z.extra = z.extra[:-1]
    add("first-token-then-extra", z.file(w, h), "ParameterError", "Q6",
        "a token above MAX_TOKEN and the extra bits one byte short: Q6 before Q7")
    z = q(qg=moved([3, w * 4 + 1], [1, 5]))
    z.extra = z.extra + b"\x00"
    add("first-extra-then-position", z.file(w, h), "StreamError", "Q8",
        "an extra byte and a position off the image: Q8 before Q9")
    add("first-frames-then-parameters",
        file_bytes(FLOAT32, 4, 4, 1, b"", frame_table([zframe(float_raw(np.array([[np.nan, 2.0]]),
                                                                           np.array([[1.0, 0.0, 1.0]]),
                                                                           np.array([[0.5, 0.5, 0.5]]),
                                                                           "<f4")[:-4])])),
        "StreamError", "S6", "a NaN mean in frames that hold 4 bytes too few: S6 before P1")
    cases += invalid_v2_cases()
    return cases


def invalid_v2_cases() -> list[tuple[str, bytes, str, str, str]]:
    """Malformed version-2 files (checks H5, Q1-Q4, R1-R7, Q9, Q10 on version 2)."""
    cases: list[tuple[str, bytes, str, str, str]] = []

    def add(name: str, data: bytes, error: str, check: str, note: str) -> None:
        cases.append((f"v2-{name}", data, error, check, note))

    base, w, h = _base_quantized()

    def z(qg=base, shift=None, deltas=None) -> QuantizedV2:
        return QuantizedV2(qg, shift=shift, deltas=deltas)

    valid = z().file(w, h)
    payload_at = 20
    one = float_raw(np.array([[2.0, 2.0]]), np.array([[1.0, 0.0, 1.0]]), np.array([[0.5, 0.5, 0.5]]), "<f4")
    add("float-mode", file_bytes(FLOAT32, 4, 4, 1, b"", frame_table([zframe(one)]), version=2), "HeaderError", "H5",
        "version 2 with mode 0 (float32): a valid version-1 float payload")
    add("table-truncated", file_bytes(QUANTIZED, w, h, 0, b"", z().payload()[:54], version=2), "TruncatedError",
        "Q1", "a 54-byte version-2 payload: the table needs 55")
    b = bytearray(valid)
    b[payload_at] = 5
    add("position-bits-5", fix_crc(b), "HeaderError", "Q2", "version 2, position_bits 5")
    b = bytearray(valid)
    struct.pack_into("<f", b, payload_at + 6 + 8 * 3, 0.0)
    add("zero-step", fix_crc(b), "HeaderError", "Q4", "version 2, step of field 3 is 0")
    b = bytearray(valid)
    b[payload_at + 50] = 32
    add("delta-shift-32", fix_crc(b), "HeaderError", "R1", "delta shift 32 (the limit + 1)")
    q = z()
    q.coded_length = len(q.coded) + len(q.raw) + 1
    add("coded-length-past-payload", q.file(w, h), "TruncatedError", "R2",
        "the coded length runs one byte past the payload")
    q = z()
    q.coded = q.coded + b"\0"
    add("coded-trailing-zero", q.file(w, h), "StreamError", "R3", "the coded bytes end with a zero byte")
    q = z()
    assert len(q.raw) > 1
    q.raw = q.raw[:-1]
    add("raw-truncated", q.file(w, h), "TruncatedError", "R4", "the last raw byte missing")
    q = z()
    q.coded = q.coded + b"\0" * (q.consumed - len(q.coded)) + b"\x01" * 10
    add("coded-unread", q.file(w, h), "StreamError", "R5",
        "10 bytes after the last coded byte the decoder reads (the trimmed zeros restored first)")
    q = z()
    q.raw = q.raw + b"\0"
    add("raw-excess", q.file(w, h), "StreamError", "R6", "a zero byte after the raw bits")
    q = next(q for q in (z(shift=s) for s in range(8)) if decode_symbols(q.coded, q.raw, q.count, 2 * q.p,
                                                                           q.shift)[4] % 8)
    q.raw = q.raw[:-1] + bytes([q.raw[-1] | 1 << 7])
    add("raw-padding", q.file(w, h), "StreamError", "R6", "the last padding bit set")
    deltas = np.zeros(base.count, dtype=np.uint64)
    deltas[1] = 1 << 32
    add("delta-2-32", z(shift=1, deltas=deltas).file(w, h), "ParameterError", "R7",
        "a pixel delta of 2^32 (the high part 2^31 and one raw bit 0 under delta shift 1)")
    moved = qg_from(w, h, 2, COLOR_YCOCG, np.array([3, w * 4 + 1]), np.array([1, 5]), base.offsets, base.steps,
                    np.zeros((6, 2)))
    add("position-off-right", z(qg=moved).file(w, h), "ParameterError", "Q9",
        "version 2, ix = width * 4 + 1")
    big = qg_from(w, h, 2, COLOR_YCOCG, base.ix, base.iy, [1e30] + list(base.offsets[1:]), base.steps, base.codes)
    add("scale-overflow", z(qg=big).file(w, h), "ParameterError", "Q10", "version 2, log2_l11 offset 1e30")
    q = z()
    q.shift = 40
    q.coded_length = 1 << 30
    add("first-shift-then-length", q.file(w, h), "HeaderError", "R1",
        "delta shift 40 and a coded length past the payload: R1 before R2")
    q = z()
    q.coded = q.coded + b"\0" * (q.consumed - len(q.coded)) + b"\x01" * 4
    q.raw = q.raw[:-1]
    add("first-raw-then-unread", q.file(w, h), "TruncatedError", "R4",
        "raw bits one byte short and unread coded bytes: R4 before R5")
    return cases


def main() -> None:
    for old in list(HERE.glob("*.gsi")) + list(HERE.glob("*.png")) + list((HERE / "invalid").glob("*.gsi")):
        old.unlink()
    vectors = [describe(*v) for v in valid_vectors()]
    (HERE / "vectors.json").write_text(json.dumps(vectors, indent=1, ensure_ascii=False) + "\n")

    invalid = HERE / "invalid"
    invalid.mkdir(exist_ok=True)
    expected = []
    names = set()
    for name, data, error, check, note in invalid_cases((HERE / "small-quantized.gsi").read_bytes()):
        assert name not in names, name
        names.add(name)
        (invalid / f"{name}.gsi").write_bytes(data)
        expected.append({"file": f"{name}.gsi", "error": error, "check": check, "note": note})
    (invalid / "expected.json").write_text(json.dumps(expected, indent=1, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
