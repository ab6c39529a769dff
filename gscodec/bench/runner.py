"""Running a rate-distortion benchmark: every (image, codec, quality) point, resumable and in parallel.

For each point the codec encodes the image, the bytes are decoded, and the
runner records the size (bytes, bpp = 8 * bytes / (W * H)), PSNR (dB),
MS-SSIM and the encode and decode wall times (s). Finished points are appended
to ``points.csv`` at once; points already there are not measured again. With
``jobs > 1`` the points run in a process pool; either way every measurement
is single-threaded (torch, numba, libavif), so times compare across codecs.

The outputs, in ``outdir``: ``points.csv``, ``settings.json``, ``<codec>.json``
per codec (CompressAI's schema; per quality setting, bpp, PSNR, MS-SSIM and
times averaged over images, as CompressAI does), and the RD plot as ``rd.png``,
``rd.pdf`` and ``rd.svg``. BD-rates are computed on those averaged curves (see
:mod:`.bdrate`); against a published curve only on the image set it was
measured on (:mod:`.reference`).
"""

from __future__ import annotations

import math
import multiprocessing
import os
import signal
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..processes import die_with_parent
from .bdrate import DEFAULT_METHOD, MIN_POINTS, bd_rate, common_range
from .codecs import Codec, quality_label
from ..metrics import MissingDependencyError, ms_ssim, psnr_u8
from .plot import plot_rd
from .reference import GAUSSIANIMAGE_KODAK, PublishedCurve, is_image_set
from .store import BenchError, Point, PointStore, check_settings, write_results


@dataclass(frozen=True)
class Task:
    """One point to measure: image ``name`` (relative to the benchmark folder) at ``path``."""

    name: str
    path: str
    codec: Codec
    quality: float

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.name, self.codec.name, quality_label(self.quality))


@dataclass(frozen=True)
class Failure:
    """A point that could not be measured (not recorded, so a rerun tries again)."""

    image: str
    codec: str
    quality: str
    error: str


@dataclass
class Curve:
    """One codec's RD curve: per quality setting, values averaged over ``images`` images."""

    codec: str
    description: str
    images: int
    quality: list[str] = field(default_factory=list)
    bpp: list[float] = field(default_factory=list)
    psnr: list[float] = field(default_factory=list)
    ms_ssim: list[float] = field(default_factory=list)
    encoding_time: list[float] = field(default_factory=list)
    decoding_time: list[float] = field(default_factory=list)

    def results(self) -> dict[str, list[float]]:
        """The ``results`` block of CompressAI's schema."""
        return {"bpp": self.bpp, "psnr-rgb": self.psnr, "ms-ssim-rgb": self.ms_ssim,
                "encoding_time": self.encoding_time, "decoding_time": self.decoding_time}


@dataclass(frozen=True)
class BdRate:
    """BD-rate (%) of ``test`` against ``anchor``, both interpolations, over ``psnr_range`` (dB), from curves of
    ``points`` (test, anchor) points."""

    test: str
    anchor: str
    pchip: float
    cubic: float
    psnr_range: tuple[float, float]
    points: tuple[int, int]

    @property
    def sparse(self) -> bool:
        """Whether a curve has fewer than :data:`.bdrate.MIN_POINTS` points (the value is not to be relied on)."""
        return min(self.points) < MIN_POINTS

    @property
    def value(self) -> float:
        """The default method's value (:data:`.bdrate.DEFAULT_METHOD`)."""
        return self.pchip if DEFAULT_METHOD == "pchip" else self.cubic


@dataclass
class Summary:
    """What :func:`run` measured and wrote; ``references_elsewhere``: the published curves drawn but not
    compared (measured on another image set)."""

    outdir: Path
    image_set: str
    images: list[str]
    curves: dict[str, Curve]
    bd_rates: list[BdRate]
    measured: int
    reused: int
    failures: list[Failure]
    incomplete: dict[str, list[str]]
    files: list[Path]
    references_elsewhere: list[PublishedCurve] = field(default_factory=list)


