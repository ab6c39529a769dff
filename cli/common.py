"""Shared CLI helpers: the two consoles, error messages, untrusted text made safe to print, number formatting."""

from __future__ import annotations

import os
import re

from rich.console import Console
from rich.markup import escape

from gscodec.files import error_text  # noqa: F401  (re-exported: the CLI's error lines)

_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
"""C0 and C1 controls (escape sequences, newlines) and bidirectional overrides, which can disguise text."""


def out_console() -> Console:
    """Console for results (tables) on stdout."""
    return Console(highlight=False)


def err_console() -> Console:
    """Console for progress, warnings and errors on stderr (lines are not wrapped, so paths stay whole)."""
    return Console(stderr=True, highlight=False, soft_wrap=True)


def printable(text: object) -> str:
    """``text`` (a file name, metadata, an error naming them) with every control character shown as ``\\xNN``
    or ``\\uNNNN``, so that it prints on one line and cannot drive the terminal."""
    return _UNPRINTABLE.sub(lambda m: repr(m.group())[1:-1] if ord(m.group()) < 0x100 else f"\\u{ord(m.group()):04x}",
                            str(text))


def safe(text: object) -> str:
    """Untrusted ``text`` for rich output: :func:`printable`, then rich markup (``[bold]``) escaped."""
    return escape(printable(text))


def unwritable(folder: str | os.PathLike) -> str | None:
    """Why files cannot be created in the existing ``folder`` (``"read-only file system"``,
    ``"permission denied"``), or ``None`` when they can."""
    if os.access(folder, os.W_OK | os.X_OK):
        return None
    try:
        if os.statvfs(folder).f_flag & os.ST_RDONLY:
            return "read-only file system"
    except (OSError, AttributeError):  # no statvfs on Windows
        pass
    return "permission denied"


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether ``a`` and ``b`` name one file (through links too); ``False`` when either does not exist."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def human_bytes(n: float) -> str:
    """``1234`` -> ``'1.2 kB'`` (decimal units)."""
    for unit in ("B", "kB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


def display_path(path: str | os.PathLike) -> str:
    """``path`` relative to the working folder when it is inside it, else as given."""
    text = os.fspath(path)
    try:
        rel = os.path.relpath(text)
    except ValueError:  # another drive on Windows
        return text
    return rel if not rel.startswith("..") else text
