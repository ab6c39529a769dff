"""Planning sharded encoding: which output shard each input goes to, and which process encodes it.

Tar inputs: one output shard per input shard, named like it (``in/000.tar.gz``
-> ``OUT/000.tar``), indexed in sorted path order. An input list: fixed-size
chunks of its lines become ``OUT/list-000000.tar``, ``list-000001.tar``, ...,
the key of line ``i`` (from 0) being ``f"{i:09d}"``. Process ``rank`` of
``world`` encodes the tasks whose index is ``rank`` modulo ``world``, so every
input lands in exactly one output, encoded by exactly one process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from .manifest import InputFile, manifest_path
from .tar import shard_stem

SIDECAR_EXTENSIONS = ("txt", "json")
"""Input lists: ``photo.txt``/``photo.json`` next to ``photo.jpg`` go into the shard as ``KEY.txt``/``KEY.json``."""

LIST_KEY_DIGITS = 9


class PlanError(ValueError):
    """The inputs cannot be mapped onto output shards (e.g. two input shards share a name)."""


@dataclass(frozen=True)
class ShardTask:
    """One output shard to write: from an input tar shard, or from ``(key, image path)`` pairs of an input list."""

    index: int
    output: Path
    tar: Path | None = None
    files: tuple[tuple[str, Path], ...] = ()

    @property
    def source(self) -> str:
        """A short description of the input."""
        if self.tar is not None:
            return str(self.tar)
        first, last = self.files[0][0], self.files[-1][0]
        return f"list keys {first}..{last}"

    def input_paths(self) -> list[Path]:
        """Every file the shard is made from: the tar, or each listed image and its existing sidecars."""
        if self.tar is not None:
            return [self.tar]
        out: list[Path] = []
        for _, path in self.files:
            out.append(path)
            out += [s for s in sidecars(path) if s.is_file()]
        return out

    def fingerprint(self) -> list[InputFile]:
        """The current state of :meth:`input_paths` (what a manifest records and resuming compares)."""
        return [InputFile.of(p) for p in self.input_paths()]


def sidecars(image: Path) -> list[Path]:
    """The possible caption/metadata files of a listed image: same stem, :data:`SIDECAR_EXTENSIONS`."""
    return [image.with_suffix(f".{ext}") for ext in SIDECAR_EXTENSIONS]


def plan_tar_shards(shards: Sequence[str | os.PathLike], outdir: str | os.PathLike) -> list[ShardTask]:
    """One task per input shard (duplicates dropped), indexed in sorted path order.

    Raises :class:`PlanError` when two input shards would give the same output name, or an output
    would replace an input.
    """
    unique: dict[str, Path] = {}
    for s in shards:
        unique.setdefault(os.path.realpath(s), Path(s))
    ordered = sorted(unique.values(), key=lambda p: str(p))
    tasks, names = [], {}
    for i, path in enumerate(ordered):
        name = shard_stem(path.name) + ".tar"
        if name in names:
            raise PlanError(f"input shards {names[name]} and {path} would both be written to {name}; "
                            "give shards with distinct names")
        names[name] = path
        output = Path(outdir) / name
        if os.path.realpath(output) in unique:
            raise PlanError(f"output shard {output} would replace the input shard {unique[os.path.realpath(output)]}; "
                            "write to another folder")
        tasks.append(ShardTask(i, output, tar=path))
    return tasks


def list_key(line: int) -> str:
    """The sample key of line ``line`` (from 0) of an input list."""
    return f"{line:0{LIST_KEY_DIGITS}d}"


def plan_input_list(paths: Sequence[str | os.PathLike], outdir: str | os.PathLike,
                    shard_size: int) -> list[ShardTask]:
    """Chunks of ``shard_size`` listed images, in list order, as ``list-000000.tar``, ``list-000001.tar``, ...

    Raises :class:`PlanError` when an output shard or its manifest would replace a listed file or a sidecar.
    """
    if shard_size < 1:
        raise ValueError(f"shard_size must be positive, got {shard_size}")
    items = [(list_key(i), Path(p)) for i, p in enumerate(paths)]
    tasks = [ShardTask(k, Path(outdir) / f"list-{k:06d}.tar", files=tuple(items[s:s + shard_size]))
             for k, s in enumerate(range(0, len(items), shard_size))]
    listed = {os.path.realpath(q): q for _, p in items for q in [p, *sidecars(p)]}
    for task in tasks:
        for out in (task.output, manifest_path(task.output)):
            if (replaced := listed.get(os.path.realpath(out))) is not None:
                raise PlanError(f"output {out} would replace the listed file {replaced}; write to another folder")
    return tasks


def assign(tasks: Sequence[ShardTask], rank: int, world_size: int) -> list[ShardTask]:
    """The tasks of process ``rank`` of ``world_size``: those whose index is ``rank`` modulo ``world_size``."""
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is not in 0..{world_size - 1}")
    return [t for t in tasks if t.index % world_size == rank]


def parse_shard_spec(text: str) -> tuple[int, int]:
    """``"1/4"`` -> ``(1, 4)``: part ``I`` (counted from 0) of ``N``; raises ``ValueError``."""
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise ValueError(f"expected I/N with whole numbers (e.g. 0/4), got {text!r}") from None
    if n < 1 or not 0 <= i < n:
        raise ValueError(f"expected I/N with 0 <= I < N (I counts from 0), got {text!r}")
    return i, n


__all__ = ["PlanError", "SIDECAR_EXTENSIONS", "ShardTask", "assign", "list_key", "parse_shard_spec",
           "plan_input_list", "plan_tar_shards", "sidecars"]