PLOT_FORMATS = ("png", "pdf", "svg")
"""The RD plot is written as ``rd.<ext>`` in each of these formats."""

REFERENCES: tuple[PublishedCurve, ...] = (GAUSSIANIMAGE_KODAK,)
"""Published curves drawn on every plot; compared (BD-rate) only on their own image set."""

ProgressFn = Callable[["Point | Failure"], None]
StartFn = Callable[[int, int], None]


def find_images(folder: Path, limit: int | None = None, exclude: Path | None = None) -> list[tuple[str, Path]]:
    """Images under ``folder`` (recursive, sorted, hidden entries and anything under ``exclude`` skipped),
    as ``(name relative to folder, path)``; the first ``limit`` if given."""
    from ..imageio import image_extensions

    if not folder.is_dir():
        raise BenchError(f"{folder} is not a folder")
    extensions = image_extensions()
    skip = exclude.resolve() if exclude is not None else None
    found: list[tuple[str, Path]] = []
    for dirpath, dirnames, filenames in os.walk(folder):
        here = Path(dirpath)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".")
                             and (skip is None or (here / d).resolve() != skip))
        for fname in sorted(filenames):
            if not fname.startswith(".") and os.path.splitext(fname)[1].lower() in extensions:
                path = here / fname
                found.append((path.relative_to(folder).as_posix(), path))
    found.sort()
    if not found:
        raise BenchError(f"no images in {folder} (searched recursively for files Pillow reads)")
    return found[:limit] if limit else found


@lru_cache(maxsize=4)
def _load(path: str) -> np.ndarray:
    from ..imageio import load_image

    return load_image(path)


def measure(task: Task) -> Point:
    """Encode, decode and score one point (exceptions propagate)."""
    image = _load(task.path)
    height, width = image.shape[:2]
    start = time.perf_counter()
    data = task.codec.encode(image, task.quality)
    encode_s = time.perf_counter() - start
    start = time.perf_counter()
    decoded = task.codec.decode(data)
    decode_s = time.perf_counter() - start
    if decoded.shape != image.shape or decoded.dtype != np.uint8:
        raise ValueError(f"{task.codec.name} decoded {decoded.shape} {decoded.dtype}, expected {image.shape} uint8")
    name, codec, quality = task.key
    return Point(name, codec, quality, len(data), 8 * len(data) / (width * height), psnr_u8(decoded, image),
                 ms_ssim(decoded, image), encode_s, decode_s)


def _attempt(task: Task) -> Point | Failure:
    try:
        return measure(task)
    except MissingDependencyError:
        raise
    except Exception as exc:  # one failing point fails that point, not the run
        return Failure(*task.key, error=str(exc) or type(exc).__name__)


def _single_thread() -> None:
    import torch

    torch.set_num_threads(1)
    try:
        import numba

        numba.set_num_threads(1)
    except Exception:
        pass


@contextmanager
def _single_threaded() -> Iterator[None]:
    """Run the body with one torch and one numba thread, restoring the previous counts."""
    import torch

    threads = torch.get_num_threads()
    try:
        import numba

        numba_threads: int | None = numba.get_num_threads()
    except Exception:
        numba_threads = None
    _single_thread()
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        if numba_threads is not None:
            import numba

            numba.set_num_threads(numba_threads)


def _warm_up(codecs: Sequence[Codec]) -> None:
    """Encode and decode a tiny image once per codec, so that imports and JIT loading stay out of the timings."""
    tiny = np.random.default_rng(0).integers(0, 256, (24, 32, 3), dtype=np.uint8)
    for codec in codecs:
        try:
            codec.decode(codec.encode(tiny, max(codec.qualities)))
        except Exception:  # a codec that fails here fails its points later, with the reason
            pass


