"""`gsi encode` over tar shards and input lists: one output tar shard and manifest per task, split over processes.

Each task (see :mod:`gscodec.shards.plan`) is written by one process: its
output tar goes to a hidden temporary name and is renamed when complete, then
its manifest is written; a task whose manifest matches its inputs is skipped,
so an interrupted run (Ctrl-C, a killed ``torchrun`` worker) resumes without
redoing finished shards and without duplicates. Images are fitted with
:func:`gscodec.encoder.fit_images`, the same path as single files.
"""

from __future__ import annotations

import errno
import os
import tarfile
import time
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable, Iterator

import click
import numpy as np
from rich.console import Console

from gscodec import distributed
from gscodec.encoder import ENCODER, Fitted, fit_images
from gscodec.files import open_regular
from gscodec.imageio import ImageReadError, load_image_bytes
from gscodec.limits import MAX_SAMPLE_BYTES
from gscodec.shards import (FailureEntry, Manifest, ManifestError, PlanError, SampleEntry, ShardError, ShardTask,
                            ShardWriter, TarSample, assign, finished, image_member_extensions, iter_samples,
                            parse_shard_spec, plan_input_list, plan_tar_shards, remove_stale_temps, write_manifest)
from gscodec.shards.manifest import digest
from gscodec.shards.plan import sidecars

from .common import display_path, echo_json, err_console, error_text, human_bytes, printable, safe
from .encoding import Settings
from .inputs import discover_shards, read_input_list
from .signals import Terminated, sigterm_unwinds

GROUP_TIMEOUT = timedelta(days=7)
"""How long the processes of a ``torchrun`` job wait for each other at the end (the slowest may lag by hours)."""


@dataclass
class ShardOutcome:
    """What happened to one output shard: ``encoded``, ``skipped`` (already complete) or ``failed``."""

    shard: str
    status: str
    source: str
    samples: int = 0
    failures: int = 0
    bytes: int = 0
    seconds: float = 0.0
    rank: int = 0
    errors: list[str] = field(default_factory=list)
    stale: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_manifest(cls, task: ShardTask, m: Manifest, status: str, rank: int) -> "ShardOutcome":
        return cls(str(task.output), status, task.source, len(m.samples), len(m.failures), m.bytes,
                   round(m.seconds, 3), rank, list(m.errors))


@dataclass
class _Pending:
    sample: TarSample
    image_index: int
    source: str
    name: str
    image: np.ndarray


def _list_samples(task: ShardTask) -> Iterator[tuple[TarSample, str, str | None]]:
    """``(sample, source, error)`` for each listed image: the image as ``KEY.<ext>`` (first) plus its sidecars."""
    for key, path in task.files:
        source = os.path.realpath(path)
        sample = TarSample(key)
        try:
            for p in [path] + [s for s in sidecars(path) if s.is_file() and s != path]:
                info = tarfile.TarInfo(f"{key}{p.suffix.lower()}")
                with open_regular(p) as fh:
                    st = os.fstat(fh.fileno())
                    if sample.size + st.st_size > MAX_SAMPLE_BYTES:
                        raise OSError(errno.EFBIG, f"{p.name} and its sidecars hold more than "
                                                   f"{MAX_SAMPLE_BYTES:,} bytes, the limit per sample")
                    data = fh.read(MAX_SAMPLE_BYTES + 1 - sample.size)
                if sample.size + len(data) > MAX_SAMPLE_BYTES:
                    raise OSError(errno.EFBIG, f"{p.name} grew past the limit of {MAX_SAMPLE_BYTES:,} bytes")
                info.mtime = int(st.st_mtime)
                info.mode = 0o644
                sample.members.append((info, data))
        except OSError as exc:
            yield sample, source, f"cannot read {path}: {error_text(exc)}"
            continue
        yield sample, source, None


def _tar_samples(task: ShardTask) -> Iterator[tuple[TarSample, str, str | None]]:
    for sample in iter_samples(task.tar):  # type: ignore[arg-type]
        yield sample, "", None


