"""Benchmark the Triton GPU rasterizer in a batched fitting step against the dense PyTorch reference.

One iteration = forward + MSE against a target batch + backward + Adam step on
``(B, N, 2|3|3)`` parameters, at 224x224 by default. For every Gaussian count and
batch size it prints ms per iteration, images per second, peak memory and the
mean GPU utilization (NVML via ``torch.cuda.utilization``, sampled during the
timed iterations; "n/a" without pynvml), for the Triton kernels and for the
dense reference on the same GPU. Configurations whose rough memory estimate
exceeds the free GPU memory are skipped ("skip"); an actual out-of-memory
shows as "OOM". The first Triton call compiles the kernels, and gsplat may
build its CUDA extension for the tile binning (minutes, once).

    python benchmarks/bench_gpu.py [--batches 1,4,...,4096] [--gaussians 400,900,1600,3136]
                                   [--size 224] [--iters 10] [--min-seconds 1] [--no-ref]
    python benchmarks/bench_gpu.py --interpret    # tiny CPU smoke run in the Triton interpreter
    python benchmarks/bench_gpu.py --fit [--photos DIR] [--fit-images 256] [--gaussians 900] [--size 224]

``--fit`` times the whole batched fitter instead (``fit_batch`` with the
``cuda`` backend, batch size from free GPU memory via
``gscodec.fit.placement.choose_batch_size``) on copies of the photos in DIR, and the
CPU fitter on a few of them in the same run: images per second of each, their
ratio, and the mean PSNR of both on the images both fitted.

Without CUDA (and without ``--interpret``) it says so and exits 0.
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from gscodec.fit import FitConfig

Raster = Callable[..., torch.Tensor]

# Rough peak bytes, used only to skip configurations that cannot fit.
_REF_BYTES_PER_ELEMENT = 20  # dense reference: per (image, Gaussian, pixel) under autograd
_IMAGE_COPIES = 6  # output, target, loss temporaries, upstream gradient
_PARAM_COPIES = 6  # parameters, gradients, two Adam moments, float32 copies, backward sums
_BYTES_PER_INTERSECTION = 80  # PyTorch tile binning temporaries (int64 keys, sort, ids)


@dataclass
class Result:
    ms: float | None = None
    images_per_s: float | None = None
    util: float | None = None
    peak_gb: float | None = None
    note: str = ""


def make_problem(
    batch: int, n: int, size: int, device: torch.device, seed: int = 0
) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Leaf parameters ``(B, N, 2|3|3)`` roughly tiling a ``size`` x ``size`` image, and a ``(B, H, W, 3)`` target."""
    g = torch.Generator(device=device).manual_seed(seed)
    sigma = 0.5 * math.sqrt(size * size / n)
    means = torch.rand(batch, n, 2, generator=g, device=device) * size
    l11 = sigma * torch.exp(0.3 * torch.randn(batch, n, generator=g, device=device))
    l22 = sigma * torch.exp(0.3 * torch.randn(batch, n, generator=g, device=device))
    l21 = 0.3 * sigma * torch.randn(batch, n, generator=g, device=device)
    chol = torch.stack([l11, l21, l22], -1)
    colors = 0.3 * torch.randn(batch, n, 3, generator=g, device=device)
    target = torch.rand(batch, size, size, 3, generator=g, device=device)
    return [t.requires_grad_(True) for t in (means, chol, colors)], target


def estimate_bytes(kind: str, batch: int, n: int, size: int) -> float:
    """Rough peak memory of one fitting iteration."""
    images = _IMAGE_COPIES * batch * size * size * 3 * 4
    params = _PARAM_COPIES * batch * n * 8 * 4
    if kind == "ref":
        return images + params + _REF_BYTES_PER_ELEMENT * batch * n * size * size
    sigma = 0.5 * math.sqrt(size * size / n)
    tiles_per_gaussian = (1.0 + (6.0 * sigma + 2.0) / 16.0) ** 2
    return images + params + _BYTES_PER_INTERSECTION * batch * n * tiles_per_gaussian


def _nvml_utilization(device: torch.device) -> float | None:
    try:
        return float(torch.cuda.utilization(device))
    except Exception:  # noqa: BLE001 - pynvml/amdsmi missing or NVML errors
        return None


def _smi_utilization(device: torch.device) -> float | None:
    index = device.index if device.index is not None else torch.cuda.current_device()
    cmd = ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits", "-i", str(index)]
    try:
        return float(subprocess.run(cmd, capture_output=True, text=True, timeout=5, check=True).stdout.strip())
    except (OSError, ValueError, subprocess.SubprocessError):
        return None


