"""The GPU path in one short run (issue 17): compiled CUDA tests, fit-step throughput, the batched GPU fitter
against the CPU fitter, GPU decode and CLIP head training steps, each judged against its target.

Prepare here (with network), run there (no network; ``gpu-bundle/`` travels with the checkout)::

    python benchmarks/gpu_wheels.py                        # here: wheels and photos -> gpu-bundle/
    python3 benchmarks/gpu_check.py                        # there: install offline, run, report to $OUT
    python benchmarks/gpu_check.py --dry-run --out DIR     # anywhere: CPU, Triton interpreter, tiny sizes

First it installs the project and the bundle's wheels (:data:`gpu_wheels.RUNTIME`) with ``pip install
--no-index --find-links gpu-bundle/wheels --no-deps -e . ...``, which leaves torch and Triton alone
(skipped in a dry run or without the folder). Then every section of :data:`SECTIONS` runs in a process
of its own under a time limit, all of them within ``--minutes`` (8), and records each measurement as it
is taken: a section that fails or runs out of time loses only itself, and keeps what it measured before.
``gpu-report.json``, ``gpu-report.md`` and ``gpu-check.log`` go to ``--out`` (default ``$OUT``, else
``gpu-report/``). The targets (:data:`TARGETS`) are judged from the measurements; a dry run measures the
interpreter, so it judges none. Exit status 1 when a section failed, timed out or was skipped.
"""

from __future__ import annotations

import argparse
import importlib.abc
import importlib.metadata
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import gpu_wheels  # noqa: E402  (standard library only, like this module's top level)

BLOCK_ENV = "GPU_CHECK_BLOCK"
"""Comma-separated import names a dry run's sections may not import (what the GPU machine lacks)."""


# ----------------------------------------------------------------------------------------- sizes and targets


@dataclass(frozen=True)
class Sizes:
    """Problem sizes of one mode (on a GPU, or the dry run's tiny ones)."""

    size: int
    points: int
    batches: tuple[int, ...]
    gaussians: tuple[int, ...]
    step_iters: int
    step_min_seconds: float
    probe_images: int
    max_images: int
    cpu_images: int
    warm_iterations: int
    fit: dict[str, Any]
    decode_batch: int
    decode_rounds: int
    clip: tuple[tuple[str, int, int, int], ...]
    """(head config, batch, Gaussians per image, image side) per CLIP run."""
    clip_steps: tuple[int, int]
    """Untimed then timed training steps."""


GPU = Sizes(size=224, points=400, batches=(1, 4, 16, 64, 256, 1024, 4096), gaussians=(400, 900, 1600, 3136),
            step_iters=3, step_min_seconds=0.5, probe_images=256, max_images=4096, cpu_images=4,
            warm_iterations=20, fit={}, decode_batch=4096, decode_rounds=10,
            clip=(("gsi-tiny", 1024, 400, 224), ("gsi-vit-b-16-k98", 256, 900, 224),
                  ("gsi-vit-b-16-cells", 64, 900, 224)), clip_steps=(2, 8))
DRY = Sizes(size=16, points=12, batches=(1, 2), gaussians=(8, 20), step_iters=1, step_min_seconds=0.0,
            probe_images=1, max_images=2, cpu_images=1, warm_iterations=2,
            fit=dict(iterations=10, check_every=5, init_color_iters=2, event_color_iters=1, final_color_iters=2,
                     refit_iters=2, refit_shape_iters=2),
            decode_batch=4, decode_rounds=1,
            clip=(("gsi-tiny", 4, 30, 32), ("gsi-vit-b-16-k98", 2, 30, 32), ("gsi-tiny-cells", 2, 30, 32)),
            clip_steps=(1, 1))

TARGETS = {
    "fit_throughput": "at least 300 images/s with 400 Gaussians at 224x224, reaching at least 28 dB "
                      "(mean PSNR of the written files; the paper: 139 images/s per GPU at about 22 dB)",
    "fit_psnr_match": "GPU fitter PSNR within 0.3 dB of the CPU fitter (mean over the images both fitted)",
    "utilization": "GPU utilization above 90% in the throughput sections (the fit-step batch with the most "
                   "images/s at each Gaussian count, and the batched fitter)",
}
MIN_IMAGES_PER_S, MIN_PSNR, MAX_PSNR_GAP, MIN_UTIL = 300.0, 28.0, 0.3, 90.0


# ----------------------------------------------------------------------------------------- inside a section


class _Blocker(importlib.abc.MetaPathFinder):
    """Makes ``import NAME`` fail for the given top-level names, as on a machine without them."""

    def __init__(self, names: set[str]) -> None:
        self.names = names

    def find_spec(self, fullname: str, path: object = None, target: object = None) -> None:
        if fullname.split(".")[0] in self.names:
            raise ModuleNotFoundError(f"No module named {fullname!r} (blocked: the GPU machine lacks it)",
                                      name=fullname)
        return None


