"""`gsi info`: header statistics of `.gsi` files, as a dict per file and as a rich table."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from rich import box
from rich.table import Table

from gscodec.format import peek, read

from .common import safe


def file_info(path: Path, verify: bool = False) -> dict[str, Any]:
    """Header, size and derived statistics of one `.gsi` file.

    Reads the header and metadata only (:func:`gscodec.peek`); with ``verify``
    the whole file is decoded, checking its checksum and parameters. Raises
    ``OSError`` or :class:`~gscodec.GsiError`.
    """
    if verify:
        header, metadata = (f := read(path)).header, f.metadata
    else:
        info = peek(path)
        header, metadata = info.header, info.metadata
    size = os.stat(path).st_size
    pixels = header.width * header.height
    return {
        "file": str(path),
        "bytes": size,
        "width": header.width,
        "height": header.height,
        "gaussians": header.count,
        "mode": header.mode.name.lower(),
        "version": header.version,
        "metadata_length": header.metadata_length,
        "payload_length": header.payload_length,
        "bytes_per_gaussian": round(size / header.count, 3) if header.count else None,
        "bits_per_pixel": round(8 * size / pixels, 4),
        "compression_ratio": round(3 * pixels / size, 2),
        "metadata": dict(metadata),
        "verified": verify,
    }


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
                      f"{r['mode']} v{r['version']}", bpg, f"{r['bits_per_pixel']:.3f}", f"{r['compression_ratio']:.1f}:1")
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
