"""Finding the inputs of `gsi encode`: images (files, folders, globs) and where each `.gsi` goes; tar shards; lists."""

from __future__ import annotations

import fnmatch
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from gscodec.files import regular_file_problem
from gscodec.imageio import image_extensions
from gscodec.limits import MAX_SAMPLE_BYTES
from gscodec.shards import is_tar_name

from .common import error_text

_MAGIC = frozenset("*?[")


STDIN = STDOUT = Path("-")
"""The path of standard input (a :class:`Job` input) or standard output (its output)."""


@dataclass(frozen=True)
class Job:
    """One image to encode and its output path; ``data``: the image's bytes when they came from standard input."""

    input: Path
    output: Path
    data: bytes | None = field(default=None, repr=False, compare=False)

    @property
    def source(self) -> str:
        """The ``source`` metadata of the output: the input's file name, ``stdin`` for standard input."""
        return "stdin" if self.data is not None else self.input.name


@dataclass
class Discovery:
    """What the inputs expand to: jobs, inputs that failed to expand, folders without images, and clashes
    between outputs (each a sentence; any clash means the run must not start)."""

    jobs: list[Job] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)
    empty_folders: list[Path] = field(default_factory=list)
    clashes: list[str] = field(default_factory=list)


def has_magic(text: str) -> bool:
    """Whether ``text`` is a glob pattern (``*``, ``?`` or ``[``)."""
    return any(c in _MAGIC for c in text)


_has_magic = has_magic


def read_stdin_image(stream: BinaryIO) -> bytes:
    """The bytes of the image on standard input, at most :data:`~gscodec.limits.MAX_SAMPLE_BYTES`
    (``OSError`` past that, or when nothing came)."""
    data = stream.read(MAX_SAMPLE_BYTES + 1)
    if len(data) > MAX_SAMPLE_BYTES:
        raise OSError(f"standard input holds more than {MAX_SAMPLE_BYTES:,} bytes, over the limit of one image")
    if not data:
        raise OSError("standard input is empty: no image to encode")
    return data


def _glob_root(pattern: str) -> Path:
    """The leading folders of ``pattern`` before its first wildcard."""
    parts = Path(pattern).parts
    root: list[str] = []
    for part in parts[:-1]:
        if _has_magic(part):
            break
        root.append(part)
    return Path(*root) if root else Path(".")


def _folders_below(base: str) -> list[str]:
    """``base`` and every folder below it, hidden ones skipped, never entering a symbolically linked folder."""
    out: list[str] = []
    for dirpath, dirnames, _ in os.walk(base or os.curdir):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        out.append(dirpath if base else os.path.relpath(dirpath))
    return out


def safe_glob(pattern: str) -> list[str]:
    """The paths matching ``pattern``, sorted: :func:`glob.glob` with ``recursive=True``, except that ``**``
    never enters a symbolically linked folder (one linking up the tree would repeat it without end).

    Wildcards match hidden names only when the pattern part starts with a dot, as in :mod:`glob`.
    """
    path = Path(pattern)
    parts = path.parts[1:] if path.anchor else path.parts
    current = [path.anchor]
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        found: list[str] = []
        for base in current:
            if part == "**":
                found += _folders_below(base)
            elif _has_magic(part):
                try:
                    with os.scandir(base or os.curdir) as entries:
                        names = [e.name for e in entries if last or e.is_dir()]
                except OSError:
                    continue
                hidden = part.startswith(".")
                found += [os.path.join(base, n) for n in fnmatch.filter(names, part)
                          if hidden or not n.startswith(".")]
            else:
                candidate = os.path.join(base, part)
                if os.path.lexists(candidate) if last else os.path.isdir(candidate):
                    found.append(candidate)
        current = found
    return sorted(set(current))


def _walk(folder: Path, extensions: frozenset[str], problems: list[tuple[str, str]]) -> list[Path]:
    """Image files under ``folder`` (recursive, sorted, hidden entries and linked folders skipped).

    Entries with an image extension that are not readable regular files (FIFOs,
    symbolic link loops, broken links) and unreadable folders are added to ``problems``.
    """
    found: list[Path] = []

    def unreadable(exc: OSError) -> None:
        problems.append((str(exc.filename), f"cannot list folder: {error_text(exc)}"))

    for dirpath, dirnames, filenames in os.walk(folder, onerror=unreadable):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if not name.startswith(".") and os.path.splitext(name)[1].lower() in extensions:
                path = Path(dirpath) / name
                if (problem := regular_file_problem(path)) is not None:
                    problems.append((str(path), problem))
                else:
                    found.append(path)
    return found


def _outside(rel: str) -> bool:
    return os.path.isabs(rel) or rel == os.pardir or rel.startswith(os.pardir + os.sep)


