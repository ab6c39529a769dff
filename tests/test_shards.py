"""Sharded encoding (`gsi encode` over tar shards and input lists, under torchrun) and `gsi verify`.

Tiny 32x32 JPEGs fitted with 16 Gaussians for 20 steps keep every fit short.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import gscodec
from gscodec.shards import iter_samples, parse_shard_spec, read_manifest
from gscodec_cli.inputs import expand_braces, input_kind
from gscodec_cli.main import cli

FAST = ["--points", "16", "--iterations", "20"]
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
            "-m", "gscodec_cli.main"]


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner(env={"COLUMNS": "200"})


def _jpeg(seed: int, size: int = 32) -> bytes:
    arr = np.random.default_rng(seed).integers(0, 256, (size, size, 3)).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def _write_tar(path: Path, members: list[tuple[str, bytes]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w") as tf:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 1_700_000_000
            tf.addfile(info, io.BytesIO(data))
    return path


def _shard_set(folder: Path, shards: int, per_shard: int) -> list[str]:
    """``shards`` input tars of ``per_shard`` samples (jpg + txt + json); returns all keys."""
    keys = []
    for s in range(shards):
        members = []
        for i in range(per_shard):
            key = f"{s:03d}{i:03d}"
            keys.append(key)
            members += [(f"{key}.jpg", _jpeg(s * 100 + i)), (f"{key}.txt", f"photo {key}".encode()),
                        (f"{key}.json", json.dumps({"key": key}).encode())]
        _write_tar(folder / f"{s:03d}.tar", members)
    return keys


def _members(path: Path) -> list[tuple[str, bytes]]:
    return [(info.name, data) for sample in iter_samples(path) for info, data in sample.members]


def _verify(runner: CliRunner, *args: str) -> tuple[int, dict]:
    """The exit status and the summary of ``gsi verify --json`` (totals, ``input_keys`` and ``problems``)."""
    result = runner.invoke(cli, ["verify", *args, "--json"])
    doc = json.loads(result.stdout)
    assert doc["command"] == "verify" and doc["ok"] == (result.exit_code == 0)
    return result.exit_code, doc["summary"]


# --- torchrun -----------------------------------------------------------------------------------------------


def _descendants(pid: int) -> list[int]:
    """Processes below ``pid`` (Linux /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def _worker_of_rank(launcher: int, rank: int) -> int | None:
    for pid in _descendants(launcher):
        try:
            env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"RANK={rank}".encode() in env:
            return pid
    return None


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="finds the torchrun workers through /proc")
def test_torchrun_encode_killed_worker_then_resume(tmp_path: Path, runner: CliRunner) -> None:
    """Two torchrun workers; rank 1 is SIGKILLed after the first shard is finished; a rerun completes the set."""
    keys = _shard_set(tmp_path / "in", shards=4, per_shard=3)
    out = tmp_path / "out"
    cmd = [*TORCHRUN, "encode", str(tmp_path / "in"), "-o", str(out), *FAST]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not list(out.glob("*.manifest.json")):
            assert proc.poll() is None, proc.communicate()[0].decode()
            assert time.monotonic() < deadline, "no shard finished in time"
            time.sleep(0.01)
        victim = _worker_of_rank(proc.pid, 1)
        assert victim is not None, "rank 1 is already gone"
        os.kill(victim, signal.SIGKILL)
        log = proc.communicate(timeout=120)[0].decode()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode != 0, log
    finished = {p.name: p.stat().st_mtime_ns for p in out.glob("*.manifest.json")}
    assert 1 <= len(finished) < 4, log

    again = subprocess.run([*cmd, "--json"], capture_output=True, env=env, timeout=180)
    assert again.returncode == 0, again.stderr.decode()
    rows = json.loads(again.stdout)["records"]  # rank 0 alone prints, for both ranks
    assert sorted(Path(r["shard"]).name for r in rows) == ["000.tar", "001.tar", "002.tar", "003.tar"]
    assert {r["rank"] for r in rows} == {0, 1}
    skipped = {Path(r["shard"]).stem + ".manifest.json" for r in rows if r["status"] == "skipped"}
    assert skipped == set(finished)  # finished shards were not redone
    assert all(r["status"] == "encoded" for r in rows if r["status"] != "skipped")
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.manifest.json") if p.name in finished} == finished
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == []  # no temporary shard left

    code, report = _verify(runner, str(out), "--inputs", str(tmp_path / "in"))
    assert code == 0, report["problems"]
    assert report["samples"] == report["input_keys"] == len(keys) == 12
    encoded = [s.key for shard in sorted(out.glob("*.tar")) for s in iter_samples(shard)]
    assert sorted(encoded) == sorted(keys)  # every input exactly once


