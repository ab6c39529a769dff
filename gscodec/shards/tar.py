"""Webdataset-style tar shards: samples grouped by key, read in order and written atomically.

A sample is the run of adjacent regular-file members that share a *key*: the
member name up to the first dot of its basename (``dir/000001.jpg`` and
``dir/000001.txt`` are the sample ``dir/000001`` with the extensions ``jpg``
and ``txt``), as webdataset writes and reads them.
"""

from __future__ import annotations

import copy
import io
import os
import tarfile
import tempfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from ..files import open_regular
from ..atomic import new_file_mode, remove_stale_temps, temp_prefix
from ..imageio import image_extensions
from ..limits import MAX_SAMPLE_BYTES, MAX_SAMPLE_MEMBERS

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
    """One sample: its key, its members (``TarInfo`` and bytes) in tar order, and the members refused unread.

    ``rejected`` holds ``(member name, reason)`` for members that are not safe
    to copy or too large to read (see :func:`member_problem`); a sample with
    any is never written to an output shard.
    """

    key: str
    members: list[tuple[tarfile.TarInfo, bytes]] = field(default_factory=list)
    rejected: list[tuple[str, str]] = field(default_factory=list)

    def extension(self, info: tarfile.TarInfo) -> str:
        """The extension of one of this sample's members."""
        return split_key(info.name)[1]

    def find(self, extensions: frozenset[str] | set[str]) -> int | None:
        """Index of the first member whose whole extension is in ``extensions``, else ``None``."""
        return next((i for i, (info, _) in enumerate(self.members) if self.extension(info) in extensions), None)

    @property
    def size(self) -> int:
        """Bytes of the members read so far."""
        return sum(len(data) for _, data in self.members)


_MEMBER_KINDS = ((tarfile.TarInfo.issym, "a symbolic link"), (tarfile.TarInfo.islnk, "a hard link"),
                 (tarfile.TarInfo.isfifo, "a FIFO"), (tarfile.TarInfo.ischr, "a character device"),
                 (tarfile.TarInfo.isblk, "a block device"))


def unsafe_name(name: str) -> bool:
    """True when extracting a member called ``name`` could write outside the target folder: an absolute
    path, a Windows drive, or a ``..`` component (``/`` and ``\\`` both count as separators)."""
    parts = name.replace("\\", "/").split("/")
    drive = len(name) > 1 and name[0].isalpha() and name[1] == ":"
    return name.startswith(("/", "\\")) or drive or ".." in parts


def member_problem(info: tarfile.TarInfo) -> str | None:
    """Why ``info`` must not be read or copied into a shard, or ``None``: an unsafe name
    (:func:`unsafe_name`), a type other than a regular file, or a declared size over
    :data:`~gscodec.limits.MAX_SAMPLE_BYTES`."""
    if unsafe_name(info.name):
        return f"member {info.name!r} has an unsafe name (absolute, or with '..'): it would extract outside its folder"
    if not info.isfile():
        kind = next((name for test, name in _MEMBER_KINDS if test(info)), f"of tar type {info.type!r}")
        return f"member {info.name!r} is {kind}; only regular files are read and copied"
    if info.size > MAX_SAMPLE_BYTES:
        return f"member {info.name!r} declares {info.size:,} bytes, over the limit of {MAX_SAMPLE_BYTES:,} per sample"
    return None


def _members(tf: tarfile.TarFile) -> Iterator[tarfile.TarInfo]:
    """The members of ``tf`` in order, forgetting each after use (``TarFile`` keeps a list of them all)."""
    while (info := tf.next()) is not None:
        yield info
        tf.members.clear()


def iter_samples(path: str | os.PathLike) -> Iterator[TarSample]:
    """The samples of a tar shard (plain or compressed), in order.

    Folder members are ignored. Members that are unsafe or too large
    (:func:`member_problem`), or past :data:`~gscodec.limits.MAX_SAMPLE_MEMBERS`
    or :data:`~gscodec.limits.MAX_SAMPLE_BYTES` in one sample, are not read:
    they are listed in the sample's ``rejected``. Raises :class:`ShardError`
    when the shard cannot be opened (or is not a regular file), or, after
    yielding every complete sample before it, where the shard turns out to be
    truncated or corrupt (the sample being read then is dropped).
    """
    try:
        fh = open_regular(path)
    except OSError as exc:
        raise ShardError(f"cannot open tar shard {path}: {exc.strerror or exc}") from None
    try:
        tf = tarfile.open(fileobj=fh, mode="r:*")
    except (OSError, tarfile.TarError, EOFError, zlib.error, ValueError) as exc:
        fh.close()
        raise ShardError(f"cannot open tar shard {path}: {exc}") from None
    with fh, tf:
        current: TarSample | None = None
        try:
            for info in _members(tf):
                if info.isdir():
                    continue
                key, _ = split_key(info.name)
                if current is not None and key != current.key:
                    yield current
                    current = None
                if current is None:
                    current = TarSample(key)
                problem = member_problem(info)
                if problem is None and len(current.members) + len(current.rejected) >= MAX_SAMPLE_MEMBERS:
                    problem = f"sample {key!r} has more than {MAX_SAMPLE_MEMBERS} members"
                if problem is None and current.size + info.size > MAX_SAMPLE_BYTES:
                    problem = f"sample {key!r} holds more than {MAX_SAMPLE_BYTES:,} bytes"
                if problem is None and any(m.name == info.name for m, _ in current.members):
                    problem = f"member {info.name!r} appears twice (extracting would keep only one)"
                if problem is not None:
                    current.rejected.append((info.name, problem))
                    continue
                member = tf.extractfile(info)
                data = member.read() if member is not None else b""
                if len(data) != info.size:
                    raise EOFError(f"member {info.name} has {len(data)} of its {info.size} bytes")
                current.members.append((info, data))
        except (OSError, tarfile.TarError, EOFError, zlib.error, ValueError) as exc:
            # ValueError: tarfile's parsing of a malformed sparse map or number
            after = f" after key {current.key!r}" if current is not None else ""
            raise ShardError(f"tar shard {path} is truncated or corrupt{after}: {exc}") from None
        if current is not None:
            yield current


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
        if unsafe_name(name):
            raise ShardError(f"cannot write {self.path}: member name {name!r} is unsafe (absolute, or with '..')")
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
            os.fchmod(self._fh.fileno(), new_file_mode(self.path))
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
           "iter_samples", "member_problem", "remove_stale_temps", "shard_stem", "split_key", "unsafe_name"]
