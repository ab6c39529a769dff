"""The fixed 20-byte `.gsi` header: layout, packing and the checks made before any allocation."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum

from ..limits import MAX_DIMENSION, MAX_GAUSSIANS, MAX_METADATA_BYTES
from .errors import HeaderError, LimitError, NotGsiError, TruncatedError, UnsupportedVersionError

MAGIC = b"\x89GSI"
VERSION = 2
"""The newest format version this library reads and writes."""
VERSIONS = (1, 2)
"""Every version this library reads: version 2 differs from 1 only in the quantized payload (spec section 7.6)."""
HEADER_SIZE = 20
CHECKSUM_SIZE = 4
_LAYOUT = struct.Struct("<4sBBHHIHI")


class Mode(IntEnum):
    """How the Gaussian parameters are stored in the payload."""

    FLOAT32 = 0
    FLOAT16 = 1
    QUANTIZED = 2


def max_payload_bytes(count: int) -> int:
    """Largest payload a valid file of ``count`` Gaussians can declare (64 bytes per Gaussian + 4096)."""
    return 64 * count + 4096


@dataclass(frozen=True)
class Header:
    """Decoded header fields. Sizes in pixels, lengths in bytes."""

    version: int
    mode: Mode
    width: int
    height: int
    count: int
    metadata_length: int
    payload_length: int

    @property
    def file_size(self) -> int:
        """Exact size of the file this header describes."""
        return HEADER_SIZE + self.metadata_length + self.payload_length + CHECKSUM_SIZE

    def pack(self) -> bytes:
        return _LAYOUT.pack(MAGIC, self.version, int(self.mode), self.width, self.height,
                            self.count, self.metadata_length, self.payload_length)


def parse_header(data: bytes) -> Header:
    """Parse and validate the first :data:`HEADER_SIZE` bytes of ``data``.

    Raises the first applicable of: NotGsiError, UnsupportedVersionError,
    TruncatedError, HeaderError, LimitError.
    """
    if len(data) < len(MAGIC) or data[: len(MAGIC)] != MAGIC:
        if len(data) < len(MAGIC) and MAGIC.startswith(bytes(data)):
            raise TruncatedError(f"{len(data)} bytes is shorter than the {HEADER_SIZE}-byte header")
        raise NotGsiError("not a .gsi file (bad magic bytes)")
    if len(data) > 4 and data[4] not in VERSIONS:
        raise UnsupportedVersionError(f"format version {data[4]} is not supported (this reader knows versions 1 and 2)")
    if len(data) < HEADER_SIZE:
        raise TruncatedError(f"{len(data)} bytes is shorter than the {HEADER_SIZE}-byte header")
    _, version, mode, width, height, count, meta_len, payload_len = _LAYOUT.unpack_from(data)
    if mode not in Mode._value2member_map_:
        raise HeaderError(f"unknown storage mode {mode}")
    if version == 2 and mode != Mode.QUANTIZED:
        raise HeaderError(f"version 2 defines only the quantized mode, not mode {mode}")
    if width == 0 or height == 0:
        raise HeaderError(f"image size {width}x{height} is empty")
    if width > MAX_DIMENSION or height > MAX_DIMENSION:
        raise LimitError(f"image size {width}x{height} exceeds the limit of {MAX_DIMENSION} pixels per side")
    if count > MAX_GAUSSIANS:
        raise LimitError(f"{count} Gaussians exceed the limit of {MAX_GAUSSIANS}")
    if meta_len > MAX_METADATA_BYTES:
        raise LimitError(f"metadata of {meta_len} bytes exceeds the limit of {MAX_METADATA_BYTES}")
    if payload_len > max_payload_bytes(count):
        raise LimitError(f"payload of {payload_len} bytes exceeds the limit of {max_payload_bytes(count)} for {count} Gaussians")
    return Header(version, Mode(mode), width, height, count, meta_len, payload_len)