class UtilSampler:
    """Mean GPU utilization (%) over a block, sampled in a thread from NVML (``torch.cuda.utilization``)
    or else ``nvidia-smi``; ``None`` if neither answers. ``source`` names the one used."""

    def __init__(self, device: torch.device, period: float = 0.02) -> None:
        self.device = device
        self.samples: list[float] = []
        self.source: str | None = None
        self._reader: Callable[[torch.device], float | None] | None = None
        if device.type == "cuda":
            for name, reader, every in (("nvml", _nvml_utilization, period), ("nvidia-smi", _smi_utilization, 0.1)):
                if reader(device) is not None:
                    self.source, self._reader, self.period = name, reader, max(period, every)
                    break
        self.available = self._reader is not None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _read(self) -> float | None:
        return None if self._reader is None else self._reader(self.device)

    def _run(self) -> None:
        while not self._stop.is_set():
            value = self._read()
            if value is not None:
                self.samples.append(value)
            self._stop.wait(self.period)

    def __enter__(self) -> UtilSampler:
        if self.available:
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    @property
    def mean(self) -> float | None:
        return sum(self.samples) / len(self.samples) if self.samples else None


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_config(
    raster: Raster, batch: int, n: int, size: int, device: torch.device, iters: int, warmup: int, min_seconds: float
) -> Result:
    """Time ``iters`` (at least ``min_seconds`` worth) fitting iterations after ``warmup`` untimed ones."""
    params, target = make_problem(batch, n, size, device)
    means, chol, colors = params
    opt = torch.optim.Adam(
        [{"params": [means], "lr": 0.05}, {"params": [chol], "lr": 0.01}, {"params": [colors], "lr": 0.01}]
    )

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.mse_loss(raster(means, chol, colors, size, size), target)
        loss.backward()
        opt.step()

    for _ in range(warmup):
        step()
    sync(device)
    t0 = time.perf_counter()
    step()
    sync(device)
    one = time.perf_counter() - t0
    iters = max(iters, math.ceil(min_seconds / max(one, 1e-6)))
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    with UtilSampler(device) as util:
        t0 = time.perf_counter()
        for _ in range(iters):
            step()
        sync(device)
        elapsed = time.perf_counter() - t0
    peak = torch.cuda.max_memory_allocated(device) / 1e9 if device.type == "cuda" else None
    return Result(1e3 * elapsed / iters, batch * iters / elapsed, util.mean, peak)


