"""Stress (issue 19): good photos among every kind of bad input, encoded under a memory limit.

The folder holds tiny good images and, beside them, corrupt, truncated, empty
and non-image files, a PNG declaring 9400 x 9400 pixels in 100 bytes, a 1 x 3000
strip (a 4.5 GB intermediate at --resize 224 before the fix), a FIFO, a symbolic
link loop, a broken link, a link up the tree and names carrying rich markup,
escape sequences and a newline. ``gsi encode`` must encode every good image,
report each bad one on one line without a traceback, exit 1, and stay within
:data:`DATA_BOUND` bytes of data memory (``RLIMIT_DATA``: heap and anonymous
mappings) above a process that only imports the same modules.
"""

from __future__ import annotations

import io
import os
import resource
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.slow  # subprocesses and real fits: `-m "not slow"` skips them

DATA_BOUND = 1 << 30
"""Data memory (bytes) the whole stress run may use above the imported modules."""

GOOD = ["a.png", "b.jpg", "sub/c.png", "alpha.png", "thin.png"]


def _photo(path: Path, size: tuple[int, int], mode: str = "RGB", seed: int = 0) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    channels = len(mode)
    arr = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], channels)).astype(np.uint8)
    Image.fromarray(arr if channels > 1 else arr[..., 0], mode).save(path)
    return path.read_bytes()


def _png_header(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


def _stress_folder(root: Path) -> dict[str, str]:
    """Build the folder; returns each bad entry's name and a word its one-line report must hold."""
    _photo(root / "a.png", (16, 12))
    jpeg = io.BytesIO()
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (15, 20, 3)).astype(np.uint8)).save(jpeg, "JPEG")
    (root / "b.jpg").write_bytes(jpeg.getvalue())
    _photo(root / "sub" / "c.png", (12, 16), seed=2)
    _photo(root / "alpha.png", (16, 16), "RGBA", seed=3)
    Image.fromarray(np.full((3000, 1, 3), 128, np.uint8)).save(root / "thin.png")
    bad = {"corrupt.png": "not an image format", "empty.png": "not an image format",
           "text.jpg": "not an image format", "truncated.jpg": "truncated",
           "big.png": "over the limit", "pipe.png": "FIFO", "loop1.png": "loop", "loop2.png": "loop",
           "broken.png": "broken symbolic link", "[bold]mark\x1b[31m.png": "not an image format",
           "new\nline.png": "not an image format"}
    (root / "corrupt.png").write_bytes(os.urandom(300))
    (root / "empty.png").write_bytes(b"")
    (root / "text.jpg").write_text("not a photo\n")
    (root / "truncated.jpg").write_bytes(jpeg.getvalue()[: len(jpeg.getvalue()) // 2])
    (root / "big.png").write_bytes(_png_header(9400, 9400))
    os.mkfifo(root / "pipe.png")
    os.symlink("loop2.png", root / "loop1.png")
    os.symlink("loop1.png", root / "loop2.png")
    os.symlink("gone.png", root / "broken.png")
    os.symlink("..", root / "sub" / "up")  # a link up the tree: not walked
    (root / "[bold]mark\x1b[31m.png").write_bytes(b"\x00" * 64)
    (root / "new\nline.png").write_bytes(b"\x00" * 64)
    return bad


def _data_limit(extra: int):  # noqa: ANN202
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_DATA, (extra, extra))
    return apply


def _baseline_data_bytes() -> int:
    """VmData of a process that imports what ``gsi encode`` imports, and nothing else."""
    code = ("import torch, numba, gscodec, gscodec.fit, gscodec_cli.main, gscodec_cli.encoding\n"
            "print(next(l.split()[1] for l in open('/proc/self/status') if l.startswith('VmData')))")
    return int(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout) * 1024


@pytest.mark.skipif(not Path("/proc/self/status").exists() or not hasattr(os, "mkfifo"),
                    reason="needs Linux (/proc, FIFOs, RLIMIT_DATA)")
def test_good_photos_among_every_kind_of_bad_input(tmp_path: Path) -> None:
    src = tmp_path / "in"
    bad = _stress_folder(src)
    limit = _baseline_data_bytes() + DATA_BOUND
    cmd = [sys.executable, "-m", "gscodec_cli.main", "encode", str(src), "-o", str(tmp_path / "out"),
           "--resize", "16", "--points", "8", "--iterations", "3"]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=300, preexec_fn=_data_limit(limit),
                         env={**os.environ, "COLUMNS": "300"})
    err = run.stderr
    assert run.returncode == 1, err
    assert "Traceback" not in err and "MemoryError" not in err
    written = sorted(p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*.gsi"))
    assert written == sorted(str(Path(g).with_suffix(".gsi").as_posix()) for g in GOOD)
    lines = err.splitlines()
    for name, word in bad.items():
        shown = name.replace("\x1b", "\\x1b").replace("\n", "\\n")
        reports = [line for line in lines if "✗" in line and shown in line]
        assert len(reports) == 1 and word in reports[0], (name, reports)
    assert "\x1b[31m" not in err  # the escape sequence in a name never reaches the terminal raw
    assert f"{len(bad)} of {len(bad) + len(GOOD)} input(s) failed" in err


def test_the_bound_is_binding(tmp_path: Path) -> None:
    """The same limit stops a process that allocates what the 1 x 30000 resize used to (4.5 GB)."""
    if not Path("/proc/self/status").exists():
        pytest.skip("needs Linux")
    limit = _baseline_data_bytes() + DATA_BOUND
    code = "import numpy as np, gscodec_cli.main\nnp.ones((224, 6_720_000, 3), np.uint8)"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         preexec_fn=_data_limit(limit))
    assert run.returncode != 0 and "MemoryError" in run.stderr
