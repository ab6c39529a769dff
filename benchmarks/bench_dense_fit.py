"""Issue #3: ms per fitting iteration, gscodec's fitter against a plain dense PyTorch fitter.

The dense baseline is the GaussianImage algorithm without custom kernels: the
same parametrization (means, ``(log l11, l21 / l22, log l22)``, colours), the
same initialization, loss (squared error + ``lambda_reg * |colors|``),
cosine-decayed Adam and clamps as :mod:`gscodec.fit.optimize`, but every
Gaussian is evaluated at every pixel by :mod:`gscodec.raster.reference` and
the gradients come from autograd, stepped by ``torch.optim.Adam``. Where the
dense graph would not fit in ``--dense-gb`` (768x512 with 10000 Gaussians needs
~130 GB), the step is checkpointed: a forward without a graph, then each chunk
of Gaussians is rendered again with its graph and back-propagated alone. tests/test_dense_baseline.py checks that
both compute the same loss, gradients and trajectory.

Ours is the real fitter (``fit_batch``) with events, quantization and the final
colour solve switched off, timed between its progress callbacks, so the time
per iteration includes everything the loop does (render, backward, Adam, clamps,
PSNR checks). Both start from the same photo and the same initialization.

    python benchmarks/bench_dense_fit.py --photos /work/shared/photos [--dense-steps 2] [--json out.json]
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch: numba and torch share the cores

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from gscodec.fit import FitConfig, fit  # noqa: E402
from gscodec.fit.targets import as_target, resize_center_crop  # noqa: E402
from gscodec.fit.optimize import color_l1_weight, learning_rates  # noqa: E402
from gscodec.fit.init import (  # noqa: E402
    MIN_SCALE,
    SHEAR_LIMIT,
    adaptive_init,
    chol_from_shape,
    grid_init,
    shape_from_chol,
    solve_colors,
)
from gscodec.raster.reference import rasterize_sum as dense_rasterize  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CASES = ("224x224:400", "224x224:900", "224x224:1600", "224x224:3136", "768x512:10000")
# Peak bytes the dense reference holds per (Gaussian, pixel) for forward + backward (see bench_raster.py).
_BYTES_PER_ELEMENT = 34


def timing_config(points: int, iterations: int, init: str = "adaptive") -> FitConfig:
    """A fit that is only the Adam loop at full size: all Gaussians placed at init, no spare ones, no events,
    no quantized end."""
    return FitConfig(points=points, spare=0.0, iterations=iterations, init=init, init_fraction=1.0, events=0,
                     coarse=0.0, quantization=None, final_color_iters=0, polish_iters=0, patience=1 << 30,
                     backend="cpu")


def initial_params(target: torch.Tensor, cfg: FitConfig) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(N, 2)`` means, ``(N, 3)`` chol, ``(N, 3)`` colors: the fitter's initialization of ``target`` ``(H, W, 3)``."""
    h, w, _ = target.shape
    targets = target[None]
    gens = [torch.Generator().manual_seed(cfg.seed)]
    n = int(min(cfg.points, h * w))
    if cfg.init == "grid":
        means, chol, colors = grid_init(targets, n, cfg.init_scale, gens, cfg.uniform_share, cfg.grad_blur)
    else:
        means, chol, colors = adaptive_init(targets, n, cfg.init_scale, gens, cfg.uniform_share, cfg.grad_blur,
                                            total=n)
    counts = torch.full((1,), n, dtype=torch.long)
    colors = solve_colors(means, chol, colors, targets, cfg.init_color_iters, cfg.backend, counts)
    return means[0], chol[0], colors[0]


