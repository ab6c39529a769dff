"""`gsi encode`: fitting and writing images, one process or a pool, with a progress bar.

The work unit is a *chunk* of jobs; same-size images inside a chunk are fitted
together with :func:`gscodec.fit.fit_batch`. Every output is written atomically,
so an interrupted run leaves only complete files and re-running it resumes.
:func:`fit_images` is the one path from pixels to `.gsi` bytes and metadata,
shared with the tar shard encoder (:mod:`.shard_encoding`).
"""

from __future__ import annotations

import math
import multiprocessing
import os
import signal
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass
from typing import Any, Callable

import numpy as np
from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TaskID, TextColumn,
                           TimeElapsedColumn, TimeRemainingColumn)

import gscodec
from gscodec.fit import FitConfig, FitResult, fit, fit_batch
from gscodec.format import GsiError, peek, write_atomic
from gscodec.format.file import remove_stale_temps
from gscodec.format import encode as encode_gsi
from gscodec.imageio import ImageReadError, load_image, resize_for_clip
from gscodec.limits import MAX_FIT_PIXELS, MAX_GAUSSIANS
from gscodec.quantize import PRESETS, Quantization, resolve_preset

from .common import display_path, error_text, human_bytes, safe, unwritable
from .inputs import Job
from .signals import Terminated, die_with_parent, raise_terminated, sigint_ignored

QUALITIES: dict[str, Quantization | None] = {"auto": None, **PRESETS, "float16": None, "float32": None}
"""``--quality`` presets: bits per quantized field, an unquantized float mode, or ``auto`` (the preset
chosen per image from the Gaussian density and the float fit's PSNR, :func:`gscodec.quantize.preset_for_density`)."""

ENCODER = f"gscodec {gscodec.__version__}"

BYTES_PER_GAUSSIAN = {"auto": 5.0, "low": 4.4, "medium": 5.8, "high": 6.8, "max": 9.0, "float16": 16.1, "float32": 32.1}
"""Typical file bytes per Gaussian of each --quality, measured by benchmarks/bench_quantization.py;
``--bpp`` starts from it and corrects once from the real size."""

PSNR_MARGIN = 0.35
"""dB a ``--psnr`` fit aims above its target to leave room for the typical quantization loss."""

RATE_TOLERANCE = 0.08
"""Relative miss of the ``--bpp`` size that triggers one refit with a corrected Gaussian count."""


@dataclass(frozen=True)
class Settings:
    """Everything ``gsi encode`` passes to a worker besides the jobs."""

    points: int = 900
    density: float | None = None
    bpp: float | None = None
    effort: int | None = None
    iterations: int | None = None
    resize: int | None = None
    quality: str = "auto"
    force: bool = False
    seed: int = 0
    target_psnr: float | None = None
    backend: str = "cpu"  # the fitter's rasterizer: "cuda" fits on the GPU (see gscodec.fit.device)

    @property
    def mode(self) -> str:
        return self.quality if self.quality in ("float16", "float32") else "quantized"

    @property
    def quantization(self) -> Quantization | str | None:
        """The fitter's quantization: ``None`` in a float mode; ``"auto"`` is chosen per image by the fitter
        from the density and the float fit's PSNR."""
        return resolve_preset(self.quality) if self.mode == "quantized" else None

    def target_bytes(self, width: int, height: int) -> int | None:
        """The ``--bpp`` file size of a ``width`` x ``height`` image, if one was asked for."""
        return None if self.bpp is None else int(self.bpp * width * height / 8)

    def points_for(self, width: int, height: int) -> int:
        """The Gaussian budget of a ``width`` x ``height`` image."""
        if self.bpp is not None:
            per_gaussian = BYTES_PER_GAUSSIAN[self.quality]
            return int(min(MAX_GAUSSIANS, max(1, round((self.target_bytes(width, height) - 100) / per_gaussian))))
        if self.density is None:
            return self.points
        return int(min(MAX_GAUSSIANS, max(1, round(self.density * width * height))))

    def config(self, width: int, height: int, points: int | None = None) -> FitConfig:
        points = points or self.points_for(width, height)
        quantization = self.quantization
        target = None if self.target_psnr is None else self.target_psnr + (PSNR_MARGIN if quantization else 0.0)
        kwargs: dict[str, Any] = dict(points=points,
                                      quantization=quantization, seed=self.seed, target_psnr=target,
                                      backend=self.backend)
        if self.effort is not None:
            kwargs["effort"] = self.effort
        if self.iterations is not None:
            kwargs["iterations"] = self.iterations
        return FitConfig(**kwargs)


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