def _init_worker(codecs: Sequence[Codec], parent: int) -> None:
    """Worker set-up: SIGINT ignored (the parent handles Ctrl-C), the worker ends with its parent (even one
    killed by SIGKILL), one thread, codecs warmed up."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    die_with_parent(parent)
    _single_thread()
    _warm_up(codecs)


@lru_cache(maxsize=None)
def _pixels(path: str) -> int:
    try:
        from PIL import Image

        with Image.open(path) as im:
            return im.width * im.height
    except Exception:  # unreadable: measure() reports it
        return 0


def _cost(task: Task) -> float:
    """Rough relative cost, to start the slowest points first (fits dominate)."""
    return _pixels(task.path) * (1e3 * task.quality if task.codec.name == "gsi" else 1.0)


def plan(images: Sequence[tuple[str, Path]], codecs: Sequence[Codec], store: PointStore) -> list[Task]:
    """The tasks not yet in ``store``, slowest first."""
    tasks = [Task(name, str(path), codec, q) for codec in codecs for name, path in images
             for q in codec.qualities]
    todo = [t for t in tasks if t.key not in store]
    return sorted(todo, key=_cost, reverse=True)


def _execute(tasks: list[Task], jobs: int, on_result: Callable[[Point | Failure], None]) -> None:
    codecs = list({t.codec.name: t.codec for t in tasks}.values())
    if jobs <= 1 or len(tasks) <= 1:
        with _single_threaded():
            _warm_up(codecs)
            for task in tasks:
                on_result(_attempt(task))
        return
    ctx = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(max_workers=min(jobs, len(tasks)), mp_context=ctx, initializer=_init_worker,
                               initargs=(codecs, os.getpid()))
    try:
        pending: dict[Future, Task] = {pool.submit(_attempt, t): t for t in tasks}
        while pending:
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in finished:
                task = pending.pop(fut)
                try:
                    result = fut.result()
                except MissingDependencyError:
                    raise
                except Exception as exc:  # a crashed worker fails its point
                    result = Failure(*task.key, error=f"worker failed: {exc or type(exc).__name__}")
                on_result(result)
    except BaseException:
        workers = list((getattr(pool, "_processes", None) or {}).values())  # before shutdown() forgets them
        pool.shutdown(wait=False, cancel_futures=True)
        for proc in workers:
            proc.terminate()
        for proc in workers:
            proc.join(timeout=30)
        raise
    pool.shutdown(wait=True)


def aggregate(store: PointStore, images: Sequence[str], codecs: Sequence[Codec],
              folder: str) -> tuple[dict[str, Curve], dict[str, list[str]]]:
    """Per codec, the curve over the qualities measured on every image; and per codec the qualities left out."""
    curves: dict[str, Curve] = {}
    incomplete: dict[str, list[str]] = {}
    for codec in codecs:
        desc = f"{codec.description()}. Mean over {len(images)} image(s) of {folder}."
        curve = Curve(codec.name, desc, len(images))
        for q in sorted(codec.qualities):
            label = quality_label(q)
            pts = [store.get((img, codec.name, label)) for img in images]
            if any(p is None for p in pts):
                incomplete.setdefault(codec.name, []).append(label)
                continue
            done = [p for p in pts if p is not None]
            curve.quality.append(label)
            curve.bpp.append(float(np.mean([p.bpp for p in done])))
            curve.psnr.append(float(np.mean([p.psnr for p in done])))
            curve.ms_ssim.append(float(np.mean([p.ms_ssim for p in done])))
            curve.encoding_time.append(float(np.mean([p.encode_s for p in done])))
            curve.decoding_time.append(float(np.mean([p.decode_s for p in done])))
        curves[codec.name] = curve
    return curves, incomplete


def _bd(test: str, anchor: str, t_bpp: Sequence[float], t_psnr: Sequence[float], a_bpp: Sequence[float],
        a_psnr: Sequence[float]) -> BdRate:
    values = {}
    for method in ("pchip", "cubic"):
        try:
            values[method] = bd_rate(a_bpp, a_psnr, t_bpp, t_psnr, method=method)
        except ValueError:  # too few points, repeated PSNRs, ...
            values[method] = math.nan
    lo, hi = common_range(a_psnr, t_psnr) if len(a_psnr) and len(t_psnr) else (math.nan, math.nan)
    return BdRate(test, anchor, values["pchip"], values["cubic"], (lo, hi), (len(t_psnr), len(a_psnr)))


def bd_rates(curves: dict[str, Curve], references: Sequence[PublishedCurve] = ()) -> list[BdRate]:
    """``gsi`` against every other codec and the published ``references`` (give only those measured on these
    images); every other codec against ``jpeg``."""
    rows: list[BdRate] = []
    if "gsi" in curves:
        g = curves["gsi"]
        for name, c in curves.items():
            if name != "gsi":
                rows.append(_bd("gsi", name, g.bpp, g.psnr, c.bpp, c.psnr))
        for ref in references:
            rows.append(_bd("gsi", ref.name, g.bpp, g.psnr, ref.bpp, ref.psnr))
    if "jpeg" in curves:
        j = curves["jpeg"]
        for name, c in curves.items():
            if name not in ("gsi", "jpeg"):
                rows.append(_bd(name, "jpeg", c.bpp, c.psnr, j.bpp, j.psnr))
    return rows


def run(folder: Path, codecs: Sequence[Codec], outdir: Path, jobs: int = 1, limit: int | None = None,
        start: StartFn | None = None, progress: ProgressFn | None = None) -> Summary:
    """Measure every missing point of ``codecs`` on the images in ``folder``; write the results to ``outdir``.

    ``start(to_measure, already_measured)`` is called once before measuring,
    ``progress(point_or_failure)`` after every point. Raises :class:`BenchError`
    for an unusable folder or results folder, or settings that differ from the
    results already in ``outdir``. ``KeyboardInterrupt`` propagates; finished
    points are already on disk.
    """
    if not codecs:
        raise BenchError("no codecs to run")
    images = find_images(folder, limit, exclude=outdir)
    try:
        outdir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BenchError(f"cannot create output folder {outdir}: {exc}") from None
    check_settings(outdir / "settings.json", {c.name: c.description() for c in codecs})
    store = PointStore(outdir / "points.csv")
    tasks = plan(images, codecs, store)
    total = sum(len(c.qualities) for c in codecs) * len(images)
    if start is not None:
        start(len(tasks), total - len(tasks))
    failures: list[Failure] = []
    measured = 0

    def on_result(result: Point | Failure) -> None:
        nonlocal measured
        if isinstance(result, Point):
            store.append(result)
            measured += 1
        else:
            failures.append(result)
        if progress is not None:
            progress(result)

    try:
        _execute(tasks, jobs, on_result)
    except MissingDependencyError as exc:
        raise BenchError(str(exc)) from None

    names = [n for n, _ in images]
    image_set = folder.name or str(folder)
    curves, incomplete = aggregate(store, names, codecs, image_set)
    files: list[Path] = []
    for curve in curves.values():
        path = outdir / f"{curve.codec}.json"
        write_results(path, curve.codec, curve.description, curve.results())
        files.append(path)
    same_set = [r for r in REFERENCES if is_image_set(names, r.image_names)]
    plotted = {n: {"bpp": c.bpp, "psnr": c.psnr, "ms_ssim": c.ms_ssim} for n, c in curves.items() if c.bpp}
    if plotted:
        paths = [outdir / f"rd.{ext}" for ext in PLOT_FORMATS]
        plot_rd(plotted, paths, plot_title(image_set, len(names), codecs), references=REFERENCES)
        files.extend(paths)
    elsewhere = [r for r in REFERENCES if r not in same_set] if "gsi" in curves else []
    return Summary(outdir, image_set, names, curves, bd_rates(curves, same_set), measured, total - len(tasks),
                   failures, incomplete, files, elsewhere)


def plot_title(image_set: str, images: int, codecs: Sequence[Codec]) -> str:
    """The RD plot's title: the image set and its size, then every codec's settings (:meth:`Codec.label`)."""
    return (f"{image_set}: {images} image(s) at native resolution, mean per setting\n"
            + "; ".join(c.label() for c in codecs))


__all__ = ["BdRate", "Curve", "Failure", "PLOT_FORMATS", "REFERENCES", "Summary", "Task", "aggregate", "bd_rates",
           "find_images", "measure", "plan", "plot_title", "run"]
