"""Finding the images to encode (files, folders, globs) and where each `.gsi` goes."""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass, field
from pathlib import Path

from gscodec.imageio import image_extensions

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