class DenseFitter:
    """The fitter's Adam loop in plain PyTorch: dense render, autograd, ``torch.optim.Adam``.

    Args:
        target: ``(H, W, 3)`` float32 in [0, 1].
        means, chol, colors: initial ``(N, 2)``, ``(N, 3)``, ``(N, 3)`` parameters (pixels, display units).
        cfg: learning rates, betas, ``lambda_reg`` and ``iterations`` (the cosine schedule's length).
        memory_gb: above this estimated autograd footprint the render is checkpointed per chunk.
    """

    def __init__(self, target: torch.Tensor, means: torch.Tensor, chol: torch.Tensor, colors: torch.Tensor,
                 cfg: FitConfig, memory_gb: float = 4.0):
        self.target = target
        self.h, self.w = int(target.shape[0]), int(target.shape[1])
        self.cfg = cfg
        self.means = means.detach().clone().requires_grad_(True)
        self.shape = shape_from_chol(chol.detach()).requires_grad_(True)
        self.colors = colors.detach().clone().requires_grad_(True)
        n = self.means.shape[0]
        self.lr0 = dict(zip(("means", "shape", "colors"), learning_rates(cfg, n, self.w, self.h)))
        self.opt = torch.optim.Adam(
            [{"params": [self.means], "lr": self.lr0["means"]}, {"params": [self.shape], "lr": self.lr0["shape"]},
             {"params": [self.colors], "lr": self.lr0["colors"]}],
            betas=cfg.betas, eps=1e-12,
        )
        per_gaussian = _BYTES_PER_ELEMENT * self.h * self.w
        self.chunk = n if n * per_gaussian <= memory_gb * 1e9 else max(1, int(memory_gb * 1e9 // per_gaussian))
        self.t = 0

    @property
    def checkpointed(self) -> bool:
        return self.chunk < self.means.shape[0]

    def render(self) -> torch.Tensor:
        """``(H, W, 3)`` render of the current parameters, differentiable (all Gaussians in one graph)."""
        return dense_rasterize(self.means, chol_from_shape(self.shape), self.colors, self.w, self.h)

    def _reg(self) -> float:
        return color_l1_weight(self.cfg, self.w, self.h)

    def loss(self) -> torch.Tensor:
        """Sum of squared errors + ``color_l1_weight * sum |colors|`` (the fitter's loss, unnormalized)."""
        return ((self.render() - self.target) ** 2).sum() + self._reg() * self.colors.abs().sum()

    def backward(self) -> float:
        """Accumulate the loss gradient into the parameters' ``.grad``; returns the loss.

        Checkpointed: render without a graph, take the loss gradient w.r.t. the
        image, then re-render chunk by chunk with a graph and back-propagate
        that gradient through each chunk, so only one chunk's graph is alive.
        """
        if not self.checkpointed:
            loss = self.loss()
            loss.backward()
            return float(loss.detach())
        n = self.means.shape[0]
        chunks = [slice(s, s + self.chunk) for s in range(0, n, self.chunk)]
        with torch.no_grad():
            chol = chol_from_shape(self.shape)
            image = sum(dense_rasterize(self.means[sl], chol[sl], self.colors[sl], self.w, self.h) for sl in chunks)
        image.requires_grad_(True)
        loss = ((image - self.target) ** 2).sum() + self._reg() * self.colors.abs().sum()
        loss.backward()
        for sl in chunks:
            part = dense_rasterize(self.means[sl], chol_from_shape(self.shape[sl]), self.colors[sl], self.w, self.h)
            part.backward(image.grad)
        return float(loss.detach())

    def step(self) -> float:
        """One Adam step (learning rates on the fitter's cosine schedule, then its clamps); returns the loss."""
        cfg = self.cfg
        frac = min(self.t / max(cfg.iterations, 1), 1.0)
        decay = cfg.lr_final + (1 - cfg.lr_final) * 0.5 * (1 + math.cos(math.pi * frac))
        for group, key in zip(self.opt.param_groups, ("means", "shape", "colors")):
            group["lr"] = self.lr0[key] * decay
        self.opt.zero_grad(set_to_none=True)
        loss = self.backward()
        self.opt.step()
        with torch.no_grad():
            self.means[:, 0].clamp_(0, self.w)
            self.means[:, 1].clamp_(0, self.h)
            lo, hi = math.log(MIN_SCALE), math.log(2.0 * max(self.w, self.h))
            self.shape[:, 0].clamp_(lo, hi)
            self.shape[:, 2].clamp_(lo, hi)
            self.shape[:, 1].clamp_(-SHEAR_LIMIT, SHEAR_LIMIT)
        self.t += 1
        return loss


def time_ours(image: np.ndarray, cfg: FitConfig, skip: int) -> float:
    """ms per iteration of ``fit`` with ``cfg``, between its progress callbacks after the first ``skip`` iterations."""
    marks: dict[int, float] = {}
    fit(image, replace(cfg, check_every=skip), progress=lambda info: marks.setdefault(info["iteration"],
                                                                                    time.perf_counter()))
    first, last = skip, max(marks)
    if last <= first:
        raise ValueError(f"need iterations > {skip} to time the fitter, got {cfg.iterations}")
    return 1e3 * (marks[last] - marks[first]) / (last - first)


def time_dense(image: np.ndarray, cfg: FitConfig, steps: int, memory_gb: float,
               warmup: int = 1) -> tuple[float, bool]:
    """ms per iteration of :class:`DenseFitter` over ``steps`` steps after ``warmup`` untimed ones; if checkpointed."""
    target = as_target(image)
    fitter = DenseFitter(target, *initial_params(target, cfg), cfg, memory_gb)
    for _ in range(warmup):
        fitter.step()
    start = time.perf_counter()
    for _ in range(steps):
        fitter.step()
    return 1e3 * (time.perf_counter() - start) / steps, fitter.checkpointed


def load_image(path: Path, width: int, height: int) -> np.ndarray:
    """``(H, W, 3)`` uint8: centre crop for square sizes (as the fit benchmark), Lanczos resize otherwise."""
    with Image.open(path) as im:
        rgb = np.asarray(im.convert("RGB"))
    if width == height:
        return resize_center_crop(rgb, width)
    return np.asarray(Image.fromarray(rgb).resize((width, height), Image.LANCZOS))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--photos", type=Path, default=ROOT / "tests" / "data", help="folder of photos")
    ap.add_argument("--images", type=int, default=1, help="photos per case (first N by name)")
    ap.add_argument("--cases", nargs="+", default=list(DEFAULT_CASES), metavar="WxH:N")
    ap.add_argument("--iterations", type=int, default=100, help="fitter iterations (the first --skip are untimed)")
    ap.add_argument("--skip", type=int, default=20)
    ap.add_argument("--dense-steps", type=int, default=2, help="timed dense steps")
    ap.add_argument("--dense-warmup", type=int, default=1, help="untimed dense steps before them")
    ap.add_argument("--dense-gb", type=float, default=3.0, help="checkpoint the dense render above this estimate")
    ap.add_argument("--init", default="adaptive", choices=["adaptive", "grid"])
    ap.add_argument("--json", type=Path, help="also write CompressAI-style results here")
    args = ap.parse_args(argv)

    from common import list_photos, write_results

    paths = list_photos(args.photos, args.images)
    torch.set_num_threads(2)
    print(f"photos {[p.name for p in paths]} from {args.photos}; load average {os.getloadavg()[0]:.1f}; "
          f"ours: fit, {args.iterations} iterations, timed after {args.skip}; dense: {args.dense_steps} steps "
          f"after {args.dense_warmup} untimed, torch threads {torch.get_num_threads()}", flush=True)
    fit(load_image(paths[0], 64, 64), timing_config(16, 2))  # numba compilation or cache load
    rows = []
    for case in args.cases:
        size, n = case.split(":")
        w, h = (int(v) for v in size.lower().split("x"))
        cfg = timing_config(int(n), args.iterations, args.init)
        ours, dense, ckpt = [], [], False
        for p in paths:
            image = load_image(p, w, h)
            ours.append(time_ours(image, cfg, args.skip))
            d, ckpt = time_dense(image, cfg, args.dense_steps, args.dense_gb, args.dense_warmup)
            dense.append(d)
            print(f"  {case} {p.name}: ours {ours[-1]:.1f} ms/iter, dense {dense[-1]:.0f} ms/iter", flush=True)
        row = {"case": case, "ours_ms": float(np.mean(ours)), "dense_ms": float(np.mean(dense)), "checkpointed": ckpt}
        row["ratio"] = row["dense_ms"] / row["ours_ms"]
        rows.append(row)
    print()
    print("| size | Gaussians | ours ms/iter | dense ms/iter | dense / ours |")
    print("| --- | --- | --- | --- | --- |")
    for r in rows:
        size, n = r["case"].split(":")
        note = " (checkpointed)" if r["checkpointed"] else ""
        print(f"| {size} | {n} | {r['ours_ms']:.1f} | {r['dense_ms']:.0f}{note} | {r['ratio']:.0f}x |")
    print(f"load average at the end {os.getloadavg()[0]:.1f}")
    if args.json:
        write_results(args.json, "gscodec fitter vs dense PyTorch fitter", __doc__.split("\n\n")[0],
                      {k: [r[k] for r in rows] for k in ("case", "ours_ms", "dense_ms", "ratio")})


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    main()