ProgressFn = Callable[[str, dict], None]


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


@dataclass
class Fitted:
    """One image fitted and serialized: the `.gsi` bytes and what the records and manifests report."""

    data: bytes
    psnr: float
    seconds: float
    width: int
    height: int
    gaussians: int


def prepare_image(image: np.ndarray, settings: Settings) -> np.ndarray:
    """The array the fitter sees: ``image`` resized and cropped as ``--resize`` asks."""
    return resize_for_clip(image, settings.resize) if settings.resize is not None else image


def _load(job: Job, settings: Settings) -> np.ndarray:
    return prepare_image(load_image(job.input), settings)


def fit_images(images: list[np.ndarray], sources: list[str], settings: Settings,
               progress: ProgressFn | None = None) -> list[Fitted | str]:
    """Fit ``images`` and serialize them; per image a :class:`Fitted` or the reason it failed.

    The one code path of ``gsi encode`` for fitting and metadata (files and tar
    shards alike): same-size images are fitted together with
    :func:`gscodec.fit.fit_batch`, at most :data:`~gscodec.limits.MAX_FIT_PIXELS`
    pixels per fit; an image over that limit fails (use ``--resize``). Each
    file's metadata names its ``source`` (a file or tar member name), the
    fitted PSNR and the encoder. ``progress(name, info)`` receives the
    fitter's progress dicts.
    """
    out: list[Fitted | str] = ["not fitted"] * len(images)
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, image in enumerate(images):
        pixels = image.shape[0] * image.shape[1]
        if pixels > MAX_FIT_PIXELS:
            out[i] = (f"{image.shape[1]}x{image.shape[0]} is {pixels:,} pixels, over the fitter's limit of "
                      f"{MAX_FIT_PIXELS:,}; use --resize")
            continue
        groups.setdefault(image.shape, []).append(i)
    fits = [(shape, same[k:k + step]) for shape, same in groups.items()
            for step in [max(1, MAX_FIT_PIXELS // (shape[0] * shape[1]))] for k in range(0, len(same), step)]
    for shape, idx in fits:
        height, width = shape[0], shape[1]
        name = ", ".join(sources[i] for i in idx)
        callback = (lambda info, name=name: progress(name, info)) if progress is not None else None
        try:
            config = settings.config(width, height)
            batch = [images[i] for i in idx]
            results = fit_batch(batch, config, callback) if len(batch) > 1 else [fit(batch[0], config, callback)]
        except Exception as exc:  # a fitter failure fails these images, not the run
            for i in idx:
                out[i] = f"fitting failed: {error_text(exc)}"
            continue
        for i, res in zip(idx, results):
            try:
                out[i] = _serialize(res, sources[i], settings, width, height)
                target = settings.target_bytes(width, height)
                if target is not None and abs(len(out[i].data) - target) > RATE_TOLERANCE * target:
                    points = max(1, round(res.gaussians.count * (target - 100) / max(1, len(out[i].data) - 100)))
                    refit_config = settings.config(width, height, min(points, MAX_GAUSSIANS))
                    refit = fit(images[i], refit_config, callback)
                    refit.seconds += res.seconds
                    out[i] = _serialize(refit, sources[i], settings, width, height)
            except GsiError as exc:
                out[i] = error_text(exc)
            except Exception as exc:  # a fitter failure fails this image, not the run
                out[i] = f"fitting failed: {error_text(exc)}"
    return out


def _serialize(res: FitResult, source: str, settings: Settings, width: int, height: int) -> Fitted:
    """The `.gsi` bytes of one fit (on the grid the fitter snapped it to), with its metadata."""
    start = time.perf_counter()
    metadata = {"source": source, "psnr": f"{res.psnr:.2f}", "encoder": ENCODER}
    data = encode_gsi(res.gaussians, mode=settings.mode, quantization=res.quantization or Quantization(),
                      metadata=metadata)
    return Fitted(data, res.psnr, res.seconds + time.perf_counter() - start, width, height, res.gaussians.count)


def _prepare_output(job: Job) -> None:
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
            _prepare_output(job)
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
