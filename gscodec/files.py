"""Opening input files safely: regular files only, never blocking on a FIFO or a device.

A plain ``open()`` of a FIFO without a writer blocks forever, and one with a
writer looks like an empty file; a device can stream without end. Every reader
of a path in gscodec (`.gsi` files, images, tar members from a list) goes
through :func:`open_regular`, which refuses them with :class:`NotRegularFileError`.
"""

from __future__ import annotations

import errno
import os
import stat
from typing import BinaryIO

_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))


class NotRegularFileError(OSError):
    """A path names something other than a regular file (a FIFO, a device, a folder) or a symbolic link loop."""


def file_kind(mode: int) -> str:
    """``"a FIFO"``, ``"a folder"``, ...: what a non-regular ``st_mode`` is (``"a regular file"`` for one)."""
    if stat.S_ISREG(mode):
        return "a regular file"
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def regular_file_problem(path: str | os.PathLike) -> str | None:
    """Why ``path`` cannot be read as a regular file (loop, broken link, FIFO, ...), or ``None`` when it can."""
    try:
        st = os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "a symbolic link loop"
        if exc.errno == errno.ENOENT:
            return "a broken symbolic link" if os.path.islink(path) else "no such file"
        return exc.strerror or str(exc)
    if not stat.S_ISREG(st.st_mode):
        return f"not a regular file ({file_kind(st.st_mode)})"
    return None


def open_regular(path: str | os.PathLike) -> BinaryIO:
    """Open ``path`` for binary reading if it is a regular file; never blocks.

    Raises :class:`NotRegularFileError` (an ``OSError`` whose ``strerror`` says
    what ``path`` is) for FIFOs, sockets, devices, folders and symbolic link
    loops, and the ordinary ``OSError`` subclasses otherwise (missing,
    permission denied).
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise NotRegularFileError(errno.ELOOP, "a symbolic link loop", str(path)) from None
        if exc.errno == errno.EISDIR:
            raise NotRegularFileError(errno.EISDIR, "not a regular file (a folder)", str(path)) from None
        raise
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise NotRegularFileError(errno.EINVAL, f"not a regular file ({file_kind(mode)})", str(path))
        return os.fdopen(fd, "rb")  # O_NONBLOCK does nothing to reads of a regular file
    except BaseException:
        os.close(fd)
        raise


def error_text(exc: BaseException) -> str:
    """A one-line reason for ``exc`` (``OSError`` without its errno noise)."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    text = str(exc)
    return text if text else type(exc).__name__


__all__ = ["NotRegularFileError", "error_text", "file_kind", "open_regular", "regular_file_problem"]