def _output_for(path: Path, root: Path, outdir: Path | None, keep_suffix: bool = False) -> Path:
    """Where ``path`` (found below ``root``) is encoded to: its place below ``root`` mirrored under ``outdir``
    (by the normalized path, so ``..`` cannot climb out), or ``OUTDIR/NAME.gsi`` when it lies outside ``root``."""
    name = path.name + ".gsi" if keep_suffix else path.with_suffix(".gsi").name
    if outdir is None:
        return path.with_name(name)
    rel = os.path.relpath(os.path.abspath(path), os.path.abspath(root))
    if _outside(rel):  # reached through '..' after a wildcard
        rel = path.name
    return outdir / Path(rel).with_name(name)


def _key(path: Path) -> str:
    """Identity of a path for clashes: its absolute, normalized form (symbolic links resolved where they exist)."""
    return os.path.normcase(os.path.realpath(path))


def discover(specs: list[str], outdir: Path | None) -> Discovery:
    """Expand files, folders (recursively, image extensions only) and globs into jobs.

    Outputs mirror each input's path below its folder (or the glob's fixed
    prefix) under ``outdir``, or sit next to the input when ``outdir`` is
    ``None``; an input outside that folder (a ``..`` after a wildcard) goes
    straight into ``outdir``. Inputs that would share an output (``a.png``
    and ``a.jpg``) keep their suffix (``a.png.gsi``); outputs that still
    clash (``a/x.png`` and ``b/x.png`` into one folder), outputs that would
    replace an input, and outputs that would land outside ``outdir`` through
    a symbolic link are listed in :attr:`Discovery.clashes` and the run must
    not start. Explicit files are always tried, whatever their extension;
    duplicates (the same file twice) are dropped; FIFOs, devices, link loops
    and broken links are listed as problems, never opened.
    """
    result = Discovery()
    extensions = image_extensions()
    found: list[tuple[Path, Path]] = []  # (input, root)

    def add_file(path: Path, root: Path) -> None:
        if (problem := regular_file_problem(path)) is not None:
            result.problems.append((str(path), problem))
        else:
            found.append((path, root))

    for spec in specs:
        path = Path(spec)
        if path.is_dir():
            files = _walk(path, extensions, result.problems)
            if not files:
                result.empty_folders.append(path)
            found += [(f, path) for f in files]
        elif _has_magic(spec):
            matches = safe_glob(spec)
            root = _glob_root(spec)
            for m in map(Path, matches):
                if m.is_dir():
                    found += [(f, root) for f in _walk(m, extensions, result.problems)]
                else:
                    add_file(m, root)
            if not matches:
                result.problems.append((spec, "no files match this pattern"))
        elif os.path.lexists(path):
            add_file(path, path.parent)
        else:
            result.problems.append((spec, "no such file or folder"))

    seen: set[str] = set()
    unique: list[tuple[Path, Path]] = []
    for path, root in found:
        if (key := _key(path)) not in seen:
            seen.add(key)
            unique.append((path, root))

    planned = [_output_for(p, r, outdir) for p, r in unique]
    counts = Counter(_key(out) for out in planned)
    suffixed = [_output_for(p, r, outdir, keep_suffix=True) if counts[_key(out)] > 1 else out
                for (p, r), out in zip(unique, planned)]
    still = Counter(_key(out) for out in suffixed)
    jobs: list[Job] = []
    for (path, root), out, alternative in zip(unique, planned, suffixed):
        if still[_key(alternative)] == 1:  # the suffix tells them apart (a.png, a.jpg); else the clash is named
            out = alternative
        if _key(out) == _key(path):
            result.problems.append((str(path), "is already a .gsi file"))
            continue
        jobs.append(Job(path, out))
    result.clashes = _clashes(jobs, outdir)
    result.jobs = jobs
    return result


def _clashes(jobs: list[Job], outdir: Path | None) -> list[str]:
    """Why ``jobs`` cannot all run: shared outputs, outputs replacing inputs, outputs leading out of ``outdir``."""
    clashes: list[str] = []
    by_output: dict[str, list[Job]] = {}
    for job in jobs:
        by_output.setdefault(_key(job.output), []).append(job)
    for same in by_output.values():
        if len(same) > 1:
            names = " and ".join(str(j.input) for j in same)
            clashes.append(f"{names} would {'both' if len(same) == 2 else 'all'} be written to {same[0].output}")
    inputs = {_key(j.input): j.input for j in jobs}
    for job in jobs:
        if (replaced := inputs.get(_key(job.output))) is not None:
            clashes.append(f"the output {job.output} of {job.input} would replace the input {replaced}")
    if outdir is not None:
        top = os.path.realpath(outdir)
        for job in jobs:
            if _outside(os.path.relpath(os.path.realpath(job.output.parent), top)):
                clashes.append(f"the output folder {job.output.parent} of {job.input} leads out of {outdir} "
                               "(a symbolic link)")
    return clashes


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
                files = [Path(m) for m in safe_glob(item) if os.path.isfile(m)]
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
                matches = sorted(Path(m) for m in safe_glob(item) if os.path.isfile(m))
                if not matches:
                    result.problems.append((item, "no files match this pattern"))
                found += [m for m in matches if is_tar_name(m.name)]
            else:
                result.problems.append((item, "no such file or folder"))
    seen: set[str] = set()
    for p in found:
        if _key(p) not in seen:
            seen.add(_key(p))
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
