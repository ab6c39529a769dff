"""Opening a file in the system image viewer without waiting for it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path


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
