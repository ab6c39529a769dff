"""Finding the inputs of `gsi encode`: images (files, folders, globs) and where each `.gsi` goes; tar shards; lists."""

from __future__ import annotations

import glob
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from gscodec.imageio import image_extensions
from gscodec.shards import is_tar_name

_MAGIC = frozenset("*?[")


@dataclass(frozen=True)
class Job:
    """One image to encode and its output path."""

    input: Path
    output: Path


@dataclass
class Discovery:
    """What the inputs expand to: jobs, inputs that failed to expand, and folders without images."""

    jobs: list[Job] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)
    empty_folders: list[Path] = field(default_factory=list)


def _has_magic(text: str) -> bool:
    return any(c in _MAGIC for c in text)


def _glob_root(pattern: str) -> Path:
    """The leading folders of ``pattern`` before its first wildcard."""
    parts = Path(pattern).parts
    root: list[str] = []
    for part in parts[:-1]:
        if _has_magic(part):
            break
        root.append(part)
    return Path(*root) if root else Path(".")


def _walk(folder: Path, extensions: frozenset[str]) -> list[Path]:
    """Image files under ``folder`` (recursive, sorted, hidden entries skipped)."""
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if not name.startswith(".") and os.path.splitext(name)[1].lower() in extensions:
                found.append(Path(dirpath) / name)
    return found


def _output_for(path: Path, root: Path, outdir: Path | None, keep_suffix: bool = False) -> Path:
    name = path.name + ".gsi" if keep_suffix else path.with_suffix(".gsi").name
    if outdir is None:
        return path.with_name(name)
    return outdir / path.relative_to(root).with_name(name)


def discover(specs: list[str], outdir: Path | None) -> Discovery:
    """Expand files, folders (recursively, image extensions only) and globs into jobs.

    Outputs mirror each input's path below its folder (or the glob's fixed
    prefix) under ``outdir``, or sit next to the input when ``outdir`` is
    ``None``. Inputs that would share an output (``a.png`` and ``a.jpg``) keep
    their suffix (``a.png.gsi``). Explicit files are always tried, whatever
    their extension; duplicates are dropped.
    """
    result = Discovery()
    extensions = image_extensions()
    found: list[tuple[Path, Path]] = []  # (input, root)
    for spec in specs:
        path = Path(spec)
        if path.is_dir():
            files = _walk(path, extensions)
            if not files:
                result.empty_folders.append(path)
            found += [(f, path) for f in files]
        elif path.is_file():
            found.append((path, path.parent))
        elif _has_magic(spec):
            matches = sorted(glob.glob(spec, recursive=True))
            root = _glob_root(spec)
            before = len(found)
            for m in map(Path, matches):
                if m.is_dir():
                    found += [(f, root) for f in _walk(m, extensions)]
                elif m.is_file():
                    found.append((m, root))
            if len(found) == before:
                result.problems.append((spec, "no files match this pattern"))
        elif path.exists():
            result.problems.append((spec, "not a regular file or folder"))
        else:
            result.problems.append((spec, "no such file or folder"))

    seen: set[Path] = set()
    unique: list[tuple[Path, Path]] = []
    for path, root in found:
        key = path.resolve()
        if key not in seen:
            seen.add(key)
            unique.append((path, root))

    planned = [_output_for(p, r, outdir) for p, r in unique]
    counts: dict[Path, int] = {}
    for out in planned:
        counts[out.resolve()] = counts.get(out.resolve(), 0) + 1
    for (path, root), out in zip(unique, planned):
        if counts[out.resolve()] > 1:
            out = _output_for(path, root, outdir, keep_suffix=True)
        if out.resolve() == path.resolve():
            result.problems.append((str(path), "is already a .gsi file"))
            continue
        result.jobs.append(Job(path, out))
    return result


# --- tar shards and input lists ----------------------------------------------------------------------------

_BRACE = re.compile(r"\{([^{}]*)\}")


