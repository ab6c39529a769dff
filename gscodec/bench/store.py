"""What a benchmark run keeps on disk: ``points.csv`` (one row per image, codec and quality, appended as
points finish), ``settings.json`` (each codec's description, so a resumed run never mixes settings) and
one CompressAI-style results JSON per codec.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..atomic import write_atomic
from ..format import WriteError

FIELDS = ("image", "codec", "quality", "bytes", "bpp", "psnr", "ms_ssim", "encode_s", "decode_s")
"""Columns of ``points.csv``."""

Key = tuple[str, str, str]
"""``(image, codec, quality label)``: what identifies a point."""


class BenchError(ValueError):
    """A benchmark cannot run or resume (bad results folder, no images, missing package, mixed settings)."""


@dataclass(frozen=True)
class Point:
    """One measured point: ``bytes`` written, ``bpp``, ``psnr`` (dB), ``ms_ssim`` (``nan`` if not computable),
    encode and decode wall times (s)."""

    image: str
    codec: str
    quality: str
    bytes: int
    bpp: float
    psnr: float
    ms_ssim: float
    encode_s: float
    decode_s: float

    @property
    def key(self) -> Key:
        return (self.image, self.codec, self.quality)

    def row(self) -> dict[str, str]:
        """The CSV row (fixed decimals; ``inf``/``nan`` spelled out)."""
        return {"image": self.image, "codec": self.codec, "quality": self.quality, "bytes": str(self.bytes),
                "bpp": f"{self.bpp:.6f}", "psnr": f"{self.psnr:.4f}", "ms_ssim": f"{self.ms_ssim:.6f}",
                "encode_s": f"{self.encode_s:.4f}", "decode_s": f"{self.decode_s:.4f}"}

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Point:
        """Parse a CSV row; ``ValueError`` (or ``TypeError``) if it is incomplete or malformed."""
        if any(row.get(f) in (None, "") for f in FIELDS[:3]):
            raise ValueError("missing key fields")
        return cls(row["image"], row["codec"], row["quality"], int(row["bytes"]), float(row["bpp"]),
                   float(row["psnr"]), float(row["ms_ssim"]), float(row["encode_s"]), float(row["decode_s"]))


def _write_text(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` (UTF-8) atomically, with ordinary file permissions; :class:`BenchError`
    when it cannot be written."""
    try:
        write_atomic(path, text.encode("utf-8"))
    except WriteError as exc:
        raise BenchError(str(exc)) from None


class PointStore:
    """``points.csv`` in a results folder: loads what is there, appends (and flushes) one row per new point.

    A row cut short by an interrupted run, or any malformed row, is dropped
    when the file is loaded (the file is rewritten without it), so that point
    is measured again. A later row for the same key replaces an earlier one.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.points: dict[Key, Point] = {}
        if path.exists():
            self._load()

    def _load(self) -> None:
        try:
            text = self.path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise BenchError(f"cannot read {self.path}: {exc}") from None
        dropped = 0
        if text and not text.endswith("\n"):  # a row cut short by an interrupted run
            text = text[: text.rfind("\n") + 1]
            dropped += 1
        if not text:
            if dropped:
                self._rewrite()
            return
        reader = csv.DictReader(io.StringIO(text))
        if tuple(reader.fieldnames or ()) != FIELDS:
            raise BenchError(f"{self.path} is not a points file of this benchmark (columns {reader.fieldnames}); "
                             f"choose another output folder")
        for row in reader:
            try:
                if None in row:  # more fields than columns
                    raise ValueError("extra fields")
                p = Point.from_row(row)
            except (ValueError, TypeError):
                dropped += 1
                continue
            self.points[p.key] = p
        if dropped:
            self._rewrite()

    def _rewrite(self) -> None:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=FIELDS, lineterminator="\n")
        writer.writeheader()
        for p in self.points.values():
            writer.writerow(p.row())
        _write_text(self.path, buf.getvalue())

    def __contains__(self, key: Key) -> bool:
        return key in self.points

    def get(self, key: Key) -> Point | None:
        return self.points.get(key)

    def append(self, point: Point) -> None:
        """Record ``point`` as a new line of the file (header first if the file is new) and in memory.

        The in-memory copy is the one read back from the row (fixed decimals), so
        averages are the same whether a point was measured now or in an earlier run.
        """
        new = not self.path.exists() or self.path.stat().st_size == 0
        with open(self.path, "a", encoding="utf-8", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=FIELDS, lineterminator="\n")
            if new:
                writer.writeheader()
            writer.writerow(point.row())
            fh.flush()
        self.points[point.key] = Point.from_row(point.row())


def check_settings(path: Path, descriptions: dict[str, str]) -> None:
    """Record each codec's description in ``settings.json``; ``BenchError`` if a codec was run with other settings."""
    stored: dict[str, str] = {}
    if path.exists():
        try:
            stored = json.loads(path.read_text(encoding="utf-8"))["codecs"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise BenchError(f"cannot read {path}: {exc}") from None
    for name, desc in descriptions.items():
        if name in stored and stored[name] != desc:
            raise BenchError(f"{path.parent} holds {name} results measured with other settings:\n"
                             f"  before: {stored[name]}\n  now:    {desc}\n"
                             f"use another output folder, or delete it to start over")
    stored.update(descriptions)
    _write_text(path, json.dumps({"codecs": stored}, indent=2) + "\n")


def _json_number(x: float) -> float | None:
    return x if math.isfinite(x) else None


def write_results(path: Path, name: str, description: str, results: dict[str, list[float]]) -> None:
    """One results file in CompressAI's schema: ``{"name", "description", "results": {metric: [values]}}``.

    Non-finite values (an MS-SSIM that could not be computed, an infinite
    PSNR) are written as ``null``, keeping the file strict JSON.
    """
    data = {"name": name, "description": description,
            "results": {k: [_json_number(float(v)) for v in vs] for k, vs in results.items()}}
    _write_text(path, json.dumps(data, indent=2) + "\n")


__all__ = ["BenchError", "FIELDS", "Key", "Point", "PointStore", "check_settings", "write_results"]
