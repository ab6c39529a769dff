"""`.gsi` files: bytes <-> :class:`GsiFile`, and atomic reads and writes of paths and file objects.

The payload codecs (:mod:`.payload`, compiled with numba) are imported on the
first :func:`encode` or :func:`decode`, so :func:`peek` (``gsi info``) reads a
header and its metadata with numpy alone.
"""

from __future__ import annotations

import os
import zlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import BinaryIO, Union

import numpy as np

from ..atomic import write_atomic
from ..files import open_regular
from ..gaussians import GaussianImage
from ..quantize import Quantization, QuantizedGaussians, dequantize, morton_encode, quantize
from .errors import ChecksumError, TrailingDataError, TruncatedError, WriteError
from .header import CHECKSUM_SIZE, HEADER_SIZE, VERSIONS, Header, Mode, max_payload_bytes, parse_header
from .metadata import pack_metadata, parse_metadata
from .errors import ParameterError

PathOrFile = Union[str, os.PathLike, BinaryIO]


@dataclass(frozen=True, eq=False)
class GsiFile:
    """A decoded `.gsi` file: its header, metadata and Gaussians.

    Attributes:
        header: the parsed header (version, mode, size, count, lengths).
        gaussians: the decoded (dequantized) Gaussians.
        metadata: the file's key/value metadata, in file order.
        quantized: the integer codes a quantized file stores (``None`` for a
            float file or a ``GsiFile`` built by hand, which is quantized with
            the default :class:`~gscodec.Quantization` unless one is given).
            :func:`write` stores these codes again, so writing a
            read file keeps its Gaussians bit for bit (in Morton order, the
            order this writer stores, where the file had another).
    """

    header: Header
    gaussians: GaussianImage
    metadata: dict[str, str] = field(default_factory=dict)
    quantized: QuantizedGaussians | None = field(default=None, repr=False)


@dataclass(frozen=True)
class GsiInfo:
    """What :func:`peek` reads: the header and metadata, without the payload."""

    header: Header
    metadata: dict[str, str]


def _mode(mode: Mode | str | int) -> Mode:
    if isinstance(mode, str):
        try:
            return Mode[mode.upper()]
        except KeyError:
            raise ValueError(f"unknown mode {mode!r}; valid: {', '.join(m.name.lower() for m in Mode)}") from None
    return Mode(mode)


def encode(
    gaussians: GaussianImage | QuantizedGaussians | GsiFile,
    *,
    mode: Mode | str | None = None,
    quantization: Quantization | None = None,
    metadata: dict[str, str] | None = None,
    version: int | None = None,
) -> bytes:
    """Serialize Gaussians to `.gsi` bytes.

    In quantized mode (the default) the Gaussians are quantized with
    ``quantization`` (default ``Quantization()``; unless already
    :class:`QuantizedGaussians`) and stored in Morton order; float modes keep
    the given order. ``version``: ``None`` writes the spec's writer rule
    (section 2): a quantized file as version 2 when its payload is smaller than
    version 1's, else version 1, and float files as version 1; ``1`` or ``2``
    forces that version (version 2 holds only quantized files).

    A :class:`GsiFile` (from :func:`read` or :func:`decode`) is written as it
    was read: its metadata, mode and version, and in quantized mode its integer
    codes, so the same Gaussians come back; each argument given overrides that
    part (a ``quantization`` re-quantizes the decoded Gaussians, ``metadata={}``
    drops the metadata). Raises :class:`~gscodec.format.errors.GsiError`
    subclasses for what the format cannot hold.
    """
    if isinstance(gaussians, GsiFile):
        gaussians, mode, quantization, metadata, version = _as_written(gaussians, mode, quantization, metadata,
                                                                       version)
    from .payload import encode_float  # numba: loaded on first use

    mode = _mode(Mode.QUANTIZED if mode is None else mode)
    quantization = Quantization() if quantization is None else quantization
    if not isinstance(gaussians, (GaussianImage, QuantizedGaussians)):
        raise TypeError(f"need a GaussianImage, QuantizedGaussians or GsiFile, got {type(gaussians).__name__}")
    if version is not None and version not in VERSIONS:
        raise ValueError(f"unknown format version {version!r}; valid: {', '.join(map(str, VERSIONS))}")
    if version == 2 and mode != Mode.QUANTIZED:
        raise ValueError("version 2 holds only quantized files")
    if isinstance(gaussians, QuantizedGaussians):
        if mode != Mode.QUANTIZED:
            gaussians = dequantize(gaussians)
        qg = gaussians
    if mode == Mode.QUANTIZED:
        if not isinstance(gaussians, QuantizedGaussians):
            qg = quantize(gaussians, quantization)
        version, payload = _quantized_payload(qg, version)
        width, height, count = qg.width, qg.height, qg.count
    else:
        version, payload = 1, encode_float(gaussians, mode)
        width, height, count = gaussians.width, gaussians.height, gaussians.count
    meta = pack_metadata(metadata or {})
    header = Header(version, mode, width, height, count, len(meta), len(payload))
    if len(payload) > max_payload_bytes(count):
        raise WriteError(f"payload of {len(payload)} bytes exceeds the format's limit for {count} Gaussians")
    body = header.pack() + meta + payload
    return body + zlib.crc32(body).to_bytes(CHECKSUM_SIZE, "little")