def expand_braces(text: str) -> list[str]:
    """Shell-style brace expansion, as webdataset shard lists use: ``a/{000..002}.tar``, ``{x,y}.tar``.

    Numeric ranges keep zero padding (``{008..010}`` -> ``008 009 010``);
    several braces multiply; text without a valid brace is returned as is.
    """
    for m in _BRACE.finditer(text):
        body = m.group(1)
        numeric = re.fullmatch(r"(-?\d+)\.\.(-?\d+)", body)
        if numeric:
            a, b = numeric.group(1), numeric.group(2)
            width = max(len(a), len(b)) if (a.lstrip("-").startswith("0") or b.lstrip("-").startswith("0")) else 0
            lo, hi = int(a), int(b)
            step = 1 if hi >= lo else -1
            options = [f"{v:0{width}d}" for v in range(lo, hi + step, step)]
        elif "," in body:
            options = body.split(",")
        else:
            continue
        head, tail = text[:m.start()], text[m.end():]
        return [x for opt in options for x in expand_braces(head + opt + tail)]
    return [text]


def _top_level(folder: Path) -> list[Path]:
    try:
        return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    except OSError:
        return []


def _is_shard_folder(folder: Path) -> bool:
    """A folder of shards: tar files at its top level and no images there."""
    files = _top_level(folder)
    images = image_extensions()
    return any(is_tar_name(p.name) for p in files) and not any(p.suffix.lower() in images for p in files)


def input_kind(specs: list[str]) -> str:
    """``"shards"`` when every spec names tar shards (files, globs, brace patterns, folders of tars),
    ``"images"`` when none does, ``"mixed"`` otherwise."""
    kinds = set()
    for spec in specs:
        for item in expand_braces(spec):
            path = Path(item)
            if path.is_dir():
                kinds.add(_is_shard_folder(path))
            elif path.is_file() or not _has_magic(item):
                kinds.add(is_tar_name(path.name))
            else:
                files = [Path(m) for m in glob.glob(item, recursive=True) if os.path.isfile(m)]
                kinds.add(all(is_tar_name(f.name) for f in files) if files else is_tar_name(path.name))
    if kinds == {True}:
        return "shards"
    return "images" if kinds <= {False} else "mixed"


@dataclass
class ShardDiscovery:
    """Tar shards found (sorted, unique) and specs that matched nothing."""

    shards: list[Path] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)


def discover_shards(specs: list[str]) -> ShardDiscovery:
    """Expand tar files, brace patterns, globs and folders (their top-level tar files) into shard paths."""
    result = ShardDiscovery()
    found: list[Path] = []
    for spec in specs:
        for item in expand_braces(spec):
            path = Path(item)
            if path.is_dir():
                tars = [p for p in _top_level(path) if is_tar_name(p.name)]
                if not tars:
                    result.problems.append((item, "no tar shards in this folder"))
                found += tars
            elif path.is_file():
                found.append(path)
            elif _has_magic(item):
                matches = sorted(Path(m) for m in glob.glob(item, recursive=True) if os.path.isfile(m))
                if not matches:
                    result.problems.append((item, "no files match this pattern"))
                found += [m for m in matches if is_tar_name(m.name)]
            else:
                result.problems.append((item, "no such file or folder"))
    seen: set[Path] = set()
    for p in found:
        if p.resolve() not in seen:
            seen.add(p.resolve())
            result.shards.append(p)
    result.shards.sort(key=str)
    return result


def read_input_list(path: Path) -> list[Path]:
    """Image paths of an input list, one per line; blank lines and ``#`` comments are skipped.

    Relative paths are relative to the list file's folder. Raises ``OSError``
    when the list cannot be read.
    """
    base = path.parent
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise OSError(f"{path} is not UTF-8 text: {exc}") from None
    out: list[Path] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        p = Path(line)
        out.append(p if p.is_absolute() else base / p)
    return out