def encode_shard(task: ShardTask, settings: Settings, batch: int = 1, rank: int = 0, world_size: int = 1,
                 on_sample: Callable[[str, str | None], None] | None = None) -> Manifest:
    """Encode one task into its output shard and write its manifest; returns the manifest.

    Each input sample becomes ``KEY.gsi`` in place of its (first) image member,
    its other members copied byte for byte (but for an existing ``KEY.gsi``, which
    the new one replaces); a sample that cannot be encoded
    (unreadable image, no image, repeated key) is left out and listed in the
    manifest's failures. An input tar that is truncated or corrupt keeps the
    samples before the damage and records the error. ``on_sample(key, error)``
    is called per finished sample. Raises :class:`ShardError` when the output
    cannot be written.
    """
    start = time.perf_counter()
    manifest = Manifest(task.output.name, 0, task.fingerprint(),
                        settings={k: v for k, v in asdict(settings).items() if k != "force"} | {"batch": batch},
                        encoder=ENCODER, rank=rank, world_size=world_size)
    remove_stale_temps(task.output)
    image_exts = image_member_extensions()
    samples = _tar_samples(task) if task.tar is not None else _list_samples(task)
    seen: set[str] = set()
    pending: list[_Pending] = []

    def fail(key: str, source: str, error: str) -> None:
        manifest.failures.append(FailureEntry(key, source, error))
        if on_sample is not None:
            on_sample(key, error)

    with ShardWriter(task.output) as writer:
        def flush() -> None:
            results = fit_images([p.image for p in pending], [p.name for p in pending], settings)
            for p, res in zip(pending, results):
                if not isinstance(res, Fitted):
                    fail(p.sample.key, p.source, res)
                    continue
                names, digests = [], []
                for j, (info, data) in enumerate(p.sample.members):
                    if j == p.image_index:
                        name, data = f"{p.sample.key}.gsi", res.data
                    elif p.sample.extension(info) == "gsi":  # an older encoding: replaced, not kept twice
                        continue
                    else:
                        name = info.name
                    writer.add(name, data, like=info)
                    names.append(name)
                    digests.append(digest(data))
                manifest.samples.append(SampleEntry(p.sample.key, p.source, names, len(res.data),
                                                    round(res.psnr, 3), res.width, res.height, res.gaussians,
                                                    digests))
                if on_sample is not None:
                    on_sample(p.sample.key, None)
            pending.clear()

        while True:
            try:
                sample, source, error = next(samples)
            except StopIteration:
                break
            except ShardError as exc:
                manifest.errors.append(str(exc))
                break
            key = sample.key
            # a listed file is the image whatever its extension; in a tar, the first image member
            idx = (0 if sample.members else None) if task.tar is None else sample.find(image_exts)
            if not source:
                source = sample.members[idx][0].name if idx is not None else f"{key}.*"
            if key in seen:
                fail(key, source, f"key {key} appears again further on in the input (samples must be adjacent "
                                  "members with unique keys); this occurrence is left out")
                continue
            seen.add(key)
            if error is not None:
                fail(key, source, error)
                continue
            if sample.rejected:
                fail(key, source, "; ".join(reason for _, reason in sample.rejected) + "; the sample is left out")
                continue
            if idx is None:
                exts = ", ".join(sample.extension(i) or "(none)" for i, _ in sample.members)
                fail(key, source, f"no image member (extensions: {exts})")
                continue
            info, data = sample.members[idx]
            try:
                image = settings.prepare(load_image_bytes(data, info.name))
            except ImageReadError as exc:
                fail(key, source, exc.reason)
                continue
            except ValueError as exc:
                fail(key, source, error_text(exc))
                continue
            except MemoryError:
                fail(key, source, "not enough memory to load it")
                continue
            name = Path(source).name if task.tar is None else info.name
            pending.append(_Pending(sample, idx, source, name, image))
            if len(pending) >= batch:
                flush()
        flush()
        manifest.bytes = writer.commit()
    manifest.seconds = round(time.perf_counter() - start, 3)
    write_manifest(task.output, manifest)
    return manifest


