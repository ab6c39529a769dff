"""Benchmark the plain-sum rasterizer: numba CPU backend vs the dense torch reference.

Times one forward plus one backward (gradients for means, chol and colors from a
random upstream gradient) and prints a table in ms. Gaussians roughly tile the
image: sigma ~ 0.5 * sqrt(H * W / N) pixels.

    python benchmarks/bench_raster.py [--iters 20] [--ref-iters 1] [--ref-max-gb 4]
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable

import numba
import torch

from gscodec.raster.cpu import rasterize_sum as cpu_rasterize
from gscodec.raster.reference import rasterize_sum as ref_rasterize

Raster = Callable[..., torch.Tensor]

# Peak bytes the dense reference keeps alive per (image, Gaussian, pixel) under
# autograd (four saved float32 maps plus a bool mask, plus transients).
_REF_BYTES_PER_ELEMENT = 20


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
) -> float:
    """Median ms of one forward + backward over ``iters`` runs (after ``warmup`` untimed runs)."""
    leaves = [p.clone().requires_grad_(True) for p in params]
    batch = params[0].shape[0] if params[0].ndim == 3 else 1
    grad_out = torch.randn(batch, height, width, 3, generator=torch.Generator().manual_seed(1))
    times = []
    for it in range(warmup + iters):
        t0 = time.perf_counter()
        out = raster(*leaves, width, height)
        torch.autograd.grad(out, leaves, grad_out)
        if it >= warmup:
            times.append(time.perf_counter() - t0)
        del out
    times.sort()
    return 1e3 * times[len(times) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iters", type=int, default=20, help="timed runs of the numba backend")
    parser.add_argument("--ref-iters", type=int, default=1, help="timed runs of the dense reference")
    parser.add_argument("--ref-max-gb", type=float, default=4.0, help="skip the reference above this estimated peak")
    parser.add_argument("--batch", type=int, default=64, help="images in the batched case")
    parser.add_argument("--no-ref", action="store_true", help="skip the dense reference entirely")
    args = parser.parse_args()

    cases = [(224, 224, n, 1) for n in (400, 900, 1600, 3136)]
    cases += [(768, 512, 10000, 1), (224, 224, 900, args.batch)]
    print(f"numba {numba.__version__} ({numba.get_num_threads()} threads), torch {torch.__version__}")
    header = f"{'case':<24}{'numba ms':>10}{'ms/img':>9}{'dense ms':>12}{'dense/numba':>13}"
    print(header)
    print("-" * len(header))
    for width, height, n, batch in cases:
        params = make_gaussians(batch, n, width, height)
        if batch == 1:
            params = tuple(p[0] for p in params)

            def raster(m: torch.Tensor, l: torch.Tensor, c: torch.Tensor, w: int, h: int, f: Raster) -> torch.Tensor:
                return f(m, l, c, w, h)[None]

        else:

            def raster(m: torch.Tensor, l: torch.Tensor, c: torch.Tensor, w: int, h: int, f: Raster) -> torch.Tensor:
                return f(m, l, c, w, h)

        ms = time_fwd_bwd(lambda *a: raster(*a, cpu_rasterize), params, width, height, args.iters, warmup=2)
        gb = _REF_BYTES_PER_ELEMENT * batch * n * width * height / 1e9
        if args.no_ref:
            ref_text, ratio_text = "skipped", "-"
        elif gb > args.ref_max_gb:
            ref_text, ratio_text = f"skip>{args.ref_max_gb:g}GB", f"(~{gb:.0f} GB)"
        else:
            ref_ms = time_fwd_bwd(
                lambda *a: raster(*a, ref_rasterize), params, width, height, args.ref_iters, warmup=0
            )
            ref_text, ratio_text = f"{ref_ms:.0f}", f"{ref_ms / ms:.0f}x"
        name = f"{width}x{height} N={n}" + (f" B={batch}" if batch > 1 else "")
        print(f"{name:<24}{ms:>10.2f}{ms / batch:>9.2f}{ref_text:>12}{ratio_text:>13}")


if __name__ == "__main__":
    main()
