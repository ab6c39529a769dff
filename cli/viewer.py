"""Where a ``gsi view`` render goes: the format an extension names, its bytes, and the system image viewer
(opened without waiting for it)."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np


def open_viewer(path: Path) -> str | None:
    """Start the platform's viewer on ``path`` in the background; the viewer's name, or ``None`` if none.

    Uses ``os.startfile`` on Windows, ``open`` on macOS and ``xdg-open`` where a
    display is available. Never waits for the viewer to exit.
    """
    if sys.platform == "win32":
        try:
            os.startfile(str(path))  # type: ignore[attr-defined]
        except OSError:
            return None
        return "the default viewer"
    if sys.platform == "darwin":
        command = shutil.which("open")
    elif os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"):
        command = shutil.which("xdg-open")
    else:
        command = None
    if command is None:
        return None
    try:
        subprocess.Popen([command, str(path)], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, start_new_session=True, close_fds=True)
    except OSError:
        return None
    return Path(command).name


def format_for(path: Path, name: str | None = None) -> str:
    """The Pillow format a render is written in: ``name`` (a format such as ``jpeg`` or an extension such as
    ``jpg``) when given, else the one ``path``'s extension names, else PNG (standard output, no extension).

    Raises ``ValueError`` naming the choices for a format Pillow cannot write, and for `.gsi` (``gsi view``
    writes pixels; ``gsi encode`` makes `.gsi` files).
    """
    from PIL import Image

    Image.init()
    by_ext = {ext.lower(): fmt for ext, fmt in Image.registered_extensions().items() if fmt in Image.SAVE}
    if name is not None:
        wanted = name.lower().lstrip(".")
        fmt = by_ext.get("." + wanted) or next((f for f in Image.SAVE if f.lower() == wanted), None)
        what = f"--format {name}"
    elif path.suffix:
        fmt = by_ext.get(path.suffix.lower())
        what = f"the extension {path.suffix}"
    else:
        return "PNG"
    gsi = fmt == "GSI" or (name.lower().lstrip(".") if name is not None else path.suffix.lower()[1:]) == "gsi"
    if fmt is None or gsi:
        common = ", ".join(e for e in (".png", ".jpg", ".webp", ".tif", ".bmp", ".gif") if e in by_ext)
        hint = "; gsi encode makes .gsi files" if gsi else ""
        raise ValueError(f"{what} is not an image format Pillow writes here (use {common}, or --format){hint}")
    return fmt


def encode_pixels(pixels: np.ndarray, fmt: str) -> bytes:
    """``(H, W, 3)`` uint8 ``pixels`` as the bytes of a ``fmt`` image file, with Pillow's default options."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels), "RGB").save(buf, format=fmt)
    return buf.getvalue()