def _share_cores(local_world_size: int) -> None:
    """Give each of ``local_world_size`` processes on this machine its share of numba's threads."""
    if local_world_size <= 1 or os.environ.get("NUMBA_NUM_THREADS"):
        return
    try:
        import numba

        numba.set_num_threads(max(1, min(numba.config.NUMBA_NUM_THREADS, (os.cpu_count() or 1) // local_world_size)))
    except Exception:  # numba missing or its threading layer already fixed: leave it
        pass


def run_shards(tasks: list[ShardTask], settings: Settings, console: Console, batch: int = 1, rank: int = 0,
               world_size: int = 1) -> list[ShardOutcome]:
    """Encode (or skip, when complete and not ``settings.force``) ``tasks`` in order, printing a line per shard."""
    tag = f"[dim]\\[rank {rank}/{world_size}][/] " if world_size > 1 else ""
    outcomes: list[ShardOutcome] = []
    for n, task in enumerate(tasks, 1):
        out = safe(display_path(task.output))
        done = None if settings.force else finished(task.output, task.fingerprint())
        stale = done is not None and not _same_settings(done.settings, settings)
        if stale:
            console.print(f"{tag}[yellow]-[/] {out}: complete but made with other settings: stale, re-encoding")
            done = None
        if done is not None:
            outcomes.append(ShardOutcome.from_manifest(task, done, "skipped", rank))
            console.print(f"{tag}[yellow]-[/] {out}: complete ({len(done.samples)} encoded, {len(done.failures)} "
                          "failed), skipped (use --force to re-encode)")
            continue
        console.print(f"{tag}encoding {safe(task.source)} → {out} ({n}/{len(tasks)})")

        def report(key: str, error: str | None) -> None:
            if error is not None:
                console.print(f"{tag}  [red]✗[/] {safe(key)}: {safe(error)}")

        try:
            manifest = encode_shard(task, settings, batch, rank, world_size, report)
        except (ShardError, ManifestError, OSError) as exc:
            outcomes.append(ShardOutcome(str(task.output), "failed", task.source, rank=rank,
                                         errors=[error_text(exc)]))
            console.print(f"{tag}[red]✗[/] {out}: {safe(error_text(exc))}")
            continue
        outcome = ShardOutcome.from_manifest(task, manifest, "encoded", rank)
        outcome.stale = stale
        outcomes.append(outcome)
        for e in manifest.errors:
            console.print(f"{tag}  [red]✗[/] {safe(e)}")
        psnrs = [s.psnr for s in manifest.samples if s.psnr is not None]
        mean = f", mean {sum(psnrs) / len(psnrs):.2f} dB" if psnrs else ""
        console.print(f"{tag}[green]✓[/] {out}: {outcome.samples} encoded, {outcome.failures} failed{mean}, "
                      f"{human_bytes(outcome.bytes)}, {outcome.seconds:.1f} s")
    return outcomes


def _same_settings(recorded: dict[str, Any], settings: Settings) -> bool:
    """Whether a manifest's ``settings`` are ``settings`` (``batch``, ``backend`` and ``force`` aside: they do not
    change the files); a complete shard made with others is stale and re-encoded, as image outputs are."""
    ignored = ("batch", "backend", "force")
    current = {k: v for k, v in asdict(settings).items() if k not in ignored}
    return {k: v for k, v in recorded.items() if k not in ignored} == current


def _plan(inputs: tuple[str, ...], input_list: Path | None, outdir: Path, shard_size: int) -> list[ShardTask]:
    """The tasks of the whole job (every process computes the same plan)."""
    try:
        if input_list is not None:
            paths = read_input_list(input_list)
            if not paths:
                raise click.ClickException(f"input list {input_list} has no paths")
            return plan_input_list(paths, outdir, shard_size)
        found = discover_shards(list(inputs))
        if found.problems:
            lines = "\n".join(printable(f"  {spec}: {reason}") for spec, reason in found.problems)
            raise click.ClickException(f"input shard(s) not found:\n{lines}")
        return plan_tar_shards(found.shards, outdir)
    except (OSError, PlanError) as exc:
        raise click.ClickException(printable(error_text(exc))) from None


def _part(shard: str | None) -> tuple[int, int, bool]:
    """``(rank, world_size, launched)``: from ``--shard I/N``, else from torchrun's environment."""
    if shard is not None:
        try:
            rank, world = parse_shard_spec(shard)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="'--shard'") from None
        return rank, world, False
    try:
        env = distributed.env_info()
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    return env.rank, env.world_size, env.launched and env.world_size > 1


def encode_sharded(inputs: tuple[str, ...], input_list: Path | None, outdir: Path, settings: Settings, batch: int,
                   shard: str | None, shard_size: int, as_json: bool, console: Console) -> None:
    """The shard mode of ``gsi encode``: plan, encode this process's part, summarize; exit 1 on any failure.

    Under ``torchrun`` (``WORLD_SIZE > 1`` and no ``--shard``) the processes
    join a gloo group only to wait for each other at the end: rank 0 then
    prints the summary of the whole job and every process exits with the same status.
    """
    rank, world, launched = _part(shard)
    if shard is not None and os.environ.get("WORLD_SIZE", "1") not in ("", "1"):
        err_console().print(f"[yellow]warning:[/] --shard {safe(shard)} wins over RANK/WORLD_SIZE: every process of "
                      "this job encodes the same part")
    tasks = _plan(inputs, input_list, outdir, shard_size)
    try:
        outdir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise click.ClickException(f"cannot create output folder {outdir}: {error_text(exc)}") from None
    mine = assign(tasks, rank, world)
    env = distributed.env_info()
    _share_cores(env.local_world_size if launched else 1)
    if launched:
        try:
            distributed.init_from_env(backend="gloo", timeout=GROUP_TIMEOUT)
        except (RuntimeError, ValueError) as exc:
            raise click.ClickException(f"cannot join the torchrun process group: {error_text(exc)}") from None
    try:
        if world > 1:
            console.print(f"[dim]\\[rank {rank}/{world}][/] {len(mine)} of {len(tasks)} shard(s)")
        start = time.perf_counter()
        try:
            with sigterm_unwinds():
                outcomes = run_shards(mine, settings, console, batch, rank, world)
        except (KeyboardInterrupt, Terminated):
            console.print("[red]interrupted[/]: finished shards are complete and nothing was half-written; "
                          "run the same command again to resume")
            raise click.exceptions.Exit(130) from None
        parts = distributed.all_gather_object(([o.as_dict() for o in outcomes], time.perf_counter() - start))
        distributed.barrier()  # as train-head: no rank tears gloo down while a peer is still in the gather
        everything = [o for rows, _ in parts for o in rows]
        elapsed = max(seconds for _, seconds in parts)
        if not distributed.is_main():
            if _failed(everything):
                raise click.exceptions.Exit(1)
            return
        _summarize(everything, elapsed, world if launched else 1, as_json, console)
    finally:
        if launched:
            distributed.shutdown()


def _failed(rows: list[dict[str, Any]]) -> bool:
    return any(r["status"] == "failed" or r["failures"] or r["errors"] for r in rows)


def _summarize(rows: list[dict[str, Any]], elapsed: float, processes: int, as_json: bool, console: Console) -> None:
    count = {s: sum(r["status"] == s for r in rows) for s in ("encoded", "skipped", "failed")}
    images = sum(r["samples"] for r in rows)
    failures = sum(r["failures"] for r in rows)
    written = sum(r["bytes"] for r in rows if r["status"] == "encoded")
    if as_json:
        records = [{**r, "error": "; ".join(r["errors"]) or None} for r in rows]
        echo_json("encode", records, {**count, "samples": images, "failures": failures, "bytes": written,
                                      "seconds": round(elapsed, 3), "processes": processes}, ok=not _failed(rows))
    on = f" on {processes} processes" if processes > 1 else ""
    console.print(f"shards: encoded {count['encoded']}, skipped {count['skipped']}, failed {count['failed']}; "
                  f"images: {images} encoded, {failures} failed; {elapsed:.1f} s{on}; wrote {human_bytes(written)}")
    if _failed(rows):
        lines = []
        for r in rows:
            if r["status"] == "failed" or r["errors"]:
                lines += [printable(f"  {display_path(r['shard'])}: {e}") for e in r["errors"]]
            if r["failures"]:
                lines.append(f"  {display_path(r['shard'])}: {r['failures']} image(s) failed (listed in its manifest)")
        raise click.ClickException("some inputs were not encoded (failed images are recorded in the manifests; "
                                   "--force re-encodes complete shards):\n" + "\n".join(lines))


__all__ = ["ShardOutcome", "encode_shard", "encode_sharded", "run_shards"]
