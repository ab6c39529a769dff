"""`gsi encode`: fitting and writing images, one process or a pool, with a progress bar.

The work unit is a *chunk* of jobs; same-size images inside a chunk are fitted
together by :func:`gscodec.encoder.fit_images`, the library's one path from
pixels to `.gsi` bytes (rate control, metadata, presets). Every output is
written atomically, so an interrupted run leaves only complete files and
re-running it resumes.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import signal
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TaskID, TextColumn,
                           TimeElapsedColumn, TimeRemainingColumn)

from gscodec.encoder import EncoderSettings, ProgressFn, fit_images
from gscodec.format import GsiError, peek, write_atomic
from gscodec.atomic import remove_stale_temps
from gscodec.imageio import ImageReadError, load_image

from .common import display_path, error_text, human_bytes, safe, unwritable
from .inputs import Job
from .signals import Terminated, die_with_parent, raise_terminated, sigint_ignored


@dataclass(frozen=True)
class Settings(EncoderSettings):
    """Everything ``gsi encode`` passes to a worker besides the jobs: the encoder's settings, and ``force``."""

    force: bool = False


@dataclass
class Record:
    """The outcome for one input; ``status`` is ``encoded``, ``skipped`` or ``failed``."""

    input: str
    output: str | None
    status: str
    psnr: float | None = None
    bytes: int | None = None
    bpp: float | None = None
    seconds: float | None = None
    width: int | None = None
    height: int | None = None
    gaussians: int | None = None
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """Fields for JSON; a non-finite PSNR (a perfect fit) becomes ``None``."""
        d = asdict(self)
        if d["psnr"] is not None and not math.isfinite(d["psnr"]):
            d["psnr"] = None
        return d


def check_existing(job: Job) -> Record | None:
    """A ``skipped`` record if ``job.output`` is already a valid `.gsi` header, ``failed`` if it is not."""
    if not job.output.exists():
        return None
    try:
        info = peek(job.output)
    except (GsiError, OSError) as exc:
        return Record(str(job.input), str(job.output), "failed",
                      error=f"output exists but is not a valid .gsi file ({error_text(exc)}); use --force to replace it")
    h = info.header
    try:
        psnr: float | None = float(info.metadata["psnr"])
    except (KeyError, ValueError):
        psnr = None
    size = h.file_size
    return Record(str(job.input), str(job.output), "skipped", psnr=psnr, bytes=size,
                  bpp=round(8 * size / (h.width * h.height), 4), width=h.width, height=h.height, gaussians=h.count)


def _load(job: Job, settings: Settings) -> np.ndarray:
    return settings.prepare(load_image(job.input))


def prepare_output(job: Job) -> None:
    """Create the output folder, fail early (before fitting) if it cannot be written, and remove the temporary
    files a killed earlier run left for this output."""
    folder = job.output.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise OSError(f"cannot create output folder {folder}: a file is in the way") from None
    except OSError as exc:
        raise OSError(f"cannot create output folder {folder}: {error_text(exc)}") from None
    if (problem := unwritable(folder)) is not None:
        raise OSError(f"cannot write to output folder {folder}: {problem}")
    remove_stale_temps(job.output)


def encode_chunk(jobs: list[Job], settings: Settings, progress: ProgressFn | None = None) -> list[Record]:
    """Encode ``jobs``; one :class:`Record` per job, in order. Per-image failures become ``failed`` records.

    ``progress(name, info)`` receives the fitter's progress dicts.
    """
    records: dict[int, Record] = {}
    loaded: dict[int, tuple[np.ndarray, float]] = {}
    for i, job in enumerate(jobs):
        if not settings.force and (existing := check_existing(job)) is not None:
            records[i] = existing
            continue
        start = time.perf_counter()
        try:
            image = _load(job, settings)
            prepare_output(job)
        except ImageReadError as exc:
            records[i] = Record(str(job.input), str(job.output), "failed", error=exc.reason)
            continue
        except (OSError, ValueError) as exc:
            records[i] = Record(str(job.input), str(job.output), "failed", error=error_text(exc))
            continue
        except MemoryError:
            records[i] = Record(str(job.input), str(job.output), "failed", error="not enough memory to load it")
            continue
        loaded[i] = (image, time.perf_counter() - start)

    idx = list(loaded)
    fitted = fit_images([loaded[i][0] for i in idx], [jobs[i].input.name for i in idx], settings, progress)
    for i, res in zip(idx, fitted):
        job = jobs[i]
        if isinstance(res, str):
            records[i] = Record(str(job.input), str(job.output), "failed", error=res)
            continue
        start = time.perf_counter()
        try:
            write_atomic(job.output, res.data)
        except (GsiError, OSError) as exc:
            records[i] = Record(str(job.input), str(job.output), "failed", error=error_text(exc))
            continue
        size = len(res.data)
        seconds = loaded[i][1] + res.seconds + time.perf_counter() - start
        records[i] = Record(str(job.input), str(job.output), "encoded", psnr=round(res.psnr, 3), bytes=size,
                            bpp=round(8 * size / (res.width * res.height), 4), seconds=round(seconds, 3),
                            width=res.width, height=res.height, gaussians=res.gaussians)
    return [records[i] for i in range(len(jobs))]


