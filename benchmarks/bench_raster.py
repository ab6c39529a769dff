"""Benchmark the plain-sum rasterizer: numba CPU backend vs the dense torch reference.

Times one forward plus one backward (gradients for means, chol and colors from a
random upstream gradient) and prints a table in ms. Gaussians roughly tile the
image: sigma ~ 0.5 * sqrt(H * W / N) pixels.

    python benchmarks/bench_raster.py [--iters 30] [--ref-iters 1] [--ref-max-gb 4] [--threads 2]

The numba kernels synchronise their threads twice per forward+backward; on a
loaded machine libgomp's default spin-waiting makes that slow, so compare runs
on an idle machine (or with OMP_WAIT_POLICY=PASSIVE set before Python starts).
"""

from __future__ import annotations

import argparse
import math
import os
import time
from collections.abc import Callable

import numba
import torch

from gscodec.raster.cpu import rasterize_sum as cpu_rasterize
from gscodec.raster.reference import rasterize_sum as ref_rasterize

Raster = Callable[..., torch.Tensor]

# Peak bytes the dense reference needs per (image, Gaussian, pixel) for forward +
# backward (measured: ~33; the float32 maps autograd saves plus transients).
_REF_BYTES_PER_ELEMENT = 34


def make_gaussians(
    batch: int, n: int, width: int, height: int, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random ``(B, N, 2)`` means, ``(B, N, 3)`` chol and colors that roughly tile a ``width`` x ``height`` image."""
    g = torch.Generator().manual_seed(seed)
    sigma = 0.5 * math.sqrt(width * height / n)
    means = torch.rand(batch, n, 2, generator=g) * torch.tensor([width, height], dtype=torch.float32)
    l11 = sigma * torch.exp(0.3 * torch.randn(batch, n, generator=g))
    l22 = sigma * torch.exp(0.3 * torch.randn(batch, n, generator=g))
    l21 = 0.4 * sigma * torch.randn(batch, n, generator=g)
    chol = torch.stack([l11, l21, l22], -1)
    colors = 0.3 * torch.randn(batch, n, 3, generator=g)
    return means, chol, colors


def time_fwd_bwd(
    raster: Raster, params: tuple[torch.Tensor, ...], width: int, height: int, iters: int, warmup: int = 1
) -> tuple[float, float]:
    """``(median, min)`` ms of one forward + backward over ``iters`` runs (after ``warmup`` untimed runs)."""
    leaves = [p.clone().requires_grad_(True) for p in params]
    shape = (*params[0].shape[:-2], height, width, 3)
    grad_out = torch.randn(shape, generator=torch.Generator().manual_seed(1))
    times = []
    for it in range(warmup + iters):
        t0 = time.perf_counter()
        out = raster(*leaves, width, height)
        torch.autograd.grad(out, leaves, grad_out)
        if it >= warmup:
            times.append(time.perf_counter() - t0)
        del out
    times.sort()
    return 1e3 * times[len(times) // 2], 1e3 * times[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iters", type=int, default=30, help="timed runs of the numba backend")
    parser.add_argument("--ref-iters", type=int, default=1, help="timed runs of the dense reference")
    parser.add_argument("--ref-max-gb", type=float, default=4.0, help="skip the reference above this estimated peak")
    parser.add_argument("--batch", type=int, default=64, help="images in the batched case")
    parser.add_argument("--threads", type=int, default=0, help="numba threads (0: numba's default)")
    parser.add_argument("--no-ref", action="store_true", help="skip the dense reference entirely")
    args = parser.parse_args()
    if args.threads:
        numba.set_num_threads(args.threads)

    cases = [(224, 224, n, 1) for n in (400, 900, 1600, 3136)]
    cases += [(768, 512, 10000, 1), (224, 224, 900, args.batch)]
    omp = {k: os.environ[k] for k in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT") if k in os.environ}
    print(
        f"numba {numba.__version__} ({numba.get_num_threads()} threads), torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), load average {os.getloadavg()[0]:.1f}, {omp or 'default OpenMP waits'}"
    )
    print("numba: median (min) ms per forward+backward; dense: torch reference, same work, --ref-iters runs")
    header = f"{'case':<22}{'numba ms':>16}{'ms/img':>9}{'dense ms':>13}{'dense/numba':>18}"
    print(header)
    print("-" * len(header))
    for width, height, n, batch in cases:
        params = make_gaussians(batch, n, width, height)
        if batch == 1:
            params = tuple(p[0] for p in params)
        med, best = time_fwd_bwd(cpu_rasterize, params, width, height, args.iters, warmup=2)
        gb = _REF_BYTES_PER_ELEMENT * batch * n * width * height / 1e9
        if args.no_ref:
            ref_text, ratio_text = "not run", "-"
        elif gb > args.ref_max_gb:
            ref_text, ratio_text = f"skip >{args.ref_max_gb:g} GB", f"(needs ~{gb:.0f} GB)"
        else:
            ref_ms, _ = time_fwd_bwd(ref_rasterize, params, width, height, args.ref_iters, warmup=0)
            ref_text, ratio_text = f"{ref_ms:.0f}", f"{ref_ms / med:.0f}x"
        name = f"{width}x{height} N={n}" + (f" B={batch}" if batch > 1 else "")
        numba_text = f"{med:.2f} ({best:.2f})"
        print(f"{name:<22}{numba_text:>16}{med / batch:>9.2f}{ref_text:>13}{ratio_text:>18}")


if __name__ == "__main__":
    main()
