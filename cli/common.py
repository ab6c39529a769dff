"""Shared CLI helpers: the two consoles, error messages and number formatting."""

from __future__ import annotations

import os

from rich.console import Console


def out_console() -> Console:
    """Console for results (tables) on stdout."""
    return Console(highlight=False)


def err_console() -> Console:
    """Console for progress, warnings and errors on stderr (lines are not wrapped, so paths stay whole)."""
    return Console(stderr=True, highlight=False, soft_wrap=True)


def error_text(exc: BaseException) -> str:
    """A one-line reason for ``exc`` (``OSError`` without its errno noise)."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    text = str(exc)
    return text if text else type(exc).__name__


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
