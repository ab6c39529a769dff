"""Errors raised by `.gsi` readers and writers: one class per failure, one base class.

Every malformed input raises a subclass of :class:`GsiError` and nothing else.
"""

from __future__ import annotations


class GsiError(ValueError):
    """Base class of every `.gsi` format error."""


class NotGsiError(GsiError):
    """The data does not start with the `.gsi` magic bytes."""


class UnsupportedVersionError(GsiError):
    """The file's version byte names a format version this reader does not know."""


class HeaderError(GsiError):
    """A header field holds a value the spec does not allow (unknown mode, reserved bits, zero size)."""


class LimitError(GsiError):
    """A declared size exceeds one of the named limits (width, height, count, metadata)."""


class TruncatedError(GsiError):
    """The data ends before the structure that its header declares."""


class TrailingDataError(GsiError):
    """Bytes follow the checksum: the declared sections do not cover the file exactly."""


class ChecksumError(GsiError):
    """The CRC-32 stored at the end does not match the file's contents."""


class MetadataError(GsiError):
    """The metadata section is malformed (bad lengths, invalid UTF-8, duplicate or empty keys)."""


class StreamError(GsiError):
    """A compressed stream is not a valid zstandard frame or decodes to the wrong size."""


class ParameterError(GsiError):
    """Decoded parameters are invalid (non-finite values, non-positive scales, positions off the grid)."""


class WriteError(GsiError):
    """A file could not be written (the destination is left untouched)."""
