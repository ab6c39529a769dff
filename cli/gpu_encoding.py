"""`gsi encode --device cuda`: image files streamed through the batched GPU fitter.

Loader processes decode and resize the inputs ahead of the fitter
(:func:`gscodec.fit.stream.stream_images`), same-size images are batched as
many at a time as free GPU memory allows
(:func:`gscodec.fit.placement.choose_batch_size`, at most ``--batch``), and a
background thread writes the files atomically. Fitting and serialization are
:func:`gscodec.encoder.fit_images`, the CPU path's, with the ``cuda`` backend.
"""

from __future__ import annotations

from dataclasses import replace

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from gscodec.encoder import Fitted, fit_images
from gscodec.fit.placement import choose_batch_size
from gscodec.fit.stream import BackgroundWriter, Loaded, SizeBatcher, stream_images

from .common import error_text, safe, shows_bars
from .encoding import Record, Settings, check_existing, prepare_output, record_line
from .inputs import Job


def run_streaming(jobs: list[Job], settings: Settings, console: Console, device: torch.device, loaders: int = 2,
                  max_batch: int | None = None, free_bytes: int | None = None) -> list[Record]:
    """Encode ``jobs`` streamed through the batched fitter on ``device``; records in job order.

    On a CUDA ``device`` the fitter uses the ``cuda`` backend; on the CPU
    ``settings.backend`` (how the tests run this path without a GPU).
    ``loaders``: decoding processes. ``free_bytes`` overrides the measured free
    GPU memory the batch size is chosen from. Existing outputs are skipped
    unless ``settings.force``.
    """
    if device.type == "cuda":
        torch.cuda.set_device(device)
        settings = replace(settings, backend="cuda")
    elif free_bytes is None:
        raise ValueError("on the CPU, give free_bytes (the memory a batch may use)")
    records: dict[int, Record] = {}
    todo: list[int] = []
    stale: dict[int, Record] = {}
    for i, job in enumerate(jobs):
        existing = check_existing(job, settings)
        if existing is not None and existing.status != "stale":
            records[i] = existing
            continue
        if existing is not None:
            stale[i] = existing
        try:
            prepare_output(job)
        except OSError as exc:
            records[i] = Record(str(job.input), str(job.output), "failed", error=error_text(exc))
            continue
        todo.append(i)
    loaded: dict[int, float] = {}
    fitted: dict[int, Fitted] = {}

    def batch_size(height: int, width: int) -> int:
        return choose_batch_size(height, width, settings.points_for(width, height), free_bytes, device, max_batch)

    columns = (SpinnerColumn(), TextColumn("[progress.description]{task.description}"), BarColumn(),
               MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False, disable=not shows_bars(console)) as bar, \
            BackgroundWriter() as writer:
        total = bar.add_task("encoding on " + str(device), total=len(jobs))

        def finish(i: int, record: Record) -> None:
            records[i] = record
            bar.console.print(record_line(record))
            bar.advance(total)

        for i in sorted(records):
            bar.console.print(record_line(records[i]))
            bar.advance(total)

        def collect(done: list) -> None:
            for w in done:
                i, job, res = w.key, jobs[w.key], fitted.pop(w.key)
                if w.error is not None:
                    finish(i, Record(str(job.input), str(job.output), "failed", error=error_text(w.error)))
                    continue
                seconds = loaded.pop(i, 0.0) + res.seconds + w.seconds
                finish(i, Record(str(job.input), str(job.output), "encoded", psnr=round(res.psnr, 3), bytes=w.size,
                                 bpp=round(8 * w.size / (res.width * res.height), 4), seconds=round(seconds, 3),
                                 width=res.width, height=res.height, gaussians=res.gaussians, stale=i in stale,
                                 previous=stale[i].previous if i in stale else None))

        def fit(batch: list[Loaded]) -> None:
            idx = [todo[item.index] for item in batch]
            bar.update(total, description=f"fitting {len(batch)} image(s) of {safe(jobs[idx[0]].source)}")
            results = fit_images([item.image for item in batch], [jobs[i].source for i in idx], settings)
            for i, item, res in zip(idx, batch, results):
                if isinstance(res, str):
                    finish(i, Record(str(jobs[i].input), str(jobs[i].output), "failed", error=res))
                    continue
                loaded[i] = item.seconds
                fitted[i] = res
                writer.submit(i, jobs[i].output, res.data)

        batcher = SizeBatcher(batch_size)
        # decode the next batch during this one; full-size photos (no --resize) are rarely batched, and large
        small = settings.resize is not None and settings.resize <= 512
        ahead = 2 * max_batch if max_batch is not None else 1024 if small else 32
        for item in stream_images([jobs[i].input for i in todo], settings.resize, loaders, ahead=ahead):
            if item.image is None:
                job = jobs[todo[item.index]]
                finish(todo[item.index], Record(str(job.input), str(job.output), "failed", error=item.error))
                continue
            for batch in batcher.add(item):
                fit(batch)
            collect(writer.done())
        for batch in batcher.flush():
            fit(batch)
        collect(writer.close())
        bar.update(total, description="done")
    return [records[i] for i in range(len(jobs))]


__all__ = ["run_streaming"]