# --- one process --------------------------------------------------------------------------------------------


def test_corrupt_member_is_recorded_and_the_rest_encoded(tmp_path: Path, runner: CliRunner) -> None:
    good = [_jpeg(i) for i in range(3)]
    src = _write_tar(tmp_path / "in" / "a.tar", [
        ("k0.jpg", good[0]), ("k0.txt", b"zero"),
        ("k1.jpg", good[1][: len(good[1]) // 2]), ("k1.txt", b"one"),   # truncated JPEG
        ("k2.jpg", good[2]), ("k2.txt", b"two"),
        ("k3.txt", b"a caption without an image"),
    ])
    out = tmp_path / "out"
    result = runner.invoke(cli, ["encode", str(src), "-o", str(out), *FAST, "--json"])
    assert result.exit_code == 1, result.output
    assert "k1" in result.stderr and "truncated" in result.stderr and "Traceback" not in result.output
    [row] = json.loads(result.stdout)["records"]
    assert (row["status"], row["samples"], row["failures"]) == ("encoded", 2, 2)
    m = read_manifest(out / "a.tar")
    assert [s.key for s in m.samples] == ["k0", "k2"]
    failures = {f.key: f.error for f in m.failures}
    assert sorted(failures) == ["k1", "k3"] and "truncated" in failures["k1"] and "no image" in failures["k3"]
    assert m.samples[0].members == ["k0.gsi", "k0.txt"] and m.samples[0].gsi_bytes > 0
    assert m.inputs[0].path == str(src.resolve()) and m.inputs[0].bytes == src.stat().st_size
    assert [n for n, _ in _members(out / "a.tar")] == ["k0.gsi", "k0.txt", "k2.gsi", "k2.txt"]
    code, report = _verify(runner, str(out), "--inputs", str(src))
    assert code == 0 and report["failures"] == 2 and report["input_keys"] == 4, report["problems"]

    again = runner.invoke(cli, ["encode", str(src), "-o", str(out), *FAST, "--json"])
    # failures stay reported
    assert again.exit_code == 1 and json.loads(again.stdout)["records"][0]["status"] == "skipped"

    # verify finds damage: a flipped byte inside a .gsi member, then a missing manifest
    data = bytearray((out / "a.tar").read_bytes())
    first = next(s for s in iter_samples(out / "a.tar")).members[0][0]
    data[first.offset_data + first.size - 6] ^= 0xFF
    (out / "a.tar").write_bytes(bytes(data))
    code, report = _verify(runner, str(out / "a.tar"))
    assert code == 1 and any("k0.gsi does not decode" in p for p in report["problems"])
    (out / "a.manifest.json").unlink()
    code, report = _verify(runner, str(out))
    assert code == 1 and any("manifest" in p for p in report["problems"])


def test_truncated_input_tar_keeps_the_samples_before_the_damage(tmp_path: Path, runner: CliRunner) -> None:
    whole = _write_tar(tmp_path / "whole.tar", [(f"k{i}.jpg", _jpeg(i)) for i in range(3)])
    cut = tmp_path / "in" / "cut.tar"
    cut.parent.mkdir()
    with tarfile.open(whole) as tf:
        k1 = tf.getmember("k1.jpg")
    cut.write_bytes(whole.read_bytes()[:k1.offset_data + 100])  # k0 whole, k1's header and part of its data
    out = tmp_path / "out"
    result = runner.invoke(cli, ["encode", str(cut), "-o", str(out), *FAST])
    assert result.exit_code == 1 and "truncated" in result.stderr
    m = read_manifest(out / "cut.tar")
    assert [s.key for s in m.samples] == ["k0"] and m.errors and "k1" in m.errors[0]
    code, report = _verify(runner, str(out), "--inputs", str(cut))
    assert code == 1 and any("truncated" in p for p in report["problems"])


def test_shard_option_covers_every_input_once(tmp_path: Path, runner: CliRunner,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    keys = _shard_set(tmp_path / "in", shards=5, per_shard=1)
    out = tmp_path / "out"
    monkeypatch.setenv("RANK", "2")  # an explicit --shard wins over torchrun's variables
    monkeypatch.setenv("WORLD_SIZE", "3")
    parts = []
    for i in range(2):
        result = runner.invoke(cli, ["encode", f"{tmp_path}/in/{{000..004}}.tar", "-o", str(out), *FAST,
                                     "--shard", f"{i}/2", "--json"])
        assert result.exit_code == 0, result.output
        parts.append(sorted(Path(r["shard"]).name for r in json.loads(result.stdout)["records"]))
    assert parts == [["000.tar", "002.tar", "004.tar"], ["001.tar", "003.tar"]]
    code, report = _verify(runner, str(out), "--inputs", str(tmp_path / "in" / "*.tar"))
    assert code == 0 and report["input_keys"] == len(keys), report["problems"]

    result = runner.invoke(cli, ["encode", str(tmp_path / "in"), "-o", str(out), *FAST, "--json"])
    assert result.exit_code == 0, result.output  # RANK=2 of WORLD_SIZE=3 without torchrun: index 2 only
    rows = json.loads(result.stdout)["records"]
    assert [(Path(r["shard"]).name, r["status"]) for r in rows] == [("002.tar", "skipped")]

    monkeypatch.delenv("RANK")
    monkeypatch.delenv("WORLD_SIZE")
    (tmp_path / "in" / "extra.tar").write_bytes((tmp_path / "in" / "000.tar").read_bytes())  # same keys again
    code, report = _verify(runner, str(out), "--inputs", str(tmp_path / "in"))
    assert code == 1 and any("extra.tar has no output shard" in p for p in report["problems"])


def test_input_list_chunks_and_shards(tmp_path: Path, runner: CliRunner) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(4):
        (photos / f"p{i}.jpg").write_bytes(_jpeg(i))
    (photos / "p1.txt").write_bytes(b"caption of p1\n")
    listing = tmp_path / "list.txt"
    listing.write_text("# four photos and a missing one\nphotos/p0.jpg\nphotos/p1.jpg\n\nphotos/missing.jpg\n"
                       f"{photos / 'p2.jpg'}\nphotos/p3.jpg\n")
    out = tmp_path / "out"
    codes = [runner.invoke(cli, ["encode", "--input-list", str(listing), "-o", str(out), "--shard-size", "2",
                                 *FAST, "--shard", f"{i}/2"]).exit_code for i in range(2)]
    assert codes == [0, 1]  # list-000001.tar (part 1) holds the missing file
    assert sorted(p.name for p in out.glob("*.tar")) == ["list-000000.tar", "list-000001.tar", "list-000002.tar"]
    names = [n for n, _ in _members(out / "list-000000.tar")]
    assert names == ["000000000.gsi", "000000001.gsi", "000000001.txt"]
    assert dict(_members(out / "list-000000.tar"))["000000001.txt"] == b"caption of p1\n"
    assert gscodec.decode(dict(_members(out / "list-000000.tar"))["000000000.gsi"]).metadata["source"] == "p0.jpg"
    failure = read_manifest(out / "list-000001.tar").failures[0]
    assert failure.key == "000000002" and "missing.jpg" in failure.error
    code, report = _verify(runner, str(out), "--input-list", str(listing))
    assert code == 0 and report["input_keys"] == 5, report["problems"]
    listing.write_text("photos/p0.jpg\n")
    code, report = _verify(runner, str(out), "--input-list", str(listing))
    assert code == 1 and any("not lines of the input list" in p for p in report["problems"])


def test_pass_through_members_are_byte_for_byte(tmp_path: Path, runner: CliRunner) -> None:
    caption = "  a café\r\nwith two lines and a trailing tab\t".encode("utf-8")
    extras = [("s/x1.txt", caption), ("s/x1.json", b'{"w": 32, "h": 32}'), ("s/x1.cls", b"7"),
              ("s/x1.seg.png", _png_mask()), ("s/x1.npy", bytes(range(256)) * 3)]
    src = _write_tar(tmp_path / "in" / "p.tar", [extras[0], ("s/x1.jpg", _jpeg(5))] + extras[1:]
                     + [("s/x2.jpg", _jpeg(6)), ("s/x2.txt", b"")])
    out = tmp_path / "out"
    result = runner.invoke(cli, ["encode", str(src), "-o", str(out), *FAST])
    assert result.exit_code == 0, result.output
    got = _members(out / "p.tar")
    assert [n for n, _ in got] == ["s/x1.txt", "s/x1.gsi", "s/x1.json", "s/x1.cls", "s/x1.seg.png", "s/x1.npy",
                                   "s/x2.gsi", "s/x2.txt"]
    by_name = dict(got)
    for name, data in extras + [("s/x2.txt", b"")]:
        assert by_name[name] == data, name  # the seg.png mask is a pass-through member, not the image
    f = gscodec.decode(by_name["s/x1.gsi"])
    assert f.metadata["source"] == "s/x1.jpg" and (f.header.width, f.header.height, f.header.count) == (32, 32, 16)
    with tarfile.open(out / "p.tar") as tf:
        assert tf.getmember("s/x1.json").mtime == 1_700_000_000
    from gscodec.clip import GsiTarDataset

    [a, b] = list(GsiTarDataset([out / "p.tar"], need_caption=True))  # what train-head streams
    assert a["caption"] == caption.decode().strip() and a["params"].shape == (16, 8) and b["caption"] == ""


def _png_mask() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.eye(8, dtype=np.uint8) * 255).save(buf, format="PNG")
    return buf.getvalue()


def test_resize_and_batch_apply_to_shards(tmp_path: Path, runner: CliRunner) -> None:
    src = _write_tar(tmp_path / "r.tar", [(f"k{i}.jpg", _jpeg(i, size=24 + 4 * i)) for i in range(3)])
    result = runner.invoke(cli, ["encode", str(src), "-o", str(tmp_path / "out"), *FAST, "--resize", "16",
                                 "--batch", "3"])
    assert result.exit_code == 0, result.output
    m = read_manifest(tmp_path / "out" / "r.tar")
    assert [(s.width, s.height) for s in m.samples] == [(16, 16)] * 3
    assert m.settings["resize"] == 16 and m.settings["batch"] == 3


def test_usage_errors_and_helpers(tmp_path: Path, runner: CliRunner) -> None:
    src = _write_tar(tmp_path / "in" / "a.tar", [("k.jpg", _jpeg(0))])
    img = tmp_path / "x.jpg"
    img.write_bytes(_jpeg(1))
    for args in (["encode", str(src)], ["encode", str(src), "-o", "o", "--shard", "2/2"],
                 ["encode", str(src), "-o", "o", "--workers", "2"], ["encode", str(src), str(img), "-o", "o"],
                 ["encode", str(img), "--shard", "0/2"], ["encode"]):
        result = runner.invoke(cli, args)
        assert result.exit_code == 2, (args, result.output)
    result = runner.invoke(cli, ["encode", str(tmp_path / "in" / "{a,b}.tar"), "-o", str(tmp_path / "o")])
    assert result.exit_code == 1 and "b.tar" in result.stderr and not (tmp_path / "o" / "a.tar").exists()
    result = CliRunner(env={"WORLD_SIZE": "2", "RANK": "0"}).invoke(cli, ["encode", str(img), "-o", "o"])
    assert result.exit_code == 2 and "torchrun" in result.output
    result = runner.invoke(cli, ["encode", str(tmp_path / "in"), "-o", str(tmp_path / "in")])
    assert result.exit_code == 1 and "replace the input" in result.stderr
    assert runner.invoke(cli, ["verify", str(tmp_path / "nothing")]).exit_code == 1
    for args in (["encode"], ["verify"]):
        help_text = runner.invoke(cli, [*args, "--help"]).output
        assert "Examples" in help_text and "gsi verify" in help_text
    assert expand_braces("s/{08..10}.tar") == ["s/08.tar", "s/09.tar", "s/10.tar"]
    assert expand_braces("{a,b}{1..2}") == ["a1", "a2", "b1", "b2"] and expand_braces("x{}") == ["x{}"]
    assert input_kind([str(tmp_path / "in")]) == "shards" and input_kind([str(img)]) == "images"
    assert parse_shard_spec("3/4") == (3, 4)
    with pytest.raises(ValueError):
        parse_shard_spec("4/4")