@dataclass
class Context:
    """What a section sees: its sizes, device, folders, deadline and the results file it appends to."""

    dry: bool
    sizes: Sizes
    photos: Path
    work: Path
    deadline: float
    results: Path
    device: Any = None

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def _write(self, record: dict) -> None:
        with self.results.open("a") as fh:
            fh.write(json.dumps(record, default=_jsonable) + "\n")

    def set(self, key: str, value: Any) -> None:
        """Record ``value`` under ``key`` now (a later call replaces it)."""
        self._write({"set": key, "value": value})

    def add(self, key: str, row: Any) -> None:
        """Append ``row`` to the list under ``key`` now."""
        self._write({"add": key, "value": row})


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    return str(value)


def _sync(ctx: Context) -> None:
    from bench_gpu import sync

    sync(ctx.device)


def _peak_gb(ctx: Context) -> float | None:
    import torch

    return torch.cuda.max_memory_allocated(ctx.device) / 1e9 if ctx.device.type == "cuda" else None


def _reset_peak(ctx: Context) -> None:
    import torch

    if ctx.device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(ctx.device)


def _crops(ctx: Context, count: int, size: int, distinct: int | None = None,
           seed: int = 0) -> tuple[list, list[dict]]:
    """``count`` random square crops (half to all of the shorter side, random flip) of the photos in turn; with
    ``distinct``, that many crops repeated to fill ``count``."""
    import numpy as np
    from bench_clip_common import load_rgb, random_crop

    paths = sorted(p for p in ctx.photos.iterdir() if p.suffix.lower() in gpu_wheels.PHOTO_SUFFIXES)
    if not paths:
        raise SystemExit(f"no photos in {ctx.photos}")
    photos = [load_rgb(p) for p in paths]
    rng = np.random.default_rng(seed)
    unique = min(count, distinct or count)
    crops = [random_crop(photos[i % len(photos)], size, rng, min_scale=0.5) for i in range(unique)]
    sources = [{"name": p.name, "width": im.width, "height": im.height} for p, im in zip(paths, photos)]
    return [crops[i % unique] for i in range(count)], sources


def section_env(ctx: Context) -> None:
    """Python, torch, Triton, the GPU and its driver, the optional packages, and how utilization is read."""
    import numba
    import numpy
    import torch

    from bench_gpu import UtilSampler
    from gscodec.raster.triton.availability import cuda_problem

    info: dict[str, Any] = {
        "python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count(),
        "torch": torch.__version__, "torch_cuda": torch.version.cuda, "numpy": numpy.__version__,
        "numba": numba.__version__, "triton_interpret": os.environ.get("TRITON_INTERPRET", ""),
        "cuda_problem": cuda_problem(),
    }
    try:
        import triton

        info["triton"] = triton.__version__
    except ImportError as exc:
        info["triton"] = f"missing: {exc}"
    modules = {}
    for name in ("zstandard", "open_clip", "ftfy", *gpu_wheels.NOT_CARRIED):
        try:
            module = __import__(name)
            modules[name] = str(getattr(module, "__version__", "present"))
        except Exception as exc:  # noqa: BLE001 - ImportError, or a package that fails while importing
            modules[name] = f"missing ({exc})"
    info["modules"] = modules
    info["tile_binning"] = "gsplat" if not modules["gsplat"].startswith("missing") else "PyTorch (no gsplat)"
    if ctx.device.type == "cuda":
        props = torch.cuda.get_device_properties(ctx.device)
        info.update(gpu=props.name, capability=f"{props.major}.{props.minor}",
                    multiprocessors=props.multi_processor_count, memory_gib=round(props.total_memory / 2**30, 1))
        try:
            smi = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                 capture_output=True, text=True, timeout=20, check=True)
            info["driver"] = smi.stdout.strip().splitlines()[0]
        except (OSError, subprocess.SubprocessError, IndexError) as exc:
            info["driver"] = f"unknown ({exc})"
    info["utilization_source"] = UtilSampler(ctx.device).source
    ctx.set("env", info)


def section_tests(ctx: Context) -> None:
    """``tests/test_cuda_kernels.py`` in this process: compiled on a GPU, in the interpreter in a dry run."""
    import pytest

    class Collect:
        def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
            if report.when == "call" or report.outcome != "passed":
                row = {"test": report.nodeid, "when": report.when, "outcome": report.outcome,
                       "seconds": round(report.duration, 3)}
                if report.outcome != "passed":
                    row["detail"] = str(report.longrepr)[-1500:]
                ctx.add("tests", row)

    args = [str(ROOT / "tests" / "test_cuda_kernels.py"), "-q", "-p", "no:cacheprovider", "-p", "no:xdist",
            "-k", "not test_kernels_in_interpreter", f"--rootdir={ROOT}"]
    code = pytest.main(args, plugins=[Collect()])
    ctx.set("tests_exit", int(code))
    if int(code) not in (0, 5):
        raise SystemExit(f"pytest exited {int(code)}")


