"""The metadata section: UTF-8 key/value pairs (provenance such as the source file name or fitted PSNR)."""

from __future__ import annotations

import struct

from ..limits import MAX_METADATA_BYTES, MAX_METADATA_ENTRIES
from .errors import LimitError, MetadataError

_MAX_KEY = 255
_MAX_VALUE = 65535


def _check_entry(key: str, value: str) -> tuple[bytes, bytes]:
    if not isinstance(key, str) or not isinstance(value, str):
        raise MetadataError("metadata keys and values must be str")
    k, v = key.encode("utf-8"), value.encode("utf-8")
    if not 1 <= len(k) <= _MAX_KEY:
        raise MetadataError(f"metadata key {key!r} must be 1..{_MAX_KEY} UTF-8 bytes")
    if len(v) > _MAX_VALUE:
        raise MetadataError(f"metadata value of {key!r} exceeds {_MAX_VALUE} bytes")
    return k, v


def pack_metadata(metadata: dict[str, str]) -> bytes:
    """Serialize ``metadata`` (insertion order kept) as ``u8 key_len, key, u16 value_len, value`` entries."""
    if len(metadata) > MAX_METADATA_ENTRIES:
        raise LimitError(f"{len(metadata)} metadata entries exceed the limit of {MAX_METADATA_ENTRIES}")
    out = bytearray()
    for key, value in metadata.items():
        k, v = _check_entry(key, value)
        out += struct.pack("<B", len(k)) + k + struct.pack("<H", len(v)) + v
    if len(out) > MAX_METADATA_BYTES:
        raise LimitError(f"metadata of {len(out)} bytes exceeds the limit of {MAX_METADATA_BYTES}")
    return bytes(out)


def parse_metadata(data: bytes) -> dict[str, str]:
    """Parse a metadata section; every entry must fit the section exactly, keys unique and non-empty."""
    out: dict[str, str] = {}
    pos, end = 0, len(data)
    while pos < end:
        if len(out) >= MAX_METADATA_ENTRIES:
            raise MetadataError(f"more than {MAX_METADATA_ENTRIES} metadata entries")
        key_len = data[pos]
        pos += 1
        if key_len == 0 or pos + key_len + 2 > end:
            raise MetadataError("metadata entry overruns the section or has an empty key")
        key_bytes = data[pos : pos + key_len]
        pos += key_len
        (value_len,) = struct.unpack_from("<H", data, pos)
        pos += 2
        if pos + value_len > end:
            raise MetadataError("metadata value overruns the section")
        value_bytes = data[pos : pos + value_len]
        pos += value_len
        try:
            key, value = bytes(key_bytes).decode("utf-8"), bytes(value_bytes).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MetadataError(f"metadata is not valid UTF-8: {exc}") from None
        if key in out:
            raise MetadataError(f"duplicate metadata key {key!r}")
        out[key] = value
    return out
