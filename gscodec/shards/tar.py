"""Webdataset-style tar shards: samples grouped by key, read in order and written atomically.

A sample is the run of adjacent regular-file members that share a *key*: the
member name up to the first dot of its basename (``dir/000001.jpg`` and
``dir/000001.txt`` are the sample ``dir/000001`` with the extensions ``jpg``
and ``txt``), as webdataset writes and reads them.
"""

from __future__ import annotations

import copy
import glob
import io
import os
import tarfile
import tempfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from ..imageio import image_extensions

TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz", ".tar.zst")
"""File names that count as tar shards."""


class ShardError(Exception):
    """A tar shard cannot be opened, is truncated or corrupt, or cannot be written."""


def is_tar_name(name: str) -> bool:
    """True when ``name`` ends with a tar shard suffix (``.tar``, ``.tar.gz``, ...)."""
    return name.lower().endswith(TAR_SUFFIXES)


def shard_stem(name: str) -> str:
    """``"000.tar.gz"`` -> ``"000"``: the name without its tar suffix."""
    lower = name.lower()
    for suffix in sorted(TAR_SUFFIXES, key=len, reverse=True):
        if lower.endswith(suffix):
            return name[: -len(suffix)]
    return name


def split_key(name: str) -> tuple[str, str]:
    """``dir/abc.seg.png`` -> key ``dir/abc``, extension ``seg.png`` (lower-case); no dot: ``(name, "")``."""
    d, base = os.path.split(name)
    if "." not in base:
        return name, ""
    stem, ext = base.split(".", 1)
    return (f"{d}/{stem}" if d else stem), ext.lower()


def image_member_extensions() -> frozenset[str]:
    """Member extensions (no dot) that hold an image Pillow reads: ``jpg``, ``png``, ``webp``, ..."""
    return frozenset(e.lstrip(".") for e in image_extensions())


@dataclass
class TarSample:
    """One sample: its key and its members (``TarInfo`` and bytes) in tar order."""

    key: str
    members: list[tuple[tarfile.TarInfo, bytes]] = field(default_factory=list)

    def extension(self, info: tarfile.TarInfo) -> str:
        """The extension of one of this sample's members."""
        return split_key(info.name)[1]

    def find(self, extensions: frozenset[str] | set[str]) -> int | None:
        """Index of the first member whose whole extension is in ``extensions``, else ``None``."""
        return next((i for i, (info, _) in enumerate(self.members) if self.extension(info) in extensions), None)


def iter_samples(path: str | os.PathLike) -> Iterator[TarSample]:
    """The samples of a tar shard (plain or compressed), in order; non-file members are ignored.

    Raises :class:`ShardError` when the shard cannot be opened, or, after
    yielding every complete sample before it, where the shard turns out to be
    truncated or corrupt (the sample being read then is dropped).
    """
    try:
        tf = tarfile.open(path, "r:*")
    except (OSError, tarfile.TarError, EOFError, zlib.error) as exc:
        raise ShardError(f"cannot open tar shard {path}: {exc}") from None
    with tf:
        current: TarSample | None = None
        try:
            for info in tf:
                if not info.isfile():
                    continue
                key, _ = split_key(info.name)
                if current is not None and key != current.key:
                    yield current
                    current = None
                if current is None:
                    current = TarSample(key)
                fh = tf.extractfile(info)
                data = fh.read() if fh is not None else b""
                if len(data) != info.size:
                    raise EOFError(f"member {info.name} has {len(data)} of its {info.size} bytes")
                current.members.append((info, data))
        except (OSError, tarfile.TarError, EOFError, zlib.error) as exc:
            after = f" after key {current.key!r}" if current is not None else ""
            raise ShardError(f"tar shard {path} is truncated or corrupt{after}: {exc}") from None
        if current is not None:
            yield current


def file_mode() -> int:
    """The permissions a newly created file gets under the current umask (``0o644`` under ``022``)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def temp_prefix(path: Path) -> str:
    """Prefix of the hidden temporary files that :class:`ShardWriter` writes for ``path``."""
    return f".{path.name}."


def remove_stale_temps(path: Path) -> int:
    """Delete temporary files an interrupted writer of ``path`` left next to it; returns how many."""
    removed = 0
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        return 0
    for tmp in folder.glob(f"{glob.escape(temp_prefix(path))}*.tmp"):
        try:
            tmp.unlink()
            removed += 1
        except FileNotFoundError:
            pass
    return removed


class ShardWriter:
    """Write an uncompressed tar shard to a hidden temporary file next to ``path``, renamed into place on commit.

    Usage::

        with ShardWriter(Path("out/000.tar")) as w:
            w.add("000001.gsi", data)
            size = w.commit()         # without commit (an exception, Ctrl-C) the temporary file is removed

    Readers never see a partial shard: ``path`` appears complete or not at all.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        folder = self.path.parent if str(self.path.parent) else Path(".")
        try:
            fd, name = tempfile.mkstemp(prefix=temp_prefix(self.path), suffix=".tmp", dir=folder)
        except OSError as exc:
            raise ShardError(f"cannot write {self.path}: {exc.strerror or exc}") from None
        self.tmp = Path(name)
        self._fh = io.open(fd, "wb")
        self._tar = tarfile.open(fileobj=self._fh, mode="w", format=tarfile.PAX_FORMAT)
        self._done = False

    def add(self, name: str, data: bytes, like: tarfile.TarInfo | None = None) -> None:
        """Append a regular-file member; ``like`` (an input member) supplies mode, times and owner."""
        if like is not None:
            info = copy.copy(like)
            # a copied "path" or "size" record would override the new name and size on reading
            info.pax_headers = {k: v for k, v in like.pax_headers.items() if k not in ("path", "linkpath", "size")}
            info.name = name
        else:
            info = tarfile.TarInfo(name)
            info.mode = 0o644
        info.type = tarfile.REGTYPE
        info.size = len(data)
        try:
            self._tar.addfile(info, io.BytesIO(data))
        except (OSError, tarfile.TarError) as exc:
            raise ShardError(f"cannot write {self.path}: {getattr(exc, 'strerror', None) or exc}") from None

    def commit(self) -> int:
        """Finish the tar, flush it to disk and rename it to ``path``; returns its size in bytes."""
        try:
            self._tar.close()
            self._fh.flush()
            os.fchmod(self._fh.fileno(), file_mode())
            os.fsync(self._fh.fileno())
            self._fh.close()
            size = self.tmp.stat().st_size
            os.replace(self.tmp, self.path)
        except OSError as exc:
            self.abort()
            raise ShardError(f"cannot write {self.path}: {exc.strerror or exc}") from None
        self._done = True
        return size

    def abort(self) -> None:
        """Drop the temporary file (nothing is written to ``path``)."""
        if self._done:
            return
        self._done = True
        for close in (self._tar.close, self._fh.close):
            try:
                close()
            except (OSError, tarfile.TarError, ValueError):
                pass
        self.tmp.unlink(missing_ok=True)

    def __enter__(self) -> "ShardWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.abort()


__all__ = ["ShardError", "ShardWriter", "TAR_SUFFIXES", "TarSample", "image_member_extensions", "is_tar_name",
           "iter_samples", "remove_stale_temps", "shard_stem", "split_key"]