def section_steps(ctx: Context) -> None:
    """Fit steps (forward, MSE, backward, Adam) of random problems against batch size and Gaussian count."""
    from bench_gpu import measure

    from gscodec.raster.triton import binning, rasterize_sum

    s = ctx.sizes
    opts = argparse.Namespace(iters=s.step_iters, warmup=1 if ctx.dry else 2, min_seconds=s.step_min_seconds)
    for n in s.gaussians:
        for batch in s.batches:
            if ctx.left() < 8:
                ctx.add("steps", {"n": n, "batch": batch, "note": "no time left"})
                continue
            r = measure("triton", rasterize_sum, batch, n, s.size, ctx.device, opts)
            ctx.add("steps", {"n": n, "batch": batch, "size": s.size, "ms": r.ms, "images_per_s": r.images_per_s,
                              "util": r.util, "peak_gb": r.peak_gb, "note": r.note})
    ctx.set("steps_binning", "PyTorch" if binning._gsplat_failed or ctx.device.type != "cuda" else "gsplat")


def _fit_summary(results: list, seconds: float, util: Any, ctx: Context) -> dict:
    import numpy as np

    psnr = np.array([r.psnr for r in results])
    return {"images": len(results), "seconds": seconds, "images_per_s": len(results) / seconds,
            "psnr_mean": float(psnr.mean()), "psnr_min": float(psnr.min()), "psnr_max": float(psnr.max()),
            "psnr_unquantized_mean": float(np.mean([r.psnr_unquantized for r in results])),
            "iterations_mean": float(np.mean([r.iterations for r in results])),
            "util": util.mean, "peak_gb": _peak_gb(ctx)}


def section_fit(ctx: Context) -> None:
    """The batched GPU fitter on photo crops (a probe batch), the CPU fitter on the first few of the same crops
    with the PSNRs compared, then the GPU fitter on the largest batch that memory and the time left allow."""
    from dataclasses import asdict, fields, replace

    import gscodec
    from bench_gpu import UtilSampler, time_fit
    from gscodec.fit import FitConfig
    from gscodec.fit.placement import choose_batch_size

    s = ctx.sizes
    known = {f.name for f in fields(FitConfig)}
    gpu_cfg = FitConfig(points=s.points, backend="cuda", **{k: v for k, v in s.fit.items() if k in known})
    ctx.set("fit_config", asdict(gpu_cfg))
    limit = s.max_images if ctx.device.type != "cuda" else min(
        s.max_images, choose_batch_size(s.size, s.size, s.points, device=ctx.device))
    images, photos = _crops(ctx, max(limit, s.probe_images), s.size, distinct=s.probe_images)
    ctx.set("fit_photos", {"folder": str(ctx.photos), "photos": photos, "distinct_crops": s.probe_images,
                           "all_upscaled": all(min(p["width"], p["height"]) < s.size for p in photos),
                           "crop": "random square, half to all of the shorter side, random flip, resized to "
                                   f"{s.size}x{s.size}; the probe batch's crops repeated to fill larger batches"})

    t0 = time.perf_counter()
    warm = replace(gpu_cfg, iterations=min(gpu_cfg.iterations, s.warm_iterations))
    time_fit(images[:min(8, s.probe_images)], warm, s.probe_images)
    ctx.set("fit_warmup_seconds", time.perf_counter() - t0)

    def run(count: int, key: str) -> tuple[list, dict]:
        _reset_peak(ctx)
        start = time.perf_counter()

        def progress(p: dict) -> None:
            ctx.set(key + "_progress", {"iteration": p["iteration"], "of": p["iterations"],
                                        "running": len(p["images"]), "seconds": time.perf_counter() - start})

        with UtilSampler(ctx.device) as util:
            results, seconds = time_fit(images[:count], gpu_cfg, count, progress)
        summary = {"batch": count, **_fit_summary(results, seconds, util, ctx)}
        ctx.set(key, summary)
        return results, summary

    gpu, probe = run(s.probe_images, "fit_probe")
    fitted = ctx.work / "fitted"
    fitted.mkdir(parents=True, exist_ok=True)
    for i, r in enumerate(gpu[:64]):
        data = gscodec.encode(r.gaussians, quantization=r.quantization or gscodec.Quantization())
        (fitted / f"{i:03d}.gsi").write_bytes(data)

    cpu_n = min(s.cpu_images, len(gpu))
    cpu, cpu_s = time_fit(images[:cpu_n], replace(gpu_cfg, backend="cpu"), cpu_n)
    diffs = [g.psnr - c.psnr for g, c in zip(gpu, cpu)]
    ctx.set("fit_cpu", {"images": cpu_n, "seconds": cpu_s, "images_per_s": cpu_n / cpu_s,
                        "per_image": [{"gpu": g.psnr, "cpu": c.psnr, "gpu_unquantized": g.psnr_unquantized,
                                       "cpu_unquantized": c.psnr_unquantized} for g, c in zip(gpu, cpu)],
                        "mean_diff": sum(diffs) / len(diffs), "max_abs_diff": max(map(abs, diffs))})

    # A larger batch runs at least as fast per image as the probe did, so this plan errs on the short side.
    affordable = int(0.8 * probe["images_per_s"] * (ctx.left() - 5.0))
    ctx.set("fit_main_plan", {"largest_batch_in_memory": limit, "affordable_in_time": affordable})
    if min(limit, affordable) > s.probe_images:
        run(min(limit, affordable), "fit_main")


