"""The payload's compressed body: a table of zstandard frames whose outputs concatenate to known bytes.

Layout: ``u8 frame_count`` (1..:data:`MAX_FRAMES`), then ``frame_count`` x
``u32`` compressed lengths, then the frames back to back. Every frame declares
its content size; the sizes must add up to the expected raw length exactly. Each slot holds one
frame with no dictionary, no content checksum and a window of at most 128 MiB (spec section 5).
"""

from __future__ import annotations

import struct

import zstandard

from .errors import StreamError, TruncatedError

MAX_FRAMES = 16
ZSTD_LEVEL = 22
_MAX_WINDOW = 1 << 27
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def frame_compressor(level: int = ZSTD_LEVEL) -> zstandard.ZstdCompressor:
    """The compressor of one slot's frame: content size declared, no checksum, no dictionary id."""
    return zstandard.ZstdCompressor(level=level, write_content_size=True, write_checksum=False, write_dict_id=False)


def join_frames(frames: list[bytes]) -> bytes:
    """The frame table of already compressed ``frames``, then the frames back to back."""
    if not 1 <= len(frames) <= MAX_FRAMES:
        raise ValueError(f"need 1..{MAX_FRAMES} frames, got {len(frames)}")
    return struct.pack(f"<B{len(frames)}I", len(frames), *(len(f) for f in frames)) + b"".join(frames)


def pack_frames(chunks: list[bytes], level: int = ZSTD_LEVEL) -> bytes:
    """Compress each of ``chunks`` into its own zstd frame and prefix the frame table."""
    if not 1 <= len(chunks) <= MAX_FRAMES:
        raise ValueError(f"need 1..{MAX_FRAMES} chunks, got {len(chunks)}")
    compressor = frame_compressor(level)
    return join_frames([compressor.compress(bytes(c)) for c in chunks])


def frames_end(data: memoryview) -> int:
    """Where the frame table starting at ``data[0]`` ends: table size plus its declared frame lengths.

    Raises :class:`TruncatedError` if the table runs past ``data``, :class:`StreamError` if its frames do.
    """
    if len(data) < 1:
        raise TruncatedError("payload ends before its frame table")
    count = data[0]
    if not 1 <= count <= MAX_FRAMES:
        raise StreamError(f"frame count {count} is outside 1..{MAX_FRAMES}")
    table_end = 1 + 4 * count
    if len(data) < table_end:
        raise TruncatedError("payload ends inside its frame table")
    end = table_end + sum(struct.unpack_from(f"<{count}I", data, 1))
    if end > len(data):
        raise StreamError(f"frames end at byte {end} but the payload holds {len(data)}")
    return end


def unpack_frames(data: memoryview, expected: int) -> bytes:
    """Decompress the frame table in ``data`` (which it must cover exactly) to ``expected`` bytes."""
    if len(data) < 1:
        raise TruncatedError("payload ends before its frame table")
    count = data[0]
    if not 1 <= count <= MAX_FRAMES:
        raise StreamError(f"frame count {count} is outside 1..{MAX_FRAMES}")
    table_end = 1 + 4 * count
    if len(data) < table_end:
        raise TruncatedError("payload ends inside its frame table")
    lengths = struct.unpack_from(f"<{count}I", data, 1)
    if table_end + sum(lengths) != len(data):
        raise StreamError(f"frame lengths add up to {sum(lengths)} bytes but the payload holds {len(data) - table_end}")
    decompressor = zstandard.ZstdDecompressor(max_window_size=_MAX_WINDOW)
    out = bytearray()
    pos = table_end
    for length in lengths:
        frame = bytes(data[pos : pos + length])
        pos += length
        if frame[:4] != _ZSTD_MAGIC:
            raise StreamError("a frame slot does not start with a zstd frame (skippable frames are not allowed)")
        try:
            params = zstandard.get_frame_parameters(frame)
        except zstandard.ZstdError as exc:
            raise StreamError(f"invalid zstd frame header: {exc}") from None
        size = params.content_size
        if size == zstandard.CONTENTSIZE_UNKNOWN or size == zstandard.CONTENTSIZE_ERROR:
            raise StreamError("zstd frame does not declare its content size")
        if params.dict_id or params.has_checksum or frame[4] & 0x03:
            raise StreamError("zstd frame declares a dictionary or a content checksum")
        if params.window_size > _MAX_WINDOW:
            raise StreamError(f"zstd frame window of {params.window_size} bytes exceeds {_MAX_WINDOW}")
        if len(out) + size > expected:
            raise StreamError(f"zstd frames declare more than the expected {expected} bytes")
        dobj = decompressor.decompressobj()
        try:
            chunk = dobj.decompress(frame)
        except zstandard.ZstdError as exc:
            raise StreamError(f"corrupt zstd frame: {exc}") from None
        if not dobj.eof:
            raise StreamError("zstd frame is truncated")
        if dobj.unused_data:
            raise StreamError("bytes follow the end of a zstd frame inside its slot")
        if len(chunk) != size:
            raise StreamError(f"zstd frame decoded to {len(chunk)} bytes, declared {size}")
        out += chunk
    if len(out) != expected:
        raise StreamError(f"zstd frames decode to {len(out)} bytes, expected {expected}")
    return bytes(out)
