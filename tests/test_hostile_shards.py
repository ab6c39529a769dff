"""Hostile tar shards (issue 19): unsafe members, tampering that `gsi verify` must see, declared sizes.

Every shard is built here in ``tmp_path``; fits are tiny (8 Gaussians, 3 steps, 16 x 12 images).
"""

from __future__ import annotations

import io
import json
import os
import tarfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import gscodec
from gscodec.shards import iter_samples, read_manifest
from gscodec.shards import tar as shard_tar
from gscodec_cli.main import cli

FAST = ["--points", "8", "--iterations", "3"]


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner(env={"COLUMNS": "200"})


def _png(seed: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (12, 16, 3)).astype(np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def _member(name: str, data: bytes = b"", kind: bytes = tarfile.REGTYPE, link: str = "") -> tuple[tarfile.TarInfo,
                                                                                                      bytes]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.size, info.mtime = kind, link, len(data) if kind == tarfile.REGTYPE else 0, 1
    return info, data


def _tar(path: Path, members: list[tuple[tarfile.TarInfo, bytes]]) -> Path:
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tf:
        for info, data in members:
            tf.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return path


def _verify(runner: CliRunner, *args: str) -> tuple[int, dict]:
    """The exit status and the summary of ``gsi verify --json`` (totals, ``input_keys`` and ``problems``)."""
    result = runner.invoke(cli, ["verify", *args, "--json"])
    doc = json.loads(result.stdout)
    assert doc["command"] == "verify" and doc["ok"] == (result.exit_code == 0)
    return result.exit_code, doc["summary"]


# ----------------------------------------------------------------------------- 4. shards unsafe to unpack


def test_unsafe_and_special_members_are_listed_failures_never_copied(runner: CliRunner, tmp_path: Path) -> None:
    src = _tar(tmp_path / "in.tar", [
        _member("000001.png", _png(1)), _member("000001.txt", b"ok"),
        _member("../../x.png", _png(2)),                                  # the examples
        _member("/abs/y.png", _png(3)),
        _member("sub/../../z.png", _png(4)),                              # '..' in the middle
        _member("000005.png", _png(5)), _member("000005.txt", kind=tarfile.SYMTYPE, link="/etc/passwd"),
        _member("000006.txt", kind=tarfile.LNKTYPE, link="000001.txt"),
        _member("000007.png", kind=tarfile.FIFOTYPE),
        _member("000008.png", kind=tarfile.CHRTYPE),
        _member("000009.png", _png(9)), _member("000009.png", _png(10)),  # one name twice in a sample
    ])
    result = runner.invoke(cli, ["encode", str(src), "-o", str(tmp_path / "out"), *FAST])
    assert result.exit_code == 1, result.output
    manifest = read_manifest(tmp_path / "out" / "in.tar")
    assert [s.key for s in manifest.samples] == ["000001"]
    reasons = {f.key: f.error for f in manifest.failures}
    assert set(reasons) == {"../../x", "/abs/y", "sub/../../z", "000005", "000006", "000007", "000008", "000009"}
    assert "unsafe name" in reasons["../../x"] and "unsafe name" in reasons["/abs/y"]
    assert "a symbolic link" in reasons["000005"] and "a hard link" in reasons["000006"]
    assert "a FIFO" in reasons["000007"] and "a character device" in reasons["000008"]
    assert "appears twice" in reasons["000009"]
    with tarfile.open(tmp_path / "out" / "in.tar") as tf:
        assert [(m.name, m.isreg()) for m in tf] == [("000001.gsi", True), ("000001.txt", True)]
    assert _verify(runner, str(tmp_path / "out"), "--inputs", str(src))[0] == 0  # every input key accounted for


def test_verify_reports_unsafe_members_in_a_shard(runner: CliRunner, tmp_path: Path) -> None:
    (tmp_path / "set").mkdir()
    gsi = gscodec.encode(gscodec.read(_encoded_gsi(tmp_path)).gaussians)
    _tar(tmp_path / "set" / "bad.tar", [_member("../evil.gsi", gsi),
                                         _member("000002.gsi", kind=tarfile.SYMTYPE, link="/etc/shadow")])
    code, report = _verify(runner, str(tmp_path / "set"))
    assert code == 1
    problems = " ".join(report["problems"])
    assert "unsafe name" in problems and "a symbolic link" in problems


def test_the_shard_writer_refuses_unsafe_names(tmp_path: Path) -> None:
    with shard_tar.ShardWriter(tmp_path / "o.tar") as w:
        for name in ("../x.gsi", "/x.gsi", "a/../../x.gsi", "C:x.gsi", "..\\x.gsi"):
            with pytest.raises(shard_tar.ShardError, match="unsafe"):
                w.add(name, b"x")
        w.add("ok/x.gsi", b"x")
        w.add("..x.gsi", b"x")  # a dot-dot prefix of a name is not a parent folder
    assert not shard_tar.unsafe_name("./000001.gsi")


def _encoded_gsi(tmp_path: Path) -> Path:
    path = tmp_path / "one.gsi"
    img = tmp_path / "one.png"
    img.write_bytes(_png(0))
    CliRunner().invoke(cli, ["encode", str(img), *FAST])
    assert path.is_file()
    return path


# ----------------------------------------------------------------------------- 5. gsi verify misses tampering


def _encoded_set(runner: CliRunner, tmp_path: Path) -> tuple[Path, Path]:
    src = _tar(tmp_path / "in.tar", [_member("000001.png", _png(1)), _member("000001.txt", b"a cat"),
                                      _member("000002.png", _png(2)), _member("000002.txt", b"a dog"),
                                      _member("000003.png", _png(3)), _member("000003.txt", b"a car")])
    result = runner.invoke(cli, ["encode", str(src), "-o", str(tmp_path / "out"), *FAST])
    assert result.exit_code == 0, result.output
    return src, tmp_path / "out" / "in.tar"


def _rewrite(shard: Path, change) -> None:  # noqa: ANN001
    """Rewrite ``shard`` with ``change(members)`` applied to its ``[name, bytes]`` list, same tar layout."""
    with tarfile.open(shard) as tf:
        members = [[m, tf.extractfile(m).read()] for m in tf]
    change(members)
    with tarfile.open(shard, "w", format=tarfile.PAX_FORMAT) as tf:
        for info, data in members:
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))