def section_decode(ctx: Context) -> None:
    """Decoding `.gsi` files: parsing, one file at a time through ``gscodec.render`` on the GPU and on the CPU,
    and a padded batch through the Triton forward kernel to 8 bits on the GPU."""
    import numpy as np
    import torch

    import gscodec
    from bench_clip_common import random_gaussians_like
    from bench_gpu import UtilSampler
    from gscodec.raster.triton import rasterize_sum

    s = ctx.sizes
    files = sorted((ctx.work / "fitted").glob("*.gsi"))
    if files:
        data, source = [f.read_bytes() for f in files], "files written by the fit section"
    else:
        crops, _ = _crops(ctx, 16, s.size, seed=1)
        data = [gscodec.encode(random_gaussians_like(c, s.points, i)) for i, c in enumerate(crops)]
        source = f"random Gaussians ({s.points}, spacing-sized; the fit section left no files)"
    gscodec.decode(data[0])  # the first call loads the numba-compiled parsers
    t0 = time.perf_counter()
    images = [gscodec.decode(d).gaussians for d in data]
    parse_ms = 1e3 * (time.perf_counter() - t0) / len(data)
    g0 = images[0]
    info: dict[str, Any] = {"source": source, "files": len(data), "width": g0.width, "height": g0.height,
                            "gaussians_mean": float(np.mean([g.count for g in images])),
                            "bytes_mean": float(np.mean([len(d) for d in data])), "parse_ms": parse_ms}

    def per_file(**kw: Any) -> tuple[float, list]:
        gscodec.render(images[0], **kw)
        t = time.perf_counter()
        out = [gscodec.render(g, **kw) for _ in range(s.decode_rounds) for g in images]
        return len(out) / (time.perf_counter() - t), out[:len(images)]

    info["gpu_per_file_images_per_s"], gpu_px = per_file(backend="cuda", device=ctx.device)
    info["cpu_per_file_images_per_s"], cpu_px = per_file()
    diff = [np.abs(a.astype(int) - b.astype(int)) for a, b in zip(gpu_px, cpu_px)]
    info["gpu_vs_cpu_max_abs_diff"] = int(max(d.max() for d in diff))
    info["gpu_vs_cpu_pixels_differing"] = float(np.mean([(d > 0).mean() for d in diff]))
    ctx.set("decode", info)

    reps = -(-s.decode_batch // len(images))
    batch = (images * reps)[:s.decode_batch]
    n = max(g.count for g in batch)

    def padded(attr: str, width: int) -> torch.Tensor:
        t = torch.zeros(len(batch), n, width)
        for i, g in enumerate(batch):
            t[i, :g.count] = torch.from_numpy(getattr(g, attr))
        return t.to(ctx.device)

    means, chol, colors = padded("means", 2), padded("chol", 3), padded("colors", 3)
    counts = torch.tensor([g.count for g in batch], device=ctx.device)

    def decode_batch() -> torch.Tensor:
        with torch.no_grad():
            out = rasterize_sum(means, chol, colors, g0.width, g0.height, counts)
            return torch.floor(out.clamp(0, 1) * 255.0 + 0.5).to(torch.uint8)

    _reset_peak(ctx)
    decode_batch()
    _sync(ctx)
    with UtilSampler(ctx.device) as util:
        t = time.perf_counter()
        for _ in range(s.decode_rounds):
            pixels = decode_batch()
        _sync(ctx)
        seconds = time.perf_counter() - t
    same = bool(np.array_equal(pixels[0].cpu().numpy(), gpu_px[0]))
    ctx.set("decode_batched", {"batch": len(batch), "rounds": s.decode_rounds,
                               "images_per_s": len(batch) * s.decode_rounds / seconds, "util": util.mean,
                               "peak_gb": _peak_gb(ctx), "equals_per_file_render": same})


def section_clip(ctx: Context) -> None:
    """Contrastive training steps of CLIP heads (random teacher weights; text targets cached after the first
    step, so a timed step is head forward, loss, backward and AdamW)."""
    import torch

    from bench_clip_common import random_gaussians_like
    from bench_gpu import UtilSampler
    from gscodec.clip import create_head
    from gscodec.clip.data import sample_from_gaussians
    from gscodec.clip.train import Trainer, TrainConfig

    s = ctx.sizes
    warm, timed = s.clip_steps
    for config, batch, points, side in s.clip:
        if ctx.left() < 15:
            ctx.add("clip", {"config": config, "note": "no time left"})
            continue
        distinct = 64
        crops, photos = _crops(ctx, batch, side, distinct=distinct, seed=2)
        data = []
        for i, crop in enumerate(crops):
            sample = sample_from_gaussians(random_gaussians_like(crop, points, i), f"{i:06d}", i)
            photo = photos[i % min(batch, distinct) % len(photos)]["name"].split(".")[0]
            sample["caption"] = f"a photo of {photo}"
            data.append(sample)
        torch.manual_seed(0)
        head, clip = create_head(config, pretrained="none", device=ctx.device)
        cfg = TrainConfig(stage="contrastive", steps=warm + timed, batch_size=batch, lr=1e-4, warmup_steps=0)
        trainer = Trainer(head, clip, data, cfg, device=ctx.device)
        _reset_peak(ctx)
        trainer.run(until=warm)
        _sync(ctx)
        with UtilSampler(ctx.device) as util:
            t = time.perf_counter()
            trainer.run(until=warm + timed)
            _sync(ctx)
            seconds = time.perf_counter() - t
        ctx.add("clip", {"config": config, "clip_model": clip.model_name, "batch": batch, "gaussians": points,
                         "steps": timed, "ms_per_step": 1e3 * seconds / timed,
                         "images_per_s": batch * timed / seconds, "util": util.mean, "peak_gb": _peak_gb(ctx),
                         "precision": str(trainer.amp_dtype or "fp32"), "loss": trainer.last_loss})
        del trainer, head, clip


@dataclass(frozen=True)
class Section:
    name: str
    title: str
    seconds: float
    """Time limit on a GPU (the whole run's limit shortens it when time runs out)."""
    run: Callable[[Context], None] = field(repr=False)
    needs_gpu: bool = True
    """Outside a dry run, fail at once without a usable CUDA device (else run on the CPU and report)."""


SECTIONS = (
    Section("env", "environment", 45, section_env, needs_gpu=False),
    Section("tests", "CUDA tests (tests/test_cuda_kernels.py)", 90, section_tests, needs_gpu=False),
    Section("fit", "batched GPU fitter against the CPU fitter", 200, section_fit),
    Section("steps", "fit-step throughput", 100, section_steps),
    Section("decode", "GPU decode throughput", 40, section_decode),
    Section("clip", "CLIP head training steps", 60, section_clip),
)


def child(args: argparse.Namespace) -> int:
    """Run one section (``--section``) in this process."""
    if args.dry_run:
        os.environ["TRITON_INTERPRET"] = "1"
    blocked = {n for n in os.environ.get(BLOCK_ENV, "").split(",") if n}
    if blocked:
        sys.meta_path.insert(0, _Blocker(blocked))
    import torch

    section = next(s for s in SECTIONS if s.name == args.section)
    ctx = Context(dry=args.dry_run, sizes=DRY if args.dry_run else GPU, photos=args.photos, work=args.work,
                  deadline=time.monotonic() + args.seconds, results=args.results)
    from gscodec.raster.triton.availability import cuda_problem, resolve_device

    if args.dry_run or (not section.needs_gpu and cuda_problem() is not None):
        ctx.device = torch.device("cpu")
    else:
        ctx.device = resolve_device("cuda")
    section.run(ctx)
    return 0


# ----------------------------------------------------------------------------------------- the run


def versions(names: tuple[str, ...]) -> dict[str, str | None]:
    """Installed versions (package metadata; nothing is imported)."""
    importlib.invalidate_caches()
    out: dict[str, str | None] = {}
    for name in names:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def install_command(wheels: Path) -> list[str]:
    """The offline install: the project (editable) and the bundle's runtime wheels, no dependencies."""
    return [sys.executable, "-m", "pip", "install", "--no-index", "--find-links", str(wheels), "--no-deps",
            "--no-cache-dir", "-e", str(ROOT), *gpu_wheels.RUNTIME]


def install(wheels: Path, dry: bool) -> dict[str, Any]:
    """Run :func:`install_command` unless dry or without the folder; torch and Triton versions before and after."""
    cmd = install_command(wheels)
    record: dict[str, Any] = {"command": " ".join(cmd)}
    if dry:
        return {**record, "status": "skipped", "reason": "dry run"}
    if not wheels.is_dir():
        return {**record, "status": "skipped", "reason": f"{wheels} not found (run benchmarks/gpu_wheels.py)"}
    record["before"] = versions(("torch", "triton"))
    t0 = time.monotonic()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180, cwd=ROOT)
        ok, tail = proc.returncode == 0, (proc.stdout + proc.stderr)[-2000:]
    except subprocess.TimeoutExpired as exc:
        ok, tail = False, f"timed out after {exc.timeout} s"
    record.update(status="ok" if ok else "failed", seconds=time.monotonic() - t0, log=tail,
                  after=versions(("torch", "triton", "gscodec", *gpu_wheels.RUNTIME)))
    return record