def _as_written(f: GsiFile, mode: Mode | str | None, quantization: Quantization | None,
                metadata: dict[str, str] | None, version: int | None
                ) -> tuple[GaussianImage | QuantizedGaussians, Mode, Quantization | None, dict[str, str], int | None]:
    """:func:`encode`'s arguments for writing ``f`` back: its own mode, codes, metadata and version unless given."""
    mode = f.header.mode if mode is None else _mode(mode)
    same_mode = mode == f.header.mode
    source: GaussianImage | QuantizedGaussians = f.gaussians
    if mode == Mode.QUANTIZED and quantization is None and f.quantized is not None:
        source = _morton_sorted(f.quantized)  # the stored codes: no second rounding
    if version is None and same_mode and (quantization is None or mode != Mode.QUANTIZED):
        version = f.header.version
    return source, mode, quantization, dict(f.metadata) if metadata is None else metadata, version


def _morton_sorted(qg: QuantizedGaussians) -> QuantizedGaussians:
    """``qg`` in the writer's order (stable by Morton code of the grid positions): a valid file may store the
    Gaussians of one pixel in another order of their fractions, which this writer does not produce."""
    order = np.argsort(morton_encode(qg.ix, qg.iy), kind="stable")
    if np.array_equal(order, np.arange(qg.count)):
        return qg
    return replace(qg, ix=qg.ix[order], iy=qg.iy[order], codes=qg.codes[:, order])


def _quantized_payload(qg: QuantizedGaussians, version: int | None) -> tuple[int, bytes]:
    """The version and payload of ``qg``: ``version`` if given, else the smaller of the two (version 1 on a tie)."""
    from .payload import encode_quantized, encode_quantized_v2

    if version == 1:
        return 1, encode_quantized(qg)
    v2 = encode_quantized_v2(qg)
    if version == 2:
        return 2, v2
    try:
        v1 = encode_quantized(qg)
    except ParameterError:  # codes too wide for version 1's tokens
        return 2, v2
    return (2, v2) if len(v2) < len(v1) else (1, v1)


def decode(data: bytes | bytearray | memoryview) -> GsiFile:
    """Parse and validate `.gsi` bytes. Raises only :class:`~gscodec.format.errors.GsiError` subclasses."""
    view = memoryview(data).cast("B")
    header = parse_header(bytes(view[:HEADER_SIZE]))
    _check_size(len(view), header)
    body_end = header.file_size - CHECKSUM_SIZE
    stored = int.from_bytes(view[body_end:], "little")
    if zlib.crc32(view[:body_end]) != stored:
        raise ChecksumError("CRC-32 mismatch: the file is corrupt")
    meta_end = HEADER_SIZE + header.metadata_length
    metadata = parse_metadata(bytes(view[HEADER_SIZE:meta_end]))
    payload = view[meta_end:body_end]
    from .payload import decode_float, dequantized, parse_quantized, parse_quantized_v2  # numba: on first use

    if header.mode != Mode.QUANTIZED:
        return GsiFile(header, decode_float(payload, header.mode, header.width, header.height, header.count), metadata)
    parse = parse_quantized_v2 if header.version == 2 else parse_quantized
    qg = parse(payload, header.width, header.height, header.count)
    return GsiFile(header, dequantized(qg), metadata, qg)  # payload.decode_quantized's steps, keeping the codes


def _check_size(size: int, header: Header) -> None:
    if size < header.file_size:
        raise TruncatedError(f"file has {size} bytes but its header declares {header.file_size}")
    if size > header.file_size:
        raise TrailingDataError(f"file has {size - header.file_size} bytes after its checksum")


def _read_exact(src: BinaryIO) -> bytes:
    """Read one file's bytes from ``src``, never more than its header allows."""
    head = src.read(HEADER_SIZE)
    header = parse_header(head)
    rest = src.read(header.file_size - HEADER_SIZE + 1)
    return head + rest


def read(src: PathOrFile) -> GsiFile:
    """Read a `.gsi` file from a path or a binary file object.

    Raises :class:`~gscodec.format.errors.GsiError` subclasses for malformed
    data and ``OSError`` for paths that cannot be opened (among them
    :class:`~gscodec.files.NotRegularFileError` for a FIFO, device or folder,
    which is never read, so never blocks).
    """
    if isinstance(src, (str, os.PathLike)):
        with open_regular(src) as fh:
            return decode(_read_exact(fh))
    return decode(_read_exact(src))


def peek(src: PathOrFile) -> GsiInfo:
    """Read and validate the header and metadata only (the payload and checksum are not checked)."""
    if isinstance(src, (str, os.PathLike)):
        with open_regular(src) as fh:
            return _peek(fh, os.fstat(fh.fileno()).st_size)
    return _peek(src, None)


def _peek(fh: BinaryIO, size: int | None) -> GsiInfo:
    head = fh.read(HEADER_SIZE)
    header = parse_header(head)
    if size is not None:
        _check_size(size, header)
    meta = fh.read(header.metadata_length)
    if len(meta) < header.metadata_length:
        raise TruncatedError("file ends inside its metadata")
    return GsiInfo(header, parse_metadata(meta))


def write(
    gaussians: GaussianImage | QuantizedGaussians | GsiFile,
    dest: PathOrFile,
    *,
    mode: Mode | str | None = None,
    quantization: Quantization | None = None,
    metadata: dict[str, str] | None = None,
    version: int | None = None,
) -> int:
    """Write a `.gsi` file (arguments as in :func:`encode`: a :class:`GsiFile` keeps its metadata, mode, version
    and codes); returns its size in bytes.

    A path is written atomically: to a temporary file in the same folder, flushed
    to disk, then renamed over ``dest``, so readers never see a partial file and a
    failure (full disk, Ctrl-C) leaves any previous file intact. Failures raise
    :class:`~gscodec.format.errors.WriteError`.
    """
    data = encode(gaussians, mode=mode, quantization=quantization, metadata=metadata, version=version)
    if not isinstance(dest, (str, os.PathLike)):
        dest.write(data)
        return len(data)
    write_atomic(Path(dest), data)
    return len(data)