def _recrc(data: bytes, offset: int) -> bytes:
    """``data`` (a .gsi file) with one metadata byte changed and its CRC-32 recomputed: still a valid file."""
    body = bytearray(data[:-4])
    body[offset] ^= 0x01  # '3' -> '2'
    return bytes(body) + zlib.crc32(body).to_bytes(4, "little")


@pytest.mark.parametrize("tamper", ["caption", "swap", "replace", "recrc"])
def test_verify_notices_every_kind_of_tampering(runner: CliRunner, tmp_path: Path, tamper: str) -> None:
    src, shard = _encoded_set(runner, tmp_path)
    assert _verify(runner, str(shard.parent), "--inputs", str(src))[0] == 0

    def change(m: list) -> None:  # noqa: ANN001 - members: [info, data] in tar order (gsi, txt per key)
        if tamper == "caption":  # the example: one flipped byte in a caption
            m[1][1] = bytes([m[1][1][0] ^ 1]) + m[1][1][1:]
        elif tamper == "swap":  # two .gsi members swapped
            m[0][1], m[2][1] = m[2][1], m[0][1]
        elif tamper == "replace":  # a member replaced by another valid .gsi, of another size
            m[0][1] = gscodec.encode(gscodec.decode(m[0][1]).gaussians, metadata={"x": "y" * 50})
        else:  # an edited .gsi with a recomputed CRC, same size
            m[4][1] = _recrc(m[4][1], m[4][1].index(b"000003.png") + 5)

    _rewrite(shard, change)
    if tamper == "recrc":
        assert gscodec.decode(_member_bytes(shard, "000003.gsi")).metadata["source"] == "000002.png"  # still valid
    code, report = _verify(runner, str(shard.parent))
    assert code == 1
    assert any("SHA-256" in p for p in report["problems"]), report["problems"]


def _member_bytes(shard: Path, name: str) -> bytes:
    return next(data for s in iter_samples(shard) for info, data in s.members if info.name == name)


