"""Atomic file writes, the one home for every writer (`.gsi` files, PNGs, tar shards, manifests, heads,
checkpoints, bench results).

Data goes to a hidden temporary file next to the destination (``.NAME.`` + 8
random characters + ``.tmp``), is flushed to disk, gets the mode a plain
``open(path, "w")`` would give (the existing file's, else ``0o666`` less the
umask, read without changing the umask where the OS allows) and is renamed
into place: readers see the old file or the new one, never a part. A killed
writer's temporary files are removed by :func:`remove_stale_temps`.
"""

from __future__ import annotations

import io
import os
import re
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .format.errors import WriteError


def new_file_mode(path: Path) -> int:
    """The mode a plain ``open(path, "w")`` would give: the existing file's, else 0o666 less the umask."""
    try:
        return path.stat().st_mode & 0o7777
    except OSError:
        return 0o666 & ~_umask()


def _umask() -> int:
    """The process umask, read without changing it (so threads never race and no file is briefly open):
    from ``/proc/self/status`` (Linux), else from the mode a probe file gets in a fresh temporary folder
    (``0o022`` if even that fails)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    try:
        with tempfile.TemporaryDirectory() as folder:
            probe = os.path.join(folder, "probe")
            os.close(os.open(probe, os.O_CREAT | os.O_WRONLY, 0o666))
            return 0o666 & ~os.stat(probe).st_mode & 0o777
    except OSError:
        return 0o022


def temp_prefix(path: Path) -> str:
    """Prefix of the hidden temporary files written next to ``path`` before it is renamed into place
    (``.NAME.`` + 8 random characters + ``.tmp``, by :func:`write_atomic` and the tar shard writer)."""
    return f".{path.name}."


def remove_stale_temps(path: Path) -> int:
    """Delete the temporary files that an interrupted (killed) writer of ``path`` left next to it; returns how many.

    Only names of exactly that form are removed (``.x.gsi.ab12cd34.tmp`` for ``x.gsi``, not the temporary
    file of ``x.gsi.gsi``); a missing folder removes nothing.
    """
    folder = path.parent if str(path.parent) else Path(".")
    pattern = re.compile(re.escape(temp_prefix(path)) + r"[a-z0-9_]{8}\.tmp")
    removed = 0
    try:
        entries = [e for e in os.scandir(folder) if pattern.fullmatch(e.name) and e.is_file(follow_symlinks=False)]
    except OSError:
        return 0
    for entry in entries:
        try:
            os.unlink(entry.path)
            removed += 1
        except FileNotFoundError:
            pass
    return removed


def write_atomic(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically; raises :class:`WriteError` and leaves no temporary file
    (unless the process is killed outright: :func:`remove_stale_temps` then cleans up)."""
    tmp_name = None
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=temp_prefix(path), suffix=".tmp", dir=path.parent or Path("."))
        os.fchmod(fd, new_file_mode(path))
        with io.open(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp_name, path)
        tmp_name = None
    except OSError as exc:
        raise WriteError(f"cannot write {path}: {exc.strerror or exc}") from exc
    finally:
        if tmp_name is not None:
            try:
                os.unlink(tmp_name)
            except OSError:
                pass


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path next to ``path`` for a writer that takes a path (``torch.save``, safetensors).

    When the block ends without an exception the file is given :func:`new_file_mode`,
    flushed to disk and renamed onto ``path``; otherwise it is removed and ``path``
    is left untouched. ``OSError`` propagates.
    """
    path = Path(path)
    fd, name = tempfile.mkstemp(prefix=temp_prefix(path), suffix=".tmp", dir=path.parent if str(path.parent) else ".")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, new_file_mode(path))
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


__all__ = ["atomic_path", "new_file_mode", "remove_stale_temps", "temp_prefix", "write_atomic"]