def run_section(section: Section, args: argparse.Namespace, seconds: float, log: Path) -> dict[str, Any]:
    """Run ``section`` in a child process (its own process group) for at most ``seconds``; its status and records."""
    results = args.work / f"{section.name}.jsonl"
    results.unlink(missing_ok=True)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--section", section.name, "--results", str(results),
           "--work", str(args.work), "--photos", str(args.photos), "--seconds", str(seconds)]
    env = os.environ | {"PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1", "OMP_WAIT_POLICY": "PASSIVE"}
    if args.dry_run:
        cmd.append("--dry-run")
        env |= {"TRITON_INTERPRET": "1", "CUDA_VISIBLE_DEVICES": "", BLOCK_ENV: ",".join(gpu_wheels.NOT_CARRIED)}
    t0 = time.monotonic()
    with log.open("a") as fh:
        fh.write(f"\n===== {section.name} (limit {seconds:.0f} s)\n")
        fh.flush()
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=ROOT, start_new_session=True)
        try:
            code = proc.wait(timeout=seconds)
            status = "ok" if code == 0 else f"failed (exit {code})"
        except subprocess.TimeoutExpired:
            status = f"timed out after {seconds:.0f} s"
        finally:
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # the section's own children too (pytest's subprocesses)
            except ProcessLookupError:
                pass
            proc.wait()
    record: dict[str, Any] = {"status": status, "seconds": round(time.monotonic() - t0, 1), "data": {}}
    if results.exists():
        for line in results.read_text().splitlines():
            item = json.loads(line)
            if "set" in item:
                record["data"][item["set"]] = item["value"]
            else:
                record["data"].setdefault(item["add"], []).append(item["value"])
    if status != "ok":
        text = log.read_text()
        record["log_tail"] = text[text.rfind(f"===== {section.name} "):][-3000:]
    return record