def test_manifests_without_hashes_are_encoded_again(runner: CliRunner, tmp_path: Path) -> None:
    src, shard = _encoded_set(runner, tmp_path)
    path = shard.with_name("in.manifest.json")
    old = json.loads(path.read_text())
    old["version"] = 1
    for s in old["samples"]:
        del s["sha256"]
    path.write_text(json.dumps(old))
    result = runner.invoke(cli, ["encode", str(src), "-o", str(shard.parent), *FAST])
    assert result.exit_code == 0 and "3 encoded" in result.output  # not skipped as complete
    assert all(len(s.sha256) == 2 for s in read_manifest(shard).samples)


# ----------------------------------------------------------------------------- 6. reads sized by what the input declares


def _sparse_member(name: str, realsize: int) -> tuple[tarfile.TarInfo, bytes]:
    """A GNU sparse 1.0 member declaring ``realsize`` bytes that stores none (a few hundred bytes on disk)."""
    info = tarfile.TarInfo(f"GNUSparseFile.0/{name}")
    info.pax_headers = {"GNU.sparse.major": "1", "GNU.sparse.minor": "0", "GNU.sparse.name": name,
                        "GNU.sparse.realsize": str(realsize)}
    data = b"1\n0\n0\n".ljust(512, b"\0")  # one hole-only region
    info.size = len(data)
    return info, data


def test_a_20_gb_sparse_member_is_refused_unread(runner: CliRunner, tmp_path: Path) -> None:
    src = _tar(tmp_path / "in.tar", [_member("000001.png", _png(1)), _sparse_member("000002.png", 20 * 10**9),
                                      _member("000003.png", _png(3))])
    assert src.stat().st_size < 20_000
    samples = list(iter_samples(src))
    assert [s.key for s in samples] == ["000001", "000002", "000003"]
    assert "declares 20,000,000,000 bytes" in samples[1].rejected[0][1] and not samples[1].members
    result = runner.invoke(cli, ["encode", str(src), "-o", str(tmp_path / "out"), *FAST])
    assert result.exit_code == 1
    manifest = read_manifest(tmp_path / "out" / "in.tar")
    assert [s.key for s in manifest.samples] == ["000001", "000003"]
    assert [f.key for f in manifest.failures] == ["000002"]


