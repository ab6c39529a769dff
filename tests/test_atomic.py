"""gscodec.atomic: every writer's atomic replace, with a plain open's permissions and without touching the umask."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from gscodec.atomic import atomic_path, write_atomic
from gscodec.shards.tar import ShardWriter


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the umask from /proc")
def test_writers_never_set_the_umask(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mask = os.umask(0o027)
    try:
        def no_umask(_: int) -> int:
            raise AssertionError("os.umask called: new files would be briefly world-writable, and threads race")

        monkeypatch.setattr(os, "umask", no_umask)
        write_atomic(tmp_path / "a.gsi", b"x")
        with atomic_path(tmp_path / "head.safetensors") as tmp:
            tmp.write_bytes(b"y")
        with ShardWriter(tmp_path / "000.tar") as w:
            w.add("k.txt", b"z")
            w.commit()
    finally:
        monkeypatch.undo()
        os.umask(mask)
    for name in ("a.gsi", "head.safetensors", "000.tar"):
        assert _mode(tmp_path / name) == 0o640, name  # 0o666 less the umask 0o027
    assert sorted(p.name for p in tmp_path.iterdir()) == ["000.tar", "a.gsi", "head.safetensors"]  # no temps


def test_atomic_path_keeps_the_old_file_when_the_writer_fails(tmp_path: Path) -> None:
    target = tmp_path / "ckpt.pt"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("killed mid-write")
    assert target.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]
