"""`gsi info`: header statistics of `.gsi` files (paths, folders searched recursively, or standard input), as a
dict per file, a rich table, or plain lines."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any, BinaryIO

from rich import box
from rich.table import Table

from gscodec.files import error_text, regular_file_problem
from gscodec.format import peek, read
from gscodec.limits import MAX_SAMPLE_BYTES

from .common import STDIO, safe

FIELDS = ("file", "status", "error", "bytes", "width", "height", "gaussians", "mode", "version", "metadata_length",
          "payload_length", "bytes_per_gaussian", "bpp", "compression_ratio", "psnr", "metadata", "verified")
"""The keys of every ``gsi info --json`` record, in order (a failed file has them too, ``None`` where unknown)."""


def find_files(specs: list[str]) -> list[tuple[str, str | None]]:
    """``(path, problem)`` per `.gsi` file of ``specs``: files as given (``-`` for standard input), folders
    searched recursively for ``*.gsi`` (sorted; hidden entries and linked folders skipped). ``problem`` is
    ``None``, or why the entry cannot be read (a folder without `.gsi` files, a FIFO, a broken link)."""
    found: list[tuple[str, str | None]] = []
    for spec in specs:
        if spec == STDIO or not os.path.isdir(spec):
            found.append((spec, None))
            continue
        before = len(found)

        def unreadable(exc: OSError) -> None:
            found.append((str(exc.filename), f"cannot list folder: {error_text(exc)}"))

        for dirpath, dirnames, filenames in os.walk(spec, onerror=unreadable):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for name in sorted(filenames):
                if not name.startswith(".") and name.lower().endswith(".gsi"):
                    path = os.path.join(dirpath, name)
                    found.append((path, regular_file_problem(path)))
        if len(found) == before:
            found.append((spec, "no .gsi files in this folder (searched recursively)"))
    return found


def read_stdin(stream: BinaryIO) -> bytes:
    """All of standard input, at most :data:`~gscodec.limits.MAX_SAMPLE_BYTES`; ``OSError`` past that."""
    data = stream.read(MAX_SAMPLE_BYTES + 1)
    if len(data) > MAX_SAMPLE_BYTES:
        raise OSError(f"standard input holds more than {MAX_SAMPLE_BYTES:,} bytes")
    return data


def file_info(path: str | os.PathLike, verify: bool = False, data: bytes | None = None) -> dict[str, Any]:
    """Header, size and derived statistics of one `.gsi` file (``data``: its bytes, read from standard input).

    Reads the header and metadata only (:func:`gscodec.peek`); with ``verify``
    the whole file is decoded, checking its checksum and parameters. Raises
    ``OSError`` or :class:`~gscodec.GsiError`. The keys are :data:`FIELDS`.
    """
    source: Any = Path(path) if data is None else io.BytesIO(data)
    if verify:
        header, metadata = (f := read(source)).header, f.metadata
    else:
        info = peek(source)
        header, metadata = info.header, info.metadata
    size = os.stat(path).st_size if data is None else len(data)
    pixels = header.width * header.height
    try:
        psnr: float | None = float(metadata["psnr"])
    except (KeyError, ValueError):
        psnr = None
    return {
        "file": str(path),
        "status": "ok",
        "error": None,
        "bytes": size,
        "width": header.width,
        "height": header.height,
        "gaussians": header.count,
        "mode": header.mode.name.lower(),
        "version": header.version,
        "metadata_length": header.metadata_length,
        "payload_length": header.payload_length,
        "bytes_per_gaussian": round(size / header.count, 3) if header.count else None,
        "bpp": round(8 * size / pixels, 4),
        "compression_ratio": round(3 * pixels / size, 2),
        "psnr": psnr,
        "metadata": dict(metadata),
        "verified": verify,
    }


def failed_info(path: str, error: str, verify: bool) -> dict[str, Any]:
    """The record of a file that could not be read: :data:`FIELDS`, ``None`` where unknown."""
    row: dict[str, Any] = dict.fromkeys(FIELDS)
    row.update(file=path, status="failed", error=error, verified=verify)
    return row


def info_lines(rows: list[dict[str, Any]]) -> tuple[list[str], list[list[Any]]]:
    """Header and one row per file for plain output (the metadata as compact JSON)."""
    import json

    header = ["file", "bytes", "width", "height", "gaussians", "mode", "version", "bytes_per_gaussian", "bpp",
              "compression_ratio", "psnr", "metadata"]
    return header, [[r[k] if k != "metadata" else json.dumps(r[k], ensure_ascii=False) for k in header] for r in rows]


def info_tables(rows: list[dict[str, Any]]) -> list[Table]:
    """A statistics table (one row per file) and, if any file has metadata, a metadata table.

    File names and metadata are untrusted: control characters are shown escaped and rich markup is not applied.
    """
    file_width = min(30, max(len(r["file"]) for r in rows))
    stats = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    stats.add_column("File", overflow="fold")
    for name in ("Bytes", "Size", "Gaussians"):
        stats.add_column(name, justify="right", no_wrap=True)
    stats.add_column("Mode", no_wrap=True)
    for name in ("B/Gauss", "bpp", "Ratio"):
        stats.add_column(name, justify="right", no_wrap=True)
    for r in rows:
        bpg = "-" if r["bytes_per_gaussian"] is None else f"{r['bytes_per_gaussian']:.2f}"
        stats.add_row(safe(r["file"]), f"{r['bytes']:,}", f"{r['width']}x{r['height']}", f"{r['gaussians']:,}",
                      f"{r['mode']} v{r['version']}", bpg, f"{r['bpp']:.3f}", f"{r['compression_ratio']:.1f}:1")
    tables = [stats]
    if any(r["metadata"] for r in rows):
        meta = Table(box=box.SIMPLE_HEAD, pad_edge=False, title="Metadata", title_justify="left")
        meta.add_column("File", overflow="fold", min_width=file_width)
        meta.add_column("Key", no_wrap=True)
        meta.add_column("Value", overflow="fold")
        for r in rows:
            for i, (key, value) in enumerate(r["metadata"].items()):
                meta.add_row(safe(r["file"]) if i == 0 else "", safe(key), safe(value))
        tables.append(meta)
    return tables
