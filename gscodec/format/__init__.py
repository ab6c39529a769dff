"""The `.gsi` file format: reading, writing and validating (byte layout in ``spec/gsi.md``)."""

from .errors import (ChecksumError, GsiError, HeaderError, LimitError, MetadataError, NotGsiError, ParameterError,
                     StreamError, TrailingDataError, TruncatedError, UnsupportedVersionError, WriteError)
from .file import GsiFile, GsiInfo, decode, encode, peek, read, write, write_atomic
from .header import HEADER_SIZE, MAGIC, VERSION, VERSIONS, Header, Mode

__all__ = [
    "ChecksumError", "GsiError", "GsiFile", "GsiInfo", "HEADER_SIZE", "Header", "HeaderError", "LimitError",
    "MAGIC", "MetadataError", "Mode", "NotGsiError", "ParameterError", "StreamError", "TrailingDataError",
    "TruncatedError", "UnsupportedVersionError", "VERSION", "VERSIONS", "WriteError", "decode", "encode", "peek", "read",
    "write", "write_atomic",
]
