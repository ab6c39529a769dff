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
from gscodec.imageio import ImageReadError, load_image, load_image_bytes

from .common import STDIO, binary_stdout, display_path, error_text, human_bytes, safe, shows_bars, unwritable
from .inputs import STDOUT, Job
from .signals import Terminated, die_with_parent, raise_terminated, sigint_ignored


@dataclass(frozen=True)
class Settings(EncoderSettings):
    """Everything ``gsi encode`` passes to a worker besides the jobs: the encoder's settings, and ``force``."""

    force: bool = False


@dataclass
class Record:
    """The outcome for one input; ``status`` is ``encoded``, ``skipped`` or ``failed``. ``stale``: an existing
    output made with other settings (or from another source) was replaced; ``previous`` names what it recorded."""

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
    stale: bool = False
    previous: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """Fields for JSON (``previous`` left out); a non-finite PSNR (a perfect fit) becomes ``None``."""
        d = asdict(self)
        del d["previous"]
        if d["psnr"] is not None and not math.isfinite(d["psnr"]):
            d["psnr"] = None
        return d


def check_existing(job: Job, settings: Settings) -> Record | None:
    """What an existing ``job.output`` means, before encoding ``job`` (``None``: no output yet, or standard output).

    The rule (``gsi encode --help``): a `.gsi` file whose metadata records these
    settings and this input's name is ``skipped``; one recording other settings
    or another source, or about to be replaced by an image from standard input
    (which cannot be compared), is ``stale`` (re-encoded: the record returned
    has that status and the recorded settings in ``previous``); anything else (not a
    `.gsi` file, or one recording no settings: not written by ``gsi encode``) is
    ``failed`` and left alone. ``--force`` (``settings.force``) re-encodes
    every output without asking.
    """
    if job.output == STDOUT or settings.force or not os.path.lexists(job.output):
        return None
    try:
        info = peek(job.output)
    except (GsiError, OSError) as exc:
        return Record(str(job.input), str(job.output), "failed",
                      error=f"output exists but is not a valid .gsi file ({error_text(exc)}); "
                            "use --force to replace it")
    recorded = info.metadata.get("settings")
    if recorded is None:
        return Record(str(job.input), str(job.output), "failed",
                      error="output exists and records no encoder settings (it was not written by gsi encode); "
                            "use --force to replace it")
    source = info.metadata.get("source")
    if recorded != settings.describe() or source != job.source or job.data is not None:  # stdin: no telling
        previous = recorded if source == job.source else f"{recorded} from {source}"
        return Record(str(job.input), str(job.output), "stale", previous=previous)
    h = info.header
    try:
        psnr: float | None = float(info.metadata["psnr"])
    except (KeyError, ValueError):
        psnr = None
    size = h.file_size
    return Record(str(job.input), str(job.output), "skipped", psnr=psnr, bytes=size,
                  bpp=round(8 * size / (h.width * h.height), 4), width=h.width, height=h.height, gaussians=h.count)


def _load(job: Job, settings: Settings) -> np.ndarray:
    if job.data is not None:
        return settings.prepare(load_image_bytes(job.data, job.source))
    return settings.prepare(load_image(job.input))


def write_output(job: Job, data: bytes) -> None:
    """Write the `.gsi` bytes of ``job``: atomically to its file, or to standard output."""
    if job.output == STDOUT:
        stream = binary_stdout()
        stream.write(data)
        stream.flush()
    else:
        write_atomic(job.output, data)


def prepare_output(job: Job) -> None:
    """Create the output folder, fail early (before fitting) if it cannot be written, and remove the temporary
    files a killed earlier run left for this output."""
    if job.output == STDOUT:
        return
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
    stale: dict[int, Record] = {}
    for i, job in enumerate(jobs):
        if (existing := check_existing(job, settings)) is not None:
            if existing.status != "stale":
                records[i] = existing
                continue
            stale[i] = existing
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
    fitted = fit_images([loaded[i][0] for i in idx], [jobs[i].source for i in idx], settings, progress)
    for i, res in zip(idx, fitted):
        job = jobs[i]
        if isinstance(res, str):
            records[i] = Record(str(job.input), str(job.output), "failed", error=res)
            continue
        start = time.perf_counter()
        try:
            write_output(job, res.data)
        except (GsiError, OSError) as exc:
            records[i] = Record(str(job.input), str(job.output), "failed", error=error_text(exc))
            continue
        size = len(res.data)
        seconds = loaded[i][1] + res.seconds + time.perf_counter() - start
        previous = stale[i].previous if i in stale else None
        records[i] = Record(str(job.input), str(job.output), "encoded", psnr=round(res.psnr, 3), bytes=size,
                            bpp=round(8 * size / (res.width * res.height), 4), seconds=round(seconds, 3),
                            width=res.width, height=res.height, gaussians=res.gaussians, stale=i in stale,
                            previous=previous)
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


def record_line(r: Record, verbose: bool = False) -> str:
    """One rich-markup line describing a finished record (``verbose``: with its size, Gaussians and what a stale
    output recorded)."""
    src = safe(display_path(r.input)) if r.input != STDIO else "stdin"
    out = safe(display_path(r.output or "")) if r.output != STDIO else "stdout"
    if r.status == "encoded":
        line = (f"[green]✓[/] {src} → {out}  "
                f"[bold]{r.psnr:.2f} dB[/]  {human_bytes(r.bytes or 0)}  {r.bpp:.3f} bpp  {r.seconds:.1f} s")
        if verbose:
            line += f"  {r.width}x{r.height}  {r.gaussians} Gaussians"
        if r.stale:
            line += "  (replaced a stale output" + (f" made with {safe(r.previous)})" if verbose else ")")
        return line
    if r.status == "skipped":
        return f"[yellow]-[/] {src}: {out} exists, made with the same settings (use --force to re-encode)"
    return f"[red]✗[/] {src}: {safe(r.error or 'failed')}"


def run(jobs: list[Job], settings: Settings, console: Console, workers: int = 1, batch: int = 1,
        verbose: bool = False) -> list[Record]:
    """Encode ``jobs``, one line per finished record on ``console`` and a progress bar when it is a terminal;
    records in job order.

    Outputs made with the same settings are skipped here without loading anything. ``KeyboardInterrupt``
    propagates after pending work is cancelled (finished files are complete).
    """
    records: dict[int, Record] = {}
    todo: list[int] = []
    for i, job in enumerate(jobs):
        existing = check_existing(job, settings)
        if existing is not None and existing.status != "stale":
            records[i] = existing
        else:
            todo.append(i)
    chunks = [todo[k:k + batch] for k in range(0, len(todo), batch)]

    columns = (SpinnerColumn(), TextColumn("[progress.description]{task.description}"), BarColumn(),
               MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=False, disable=not shows_bars(console)) as bar:
        total = bar.add_task("encoding", total=len(jobs))
        for i in sorted(records):
            bar.console.print(record_line(records[i], verbose))
            bar.advance(total)

        def finish(idx: list[int], done: list[Record]) -> None:
            for i, r in zip(idx, done):
                records[i] = r
                bar.console.print(record_line(r, verbose))
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
                bar.update(total, description=f"encoding {safe(jobs[idx[0]].source)}")
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