def judge(sections: dict[str, dict], dry: bool) -> dict[str, dict]:
    """Each target's measured value and verdict: ``pass``, ``fail``, ``not measured`` or ``not judged``."""
    fit = sections.get("fit", {}).get("data", {})
    main = fit.get("fit_main") or fit.get("fit_probe")
    out: dict[str, dict] = {}
    if main:
        measured = f"{main['images_per_s']:.1f} images/s at {main['psnr_mean']:.2f} dB (batch {main['batch']})"
        ok = main["images_per_s"] >= MIN_IMAGES_PER_S and main["psnr_mean"] >= MIN_PSNR
        out["fit_throughput"] = {"measured": measured, "verdict": "pass" if ok else "fail"}
    cpu = fit.get("fit_cpu")
    if cpu:
        measured = f"mean GPU - CPU {cpu['mean_diff']:+.3f} dB, max |diff| {cpu['max_abs_diff']:.3f} dB " \
                   f"over {cpu['images']} images"
        out["fit_psnr_match"] = {"measured": measured,
                                 "verdict": "pass" if abs(cpu["mean_diff"]) <= MAX_PSNR_GAP else "fail"}
    utils: dict[str, float | None] = {}
    best: dict[int, dict] = {}
    for row in sections.get("steps", {}).get("data", {}).get("steps", []):
        if row.get("images_per_s") and row["images_per_s"] > best.get(row["n"], {}).get("images_per_s", 0):
            best[row["n"]] = row
    for n, row in sorted(best.items()):
        utils[f"steps N={n} batch {row['batch']}"] = row.get("util")
    if main:
        utils[f"fitter batch {main['batch']}"] = main.get("util")
    if utils:
        values = [v for v in utils.values() if v is not None]
        measured = ", ".join(f"{k}: {'n/a' if v is None else f'{v:.0f}%'}" for k, v in utils.items())
        if not values:
            env = sections.get("env", {}).get("data", {}).get("env", {})
            why = "no CUDA device" if env.get("cuda_problem") else "neither NVML (pynvml) nor nvidia-smi answered"
            out["utilization"] = {"measured": f"could not be measured: {why}", "verdict": "not measured"}
        else:
            verdict = "fail" if min(values) <= MIN_UTIL else "pass" if len(values) == len(utils) else "not measured"
            out["utilization"] = {"measured": measured, "verdict": verdict}
    for key, text in TARGETS.items():
        out.setdefault(key, {"measured": "no measurement (its section did not get that far)",
                             "verdict": "not measured"})
        out[key]["target"] = text
        if dry:
            out[key]["verdict"] = "not judged (dry run: Triton interpreter on the CPU)"
    return out