def _init_worker(single_thread: bool, parent: int) -> None:
    """Worker set-up: SIGINT stays ignored (the parent handles Ctrl-C), SIGTERM unwinds, the worker ends with its
    parent (even one killed by SIGKILL); one thread if asked."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, raise_terminated)
    die_with_parent(parent)
    if single_thread:
        import torch

        torch.set_num_threads(1)
        try:
            import numba

            numba.set_num_threads(1)
        except Exception:
            pass


def _work(jobs: list[Job], settings: Settings) -> list[Record]:
    """:func:`encode_chunk` in a worker; on SIGTERM the stack unwinds first, then the process ends."""
    try:
        return encode_chunk(jobs, settings)
    except Terminated:
        os._exit(1)


def _stop_workers(pool: ProcessPoolExecutor) -> None:
    """Cancel pending work and end the running workers (their atomic writes clean up after themselves)."""
    pool.shutdown(wait=False, cancel_futures=True)
    children = multiprocessing.active_children()
    for child in children:
        child.terminate()
    for child in children:
        child.join(timeout=30)


def record_line(r: Record) -> str:
    """One rich-markup line describing a finished record."""
    src = safe(display_path(r.input))
    if r.status == "encoded":
        return (f"[green]✓[/] {src} → {safe(display_path(r.output or ''))}  "
                f"[bold]{r.psnr:.2f} dB[/]  {human_bytes(r.bytes or 0)}  {r.bpp:.3f} bpp  {r.seconds:.1f} s")
    if r.status == "skipped":
        return f"[yellow]-[/] {src}: {safe(display_path(r.output or ''))} exists (use --force to re-encode)"
    return f"[red]✗[/] {src}: {safe(r.error or 'failed')}"


def run(jobs: list[Job], settings: Settings, console: Console, workers: int = 1, batch: int = 1) -> list[Record]:
    """Encode ``jobs`` with a progress bar on ``console``; records in job order.

    Existing outputs are skipped here without loading anything. ``KeyboardInterrupt``
    propagates after pending work is cancelled (finished files are complete).
    """
    records: dict[int, Record] = {}
    todo: list[int] = []
    for i, job in enumerate(jobs):
        existing = None if settings.force else check_existing(job)
        if existing is not None:
            records[i] = existing
        else:
            todo.append(i)
    chunks = [todo[k:k + batch] for k in range(0, len(todo), batch)]

    columns = (SpinnerColumn(), TextColumn("[progress.description]{task.description}"), BarColumn(),
               MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=False) as bar:
        total = bar.add_task("encoding", total=len(jobs))
        for i in sorted(records):
            bar.console.print(record_line(records[i]))
            bar.advance(total)

        def finish(idx: list[int], done: list[Record]) -> None:
            for i, r in zip(idx, done):
                records[i] = r
                bar.console.print(record_line(r))
                bar.advance(total)

        if workers <= 1:
            fitting: TaskID | None = None

            def on_progress(name: str, info: dict) -> None:
                nonlocal fitting
                desc = f"  fitting {safe(name)}"
                psnrs = info.get("psnr") or []
                if psnrs:
                    desc += f"  {max(psnrs):.2f} dB"
                if fitting is None:
                    fitting = bar.add_task(desc, total=info["iterations"])
                bar.update(fitting, description=desc, completed=info["iteration"], total=info["iterations"])

            for idx in chunks:
                bar.update(total, description=f"encoding {safe(jobs[idx[0]].input.name)}")
                done = encode_chunk([jobs[i] for i in idx], settings, on_progress)
                if fitting is not None:
                    bar.remove_task(fitting)
                    fitting = None
                finish(idx, done)
        else:
            ctx = multiprocessing.get_context("spawn")
            pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_worker,
                                       initargs=(True, os.getpid()))
            try:
                with sigint_ignored():
                    pending: dict[Future, list[int]] = {
                        pool.submit(_work, [jobs[i] for i in idx], settings): idx for idx in chunks}
                while pending:
                    finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                    for fut in finished:
                        idx = pending.pop(fut)
                        try:
                            done = fut.result()
                        except Exception as exc:  # a crashed worker fails its chunk
                            done = [Record(str(jobs[i].input), str(jobs[i].output), "failed",
                                           error=f"worker failed: {error_text(exc)}") for i in idx]
                        finish(idx, done)
            except BaseException:
                _stop_workers(pool)
                raise
            pool.shutdown(wait=True)
        bar.update(total, description="done")
    return [records[i] for i in range(len(jobs))]