def measure(
    kind: str, raster: Raster, batch: int, n: int, size: int, device: torch.device, args: argparse.Namespace
) -> Result:
    """One configuration, skipped when its estimate exceeds the free memory and reported as OOM if it fails."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        need = estimate_bytes(kind, batch, n, size)
        if need > 0.9 * free:
            return Result(note=f"skip ~{need / 1e9:.0f}GB")
    try:
        return run_config(raster, batch, n, size, device, args.iters, args.warmup, args.min_seconds)
    except torch.cuda.OutOfMemoryError:
        return Result(note="OOM")
    finally:
        if device.type == "cuda":
            torch.cuda.empty_cache()


def fmt(value: float | None, spec: str, missing: str = "n/a") -> str:
    return missing if value is None else format(value, spec)


def print_table(rows: list[tuple[int, int, Result, Result | None]], header_only: bool = False) -> None:
    """Print the header (``header_only``) or the last row."""
    cols = ("N", "batch", "triton ms/it", "img/s", "util%", "peak GB", "ref ms/it", "img/s", "util%", "speedup")
    widths = (6, 7, 13, 11, 7, 9, 13, 11, 7, 9)
    if header_only:
        print("".join(f"{c:>{w}}" for c, w in zip(cols, widths)))
        print("-" * sum(widths))
        return
    n, batch, tri, ref = rows[-1]

    def cells(r: Result | None) -> list[str]:
        if r is None:
            return ["-", "-", "-"]
        if r.ms is None:
            return [r.note, "-", "-"]
        return [f"{r.ms:.2f}", f"{r.images_per_s:.1f}", fmt(r.util, ".0f")]

    t = cells(tri)
    speed = "-" if tri.ms is None or ref is None or ref.ms is None else f"{ref.ms / tri.ms:.1f}x"
    values = [str(n), str(batch), *t, fmt(tri.peak_gb, ".2f", "-"), *cells(ref), speed]
    print("".join(f"{v:>{w}}" for v, w in zip(values, widths)), flush=True)


def parse_ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=parse_ints, default=[1, 4, 16, 64, 256, 1024, 4096])
    parser.add_argument("--gaussians", type=parse_ints, default=[400, 900, 1600, 3136])
    parser.add_argument("--size", type=int, default=224, help="image side in pixels")
    parser.add_argument("--iters", type=int, default=10, help="minimum timed iterations per configuration")
    parser.add_argument("--min-seconds", type=float, default=1.0, help="minimum timed seconds (for utilization)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--no-ref", action="store_true", help="skip the dense reference")
    parser.add_argument(
        "--interpret", action="store_true", help="tiny CPU smoke run of the Triton kernels in the interpreter"
    )
    parser.add_argument("--fit", action="store_true", help="time the batched fitter (GPU against the CPU fitter)")
    parser.add_argument("--photos", default="/work/shared/photos", help="--fit: folder of photos")
    parser.add_argument("--fit-images", type=int, default=256, help="--fit: images fitted on the GPU")
    parser.add_argument("--cpu-images", type=int, default=4, help="--fit: of those, images fitted on the CPU")
    args = parser.parse_args()
    if args.fit:
        return fit_benchmark(args)

    if args.interpret:
        if "triton" in sys.modules:
            raise SystemExit("--interpret must be chosen before triton is imported")
        os.environ["TRITON_INTERPRET"] = "1"
        args.batches, args.gaussians, args.size = [1, 2], [16, 40], 24
        args.iters, args.warmup, args.min_seconds = 2, 1, 0.0

    from gscodec.raster.triton import binning, rasterize_sum
    from gscodec.raster.triton.availability import cuda_problem
    from gscodec.raster.reference import rasterize_sum as reference

    if args.interpret:
        device = torch.device("cpu")
        print(f"Triton interpreter smoke run on the CPU (not a performance figure), torch {torch.__version__}")
    else:
        problem = cuda_problem()
        if problem is not None:
            print(f"bench_gpu: nothing to measure: {problem}. Run on a machine with a CUDA GPU, "
                  "or pass --interpret for a CPU smoke run of the kernels.")
            return 0
        import triton

        device = torch.device("cuda")
        props = torch.cuda.get_device_properties(device)
        versions = f"torch {torch.__version__}, triton {triton.__version__}"
        print(f"{props.name} ({props.total_memory / 2**30:.0f} GiB), {versions}")
        print(f"{args.size}x{args.size}; iteration = forward + MSE + backward + Adam step")

    print_table([], header_only=True)
    rows: list[tuple[int, int, Result, Result | None]] = []
    for n in args.gaussians:
        for batch in args.batches:
            tri = measure("triton", rasterize_sum, batch, n, args.size, device, args)
            ref = None if args.no_ref else measure("ref", reference, batch, n, args.size, device, args)
            rows.append((n, batch, tri, ref))
            print_table(rows)
    if device.type == "cuda":
        print("tile binning: " + ("PyTorch (gsplat unavailable)" if binning._gsplat_failed else "gsplat isect_tiles"))
    return 0


def time_fit(images: list, config: FitConfig, batch: int, progress: Callable | None = None) -> tuple[list, float]:
    """``fit_batch`` over ``images`` in batches of ``batch``: the results and the wall seconds (device synced)."""
    from gscodec.fit import fit_batch
    from gscodec.fit.placement import fit_device

    t0 = time.perf_counter()
    results = []
    for k in range(0, len(images), batch):
        results += fit_batch(images[k:k + batch], config, progress)
    sync(fit_device(config.backend))
    return results, time.perf_counter() - t0


def fit_benchmark(args: argparse.Namespace) -> int:
    """``--fit``: images per second of ``fit_batch`` on the GPU and on the CPU, side by side, and their PSNRs."""
    from pathlib import Path

    import numpy as np

    if args.interpret:
        if "triton" in sys.modules:
            raise SystemExit("--interpret must be chosen before triton is imported")
        os.environ["TRITON_INTERPRET"] = "1"
    from gscodec.raster.triton.availability import cuda_problem
    from gscodec.fit import FitConfig
    from gscodec.fit.placement import choose_batch_size, fit_device
    from gscodec.imageio import load_image, resize_for_clip

    size, n = (24, 30) if args.interpret else (args.size, args.gaussians[0])
    if not args.interpret and cuda_problem() is not None:
        print(f"bench_gpu --fit: nothing to measure: {cuda_problem()}; pass --interpret for a CPU smoke run.")
        return 0
    paths = sorted(p for p in Path(args.photos).iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    if not paths:
        raise SystemExit(f"no photos in {args.photos}")
    photos = [resize_for_clip(load_image(p), size) for p in paths]
    total = 2 if args.interpret else args.fit_images
    images = [photos[i % len(photos)] for i in range(total)]
    device = fit_device("cuda")
    batch = 2 if args.interpret else choose_batch_size(size, size, n, device=device)
    kwargs = dict(points=n, iterations=10) if args.interpret else dict(points=n)
    note = " (Triton interpreter: not a performance figure)" if args.interpret else " (from free memory)"
    print(f"{size}x{size}, {n} Gaussians, {total} images, device {device}, GPU batch {batch}{note}")
    gpu, gpu_s = time_fit(images, FitConfig(backend="cuda", **kwargs), batch)
    cpu_n = min(args.cpu_images, total)
    cpu, cpu_s = time_fit(images[:cpu_n], FitConfig(backend="cpu", **kwargs), cpu_n)
    gpu_rate, cpu_rate = total / gpu_s, cpu_n / cpu_s
    print(f"GPU fitter: {gpu_rate:.2f} img/s; CPU fitter: {cpu_rate:.2f} img/s; ratio {gpu_rate / cpu_rate:.1f}x")
    dp = [g.psnr - c.psnr for g, c in zip(gpu[:cpu_n], cpu)]
    print(f"PSNR on the {cpu_n} images both fitted: GPU {np.mean([g.psnr for g in gpu[:cpu_n]]):.2f} dB, "
          f"CPU {np.mean([c.psnr for c in cpu]):.2f} dB, max |diff| {max(map(abs, dp)):.3f} dB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