def test_a_header_declaring_more_than_the_file_holds_is_reported(tmp_path: Path) -> None:
    src = _tar(tmp_path / "in.tar", [_member("000001.png", _png(1))])
    info = tarfile.TarInfo("000002.png")
    info.size = 20 * 10**9
    with open(src, "r+b") as fh:  # replace the end-of-archive blocks by a header with no data after it
        fh.seek(512 + ((len(_png(1)) + 511) // 512) * 512)
        fh.write(info.tobuf(tarfile.GNU_FORMAT))
        fh.truncate()
    seen = []
    with pytest.raises(shard_tar.ShardError, match="truncated or corrupt"):
        for s in iter_samples(src):
            seen.append(s.key)
    assert seen == ["000001"]


def test_sample_limits_on_each_side(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shard_tar, "MAX_SAMPLE_BYTES", 1000)
    monkeypatch.setattr(shard_tar, "MAX_SAMPLE_MEMBERS", 3)
    src = _tar(tmp_path / "in.tar", [
        _member("a.bin", b"x" * 1000),                                       # exactly the limit: read
        _member("b.bin", b"x" * 1001),                                       # one byte over: refused
        _member("c.bin", b"x" * 600), _member("c.txt", b"x" * 400),          # 1000 in all: read
        _member("d.bin", b"x" * 600), _member("d.txt", b"x" * 401),          # 1001 in all: the second refused
        _member("e.1", b"1"), _member("e.2", b"2"), _member("e.3", b"3"),    # three members: read
        _member("f.1", b"1"), _member("f.2", b"2"), _member("f.3", b"3"), _member("f.4", b"4"),  # four: refused
    ])
    got = {s.key: ([i.name for i, _ in s.members], [r for r, _ in s.rejected]) for s in iter_samples(src)}
    assert got == {"a": (["a.bin"], []), "b": ([], ["b.bin"]), "c": (["c.bin", "c.txt"], []),
                   "d": (["d.bin"], ["d.txt"]), "e": (["e.1", "e.2", "e.3"], []),
                   "f": (["f.1", "f.2", "f.3"], ["f.4"])}


def _gsi_bytes(seed: int) -> bytes:
    import torch

    g = torch.Generator().manual_seed(seed)
    gauss = gscodec.GaussianImage(16, 12, torch.rand(6, 2, generator=g) * torch.tensor([16, 12]),
                                  torch.tensor([[2.0, 0.0, 2.0]]).repeat(6, 1), torch.rand(6, 3, generator=g))
    return gscodec.format.encode(gauss)


def test_training_shards_read_members_under_the_shard_limits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The head's tar stream reads through the shard reader: hostile samples are skipped and named, never read."""
    from gscodec.clip import GsiTarDataset

    monkeypatch.setattr(shard_tar, "MAX_SAMPLE_MEMBERS", 4)
    good = lambda key, seed: [_member(f"{key}.gsi", _gsi_bytes(seed)), _member(f"{key}.txt", key.encode())]  # noqa
    src = _tar(tmp_path / "train.tar", [
        *good("000001", 1),
        _member("000002.txt", b"x"), _sparse_member("000002.gsi", 20 * 10**9),    # the example
        *good("000003", 3),
        _member("000004.gsi", _gsi_bytes(4)), _member("000004.txt", kind=tarfile.SYMTYPE, link="/etc/passwd"),
        _member("000005.gsi", kind=tarfile.FIFOTYPE), _member("000006.gsi", kind=tarfile.CHRTYPE),
        _member("../000007.gsi", _gsi_bytes(7)), _member("../000007.txt", b"x"),
        *[_member(f"000008.{i}", b"x") for i in range(4)], *good("000008", 8),  # six members: over the limit
        *good("000009", 9),
    ])
    assert src.stat().st_size < 40_000
    extract = tarfile.TarFile.extractfile
    refused = {"000002.gsi", "000004.txt", "000005.gsi", "000006.gsi", "../000007.gsi",
               "../000007.txt", "000008.gsi", "000008.txt"}

    def only_safe(self: tarfile.TarFile, member: tarfile.TarInfo | str):  # a read of a refused member fails here
        name = member if isinstance(member, str) else member.name
        assert name not in refused, name
        return extract(self, member)

    monkeypatch.setattr(tarfile.TarFile, "extractfile", only_safe)
    with pytest.warns(UserWarning) as warned:
        samples = list(GsiTarDataset([str(src)], need_caption=True))
    assert [s["key"] for s in samples] == [f"{src}:000001", f"{src}:000003", f"{src}:000009"]
    assert [s["caption"] for s in samples] == ["000001", "000003", "000009"]
    text = "\n".join(str(w.message) for w in warned)
    for reason in ("000002: member '000002.gsi' declares 20,000,000,000 bytes",
                   "000004: member '000004.txt' is a symbolic link", "000005: member '000005.gsi' is a FIFO",
                   "000006: member '000006.gsi' is a character device", "../000007: member '../000007.gsi' has "
                   "an unsafe name", "000008: sample '000008' has more than 4 members"):
        assert reason in text, text


def test_training_captions_are_read_only_from_regular_files_within_the_limit(tmp_path: Path,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from gscodec.clip import data

    monkeypatch.setattr(data, "MAX_SAMPLE_BYTES", 10)
    for name, caption in (("at", b"0123456789"), ("over", b"0123456789A")):
        (tmp_path / f"{name}.gsi").write_bytes(_gsi_bytes(1))
        (tmp_path / f"{name}.txt").write_bytes(caption)
    (tmp_path / "fifo.gsi").write_bytes(_gsi_bytes(2))
    os.mkfifo(tmp_path / "fifo.txt")  # a plain read would block here for ever
    with pytest.warns(UserWarning) as warned:
        ds = data.open_dataset([tmp_path], need_caption=True)
    assert [Path(p).name for p in ds.paths] == ["at.gsi"] and ds.captions == ["0123456789"]
    text = "\n".join(str(w.message) for w in warned)
    assert "over.txt has 11 bytes, over the limit of 10; not read" in text
    assert "fifo.txt not read: not a regular file (a FIFO)" in text
