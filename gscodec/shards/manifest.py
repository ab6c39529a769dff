"""Shard manifests: a JSON file next to each finished output shard saying what it holds and what it came from.

``out/000.tar`` has ``out/000.manifest.json``::

    {"format": "gscodec-shard-manifest", "version": 1,
     "shard": "000.tar", "bytes": 81920,                      # the tar as written
     "inputs": [{"path": "/data/in/000.tar", "bytes": 1048576, "mtime_ns": 1700000000000000000}],
     "samples": [{"key": "000001", "source": "000001.jpg", "members": ["000001.gsi", "000001.txt"],
                  "gsi_bytes": 3120, "psnr": 27.31, "width": 224, "height": 224, "gaussians": 900,
                  "sha256": ["9f86d0...", "60303a..."]}, ...],          # per member, in "members" order
     "failures": [{"key": "000007", "source": "000007.jpg", "error": "file is truncated (...)"}],
     "errors": [],                                            # input-level problems (a truncated input tar)
     "settings": {...}, "encoder": "gscodec 0.1.0", "rank": 0, "world_size": 2, "seconds": 12.3}

The manifest is written (atomically) only after the shard itself is complete,
so a shard with a manifest whose inputs still have the recorded size and
modification time is finished and need not be encoded again. The SHA-256 of
every member lets ``gsi verify`` notice any change to the shard's contents.
Version 1 manifests (without hashes) are not read: their shards are encoded again.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

from ..files import open_regular
from ..format import WriteError, write_atomic
from ..limits import MAX_MANIFEST_BYTES
from .tar import ShardError, shard_stem

MANIFEST_FORMAT = "gscodec-shard-manifest"
MANIFEST_VERSION = 2
MANIFEST_SUFFIX = ".manifest.json"


class ManifestError(ShardError):
    """A manifest is missing, unreadable or malformed."""


@dataclass(frozen=True)
class InputFile:
    """An input file as it was when it was encoded: absolute path, size and modification time (-1: missing)."""

    path: str
    bytes: int
    mtime_ns: int

    @classmethod
    def of(cls, path: str | os.PathLike) -> "InputFile":
        """The current state of ``path`` (``bytes`` and ``mtime_ns`` are -1 when it does not exist)."""
        resolved = os.path.realpath(path)
        try:
            st = os.stat(resolved)
        except OSError:
            return cls(resolved, -1, -1)
        return cls(resolved, st.st_size, st.st_mtime_ns)


@dataclass(frozen=True)
class SampleEntry:
    """One encoded sample: its key, the image member (or file) it came from, its output members and their
    SHA-256 digests (hex, in ``members`` order)."""

    key: str
    source: str
    members: list[str]
    gsi_bytes: int
    psnr: float | None
    width: int
    height: int
    gaussians: int
    sha256: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class FailureEntry:
    """One input sample that was not encoded, and why."""

    key: str
    source: str
    error: str


@dataclass
class Manifest:
    """What an output shard holds; see the module docstring for the JSON layout."""

    shard: str
    bytes: int
    inputs: list[InputFile]
    samples: list[SampleEntry] = field(default_factory=list)
    failures: list[FailureEntry] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    encoder: str = ""
    rank: int = 0
    world_size: int = 1
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        """The JSON object (non-finite PSNRs, i.e. perfect fits, become ``null``)."""
        d = {"format": MANIFEST_FORMAT, "version": MANIFEST_VERSION, **asdict(self)}
        for s in d["samples"]:
            if s["psnr"] is not None and not math.isfinite(s["psnr"]):
                s["psnr"] = None
        return d

    @classmethod
    def from_json(cls, d: Any, where: str = "manifest") -> "Manifest":
        """Parse :meth:`to_json` output; raises :class:`ManifestError` for anything else."""
        if not isinstance(d, dict) or d.get("format") != MANIFEST_FORMAT:
            raise ManifestError(f"{where} is not a gscodec shard manifest")
        if d.get("version") != MANIFEST_VERSION:
            raise ManifestError(f"{where} has unsupported version {d.get('version')!r}")
        try:
            return cls(shard=str(d["shard"]), bytes=int(d["bytes"]),
                       inputs=[InputFile(str(i["path"]), int(i["bytes"]), int(i["mtime_ns"])) for i in d["inputs"]],
                       samples=[SampleEntry(str(s["key"]), str(s["source"]), [str(m) for m in s["members"]],
                                            int(s["gsi_bytes"]), None if s["psnr"] is None else float(s["psnr"]),
                                            int(s["width"]), int(s["height"]), int(s["gaussians"]),
                                            [str(h) for h in s["sha256"]])
                                for s in d["samples"]],
                       failures=[FailureEntry(str(f["key"]), str(f["source"]), str(f["error"])) for f in d["failures"]],
                       errors=[str(e) for e in d.get("errors", [])], settings=dict(d.get("settings", {})),
                       encoder=str(d.get("encoder", "")), rank=int(d.get("rank", 0)),
                       world_size=int(d.get("world_size", 1)), seconds=float(d.get("seconds", 0.0)))
        except (KeyError, TypeError, ValueError) as exc:
            raise ManifestError(f"{where} is malformed: {type(exc).__name__}: {exc}") from None


def digest(data: bytes) -> str:
    """The SHA-256 of ``data`` as a manifest records it (hex)."""
    return hashlib.sha256(data).hexdigest()


def manifest_path(shard: str | os.PathLike) -> Path:
    """``out/000.tar`` -> ``out/000.manifest.json``."""
    p = Path(shard)
    return p.with_name(shard_stem(p.name) + MANIFEST_SUFFIX)


def write_manifest(shard: str | os.PathLike, manifest: Manifest) -> Path:
    """Write ``manifest`` next to ``shard`` atomically; returns its path."""
    path = manifest_path(shard)
    text = json.dumps(manifest.to_json(), indent=1, ensure_ascii=False) + "\n"
    try:
        write_atomic(path, text.encode("utf-8"))
    except (WriteError, OSError) as exc:
        raise ManifestError(f"cannot write manifest {path}: {exc}") from None
    return path


def read_manifest(shard: str | os.PathLike) -> Manifest:
    """The manifest of ``shard``; raises :class:`ManifestError` when it is missing or invalid."""
    path = manifest_path(shard)
    try:
        with open_regular(path) as fh:
            raw = fh.read(MAX_MANIFEST_BYTES + 1)
        if len(raw) > MAX_MANIFEST_BYTES:
            raise ManifestError(f"manifest {path} is over the limit of {MAX_MANIFEST_BYTES:,} bytes")
        data = json.loads(raw.decode("utf-8"))
    except FileNotFoundError:
        raise ManifestError(f"{path} does not exist") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ManifestError(f"cannot read manifest {path}: {getattr(exc, 'strerror', None) or exc}") from None
    return Manifest.from_json(data, str(path))


def finished(shard: str | os.PathLike, inputs: Sequence[InputFile]) -> Manifest | None:
    """The manifest of ``shard`` if the shard is complete for ``inputs`` (as they are now), else ``None``.

    Complete: the manifest reads, the shard exists with the recorded size, and
    the recorded inputs are exactly ``inputs`` (same paths, sizes and times).
    """
    try:
        manifest = read_manifest(shard)
        size = os.stat(shard).st_size
    except (ManifestError, OSError):
        return None
    if size != manifest.bytes or list(manifest.inputs) != list(inputs):
        return None
    return manifest


__all__ = ["FailureEntry", "InputFile", "MANIFEST_SUFFIX", "Manifest", "ManifestError", "SampleEntry", "digest",
           "finished", "manifest_path", "read_manifest", "write_manifest"]