def _f(value: Any, spec: str = ".1f") -> str:
    return "n/a" if value is None or isinstance(value, str) else format(value, spec)


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header),
            *("| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows), ""]


def markdown(report: dict) -> str:
    """The report as markdown tables."""
    sec = report["sections"]
    data = {name: s.get("data", {}) for name, s in sec.items()}
    env = data.get("env", {}).get("env", {})
    mode = "dry run (CPU, Triton interpreter, tiny sizes: no figure here is a GPU measurement)" if report["dry_run"] \
        else "GPU run"
    binning = data.get("steps", {}).get("steps_binning") or env.get("tile_binning", "?")
    lines = [f"# GPU check: {mode}", "",
             f"{env.get('gpu', 'no GPU')} (driver {env.get('driver', 'n/a')}, {env.get('memory_gib', 'n/a')} GiB), "
             f"torch {env.get('torch', '?')} (CUDA {env.get('torch_cuda', 'n/a')}), Triton {env.get('triton', '?')}, "
             f"Python {env.get('python', '?')}, {env.get('cpus', '?')} CPUs; tile binning {binning}; utilization "
             f"from {env.get('utilization_source') or 'nowhere'}; install: {report['install']['status']}; "
             f"{report['seconds']:.0f} s in all.", ""]
    targets = [[t["target"], t["measured"], t["verdict"]] for t in report["targets"].values()]
    lines += ["## Targets", ""] + _table(["target", "measured", "verdict"], targets)
    lines += ["## Sections", ""] + _table(["section", "status", "seconds"],
                                         [[s["title"], s["status"], s["seconds"]] for s in sec.values()])
    tests = data.get("tests", {}).get("tests", [])
    if tests:
        counts = {o: sum(t["outcome"] == o for t in tests) for o in ("passed", "failed", "skipped")}
        lines += ["## CUDA tests", "", ", ".join(f"{v} {k}" for k, v in counts.items()), ""]
        lines += _table(["test", "outcome", "seconds"],
                        [[t["test"].split("::")[-1], t["outcome"], t["seconds"]] for t in tests])
    fit = data.get("fit", {})
    rows = [[k.removeprefix("fit_"), v["batch"], v["images"], _f(v["seconds"]), _f(v["images_per_s"]),
             _f(v["psnr_mean"], ".2f"), _f(v["psnr_min"], ".2f"), _f(v["util"], ".0f"), _f(v["peak_gb"], ".2f")]
            for k, v in fit.items() if k in ("fit_probe", "fit_main")]
    if "fit_cpu" in fit:
        c = fit["fit_cpu"]
        rows.append(["CPU fitter", c["images"], c["images"], _f(c["seconds"]), _f(c["images_per_s"], ".2f"),
                     _f(sum(p["cpu"] for p in c["per_image"]) / len(c["per_image"]), ".2f"),
                     _f(min(p["cpu"] for p in c["per_image"]), ".2f"), "-", "-"])
    unfinished = [f"The {k} batch stopped at iteration {p['iteration']} of {p['of']} ({p['running']} images "
                  f"still running) after {p['seconds']:.1f} s."
                  for k in ("probe", "main") if f"fit_{k}" not in fit and (p := fit.get(f"fit_{k}_progress"))]
    if rows or unfinished:
        cfg, plan = fit.get("fit_config", {}), fit.get("fit_main_plan", {})
        lines += ["## Batched fitter", "", f"{cfg.get('points')} Gaussians, {cfg.get('iterations')} iterations, "
                  f"photos from {fit.get('fit_photos', {}).get('folder')}; main batch: at most "
                  f"{plan.get('largest_batch_in_memory')} in memory, {plan.get('affordable_in_time')} in the time "
                  "left after the probe and the CPU fitter", ""]
        if fit.get("fit_photos", {}).get("all_upscaled"):
            lines += ["Every photo is smaller than the crops: all are upscaled, so the PSNRs are optimistic.", ""]
        lines += [*unfinished, ""] if unfinished else []
        lines += _table(["run", "batch", "images", "seconds", "images/s", "PSNR mean", "PSNR min", "util %",
                         "peak GB"], rows)
    steps = data.get("steps", {}).get("steps", [])
    if steps:
        lines += ["## Fit steps (forward, MSE, backward, Adam)", ""]
        lines += _table(["Gaussians", "batch", "ms/step", "images/s", "util %", "peak GB", "note"],
                        [[r["n"], r["batch"], _f(r.get("ms"), ".2f"), _f(r.get("images_per_s")),
                          _f(r.get("util"), ".0f"), _f(r.get("peak_gb"), ".2f"), r.get("note", "")] for r in steps])
    dec = data.get("decode", {})
    if "decode" in dec:
        d, b = dec["decode"], dec.get("decode_batched", {})
        lines += ["## Decode", "", f"{d['files']} files ({d['source']}), {d['width']}x{d['height']}, "
                  f"{d['gaussians_mean']:.0f} Gaussians, {d['bytes_mean']:.0f} bytes; parse {d['parse_ms']:.2f} ms "
                  f"per file; GPU against CPU render: max |diff| {d['gpu_vs_cpu_max_abs_diff']}, "
                  f"{100 * d['gpu_vs_cpu_pixels_differing']:.3f}% of pixels differ", ""]
        lines += _table(["path", "images/s", "util %"],
                        [["gscodec.render, one file at a time, GPU", _f(d["gpu_per_file_images_per_s"]), "-"],
                         ["gscodec.render, one file at a time, CPU", _f(d["cpu_per_file_images_per_s"]), "-"],
                         [f"padded batch of {b.get('batch')}, Triton forward to uint8",
                          _f(b.get("images_per_s")), _f(b.get("util"), ".0f")]])
    clip = data.get("clip", {}).get("clip", [])
    if clip:
        lines += ["## CLIP head training steps (contrastive, random teacher weights)", ""]
        lines += _table(["head", "trunk", "batch", "Gaussians", "ms/step", "images/s", "util %", "peak GB",
                         "precision"],
                        [[r["config"], r.get("clip_model", "-"), r.get("batch", "-"), r.get("gaussians", "-"),
                          _f(r.get("ms_per_step")), _f(r.get("images_per_s")), _f(r.get("util"), ".0f"),
                          _f(r.get("peak_gb"), ".2f"), r.get("precision", r.get("note", ""))] for r in clip])
    failed = [(s["title"], s["log_tail"]) for s in sec.values() if "log_tail" in s]
    for title, tail in failed:
        lines += [f"## Log of {title}", "", "```", tail.strip(), "```", ""]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT") or "gpu-report"),
                        help="report folder (default $OUT, else gpu-report/)")
    parser.add_argument("--bundle", type=Path, default=gpu_wheels.BUNDLE, help="gpu_wheels.py's folder")
    parser.add_argument("--photos", type=Path, default=None,
                        help="photos to crop for the fitter (default BUNDLE/photos if there, else tests/data)")
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default: a new temporary one)")
    parser.add_argument("--sections", default=",".join(s.name for s in SECTIONS), help="comma-separated subset")
    parser.add_argument("--minutes", type=float, default=8.0, help="limit of the whole run")
    parser.add_argument("--dry-run", action="store_true", help="CPU, Triton interpreter, tiny sizes")
    parser.add_argument("--section", help=argparse.SUPPRESS)
    parser.add_argument("--results", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--seconds", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.section:
        return child(args)

    start = time.monotonic()
    limit = 60.0 * args.minutes
    if args.photos is None:
        bundled = args.bundle / "photos"
        args.photos = bundled if bundled.is_dir() and any(bundled.iterdir()) else ROOT / "tests" / "data"
    args.work = args.work or Path(tempfile.mkdtemp(prefix="gpu-check-"))
    args.work.mkdir(parents=True, exist_ok=True)
    args.out.mkdir(parents=True, exist_ok=True)
    log = args.out / "gpu-check.log"
    log.write_text("")
    report: dict[str, Any] = {"dry_run": args.dry_run, "install": install(args.bundle / "wheels", args.dry_run),
                              "sections": {}}
    print(f"install: {report['install']['status']}", flush=True)
    chosen = [s for s in SECTIONS if s.name in args.sections.split(",")]
    text = write_report(report, args.out, time.monotonic() - start)
    for i, section in enumerate(chosen):
        left = limit - (time.monotonic() - start) - 10.0 * (len(chosen) - i - 1)
        seconds = min(section.seconds if not args.dry_run else limit, left)
        if seconds < 10:
            record = {"status": "skipped: no time left", "seconds": 0, "data": {}}
        else:
            record = run_section(section, args, seconds, log)
        report["sections"][section.name] = {"title": section.title, **record}
        print(f"[{time.monotonic() - start:5.0f} s] {section.name}: {record['status']} ({record['seconds']} s)",
              flush=True)
        text = write_report(report, args.out, time.monotonic() - start)  # after each section: nothing is lost
    print(text)
    return 0 if all(s["status"] == "ok" for s in report["sections"].values()) else 1


def write_report(report: dict[str, Any], out: Path, seconds: float) -> str:
    """Judge the targets and write ``gpu-report.json`` and ``gpu-report.md`` to ``out``; the markdown."""
    report["seconds"] = seconds
    report["targets"] = judge(report["sections"], report["dry_run"])
    (out / "gpu-report.json").write_text(json.dumps(report, indent=1, default=_jsonable))
    text = markdown(report)
    (out / "gpu-report.md").write_text(text)
    return text


if __name__ == "__main__":
    sys.exit(main())
