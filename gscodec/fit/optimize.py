"""The optimization loop: Adam over positions, log-shapes and colours, batched over images.

Parametrization per Gaussian: ``means`` (px, clamped into the image after
every step), ``shape = (log l11, shear = l21 / l22, log l22)`` and free
``colors``. Loss per image: ``MSE + lambda_reg * sum |colors|``, the L1
weight scaled down for large budgets (:func:`color_l1_weight`).

Schedule (fractions refer to ``FitConfig.iterations``; the effort level,
:mod:`gscodec.fit.effort`, sets the step counts):

* start with ``init_fraction`` of the budget (grid or content-adaptive, colours
  solved by least squares for the initial geometry);
* the first ``coarse`` share of the steps renders at half size against the
  area-downsampled target (a step there costs about a third of a full one;
  parameters stay in full-size pixels), unless the Gaussians would be too
  dense for it (:data:`COARSE_MAX_DENSITY`);
* ``events`` evenly spaced events up to ``events_until``: the first
  ``densify_events`` add the rest of the budget in equal batches at pixels
  sampled by the blurred squared error (new Gaussians take the residual
  colour); every event from ``prune_from`` on prunes Gaussians whose
  ``0.2126|R| + 0.7152|G| + 0.0722|B|`` is below ``tau_th`` and re-spends the
  freed slots the same way; after an event a few conjugate-gradient steps
  re-solve all colours;
* cosine-decayed learning rates (:func:`learning_rates`); PSNR is computed every
  ``check_every`` steps (never a sync per step) for ``target_psnr`` (stop at
  once) and for plateaus after the last event (the image then runs the rest of
  its decay within ``anneal`` of the iterations and stops);
* the ``points`` Gaussians of most energy are kept (the fit runs ``spare``
  more), a least-squares colour solve (``final_color_iters``), a polish of
  ``polish_iters`` Adam steps on all parameters from fresh moments and another
  colour solve, then the quantization-aware end of :mod:`gscodec.fit.refit` when ``quantization`` is
  set.

What the fitter's speed came from (768x480 textured photo at 0.008
Gaussians/px, 2949 Gaussians, against the former 600-step default: 11.9 s,
27.57 dB): the decoder's strip renderer for the forward pass (4.4 to 1.7 ms
per step), learning rates 1.5-3x higher (+0.25 dB at 300 steps), 420 steps
with the first 35% at half size and a 70-step shape fine-tune instead of 150:
5.4 s, 27.46 dB. ``benchmarks/bench_effort.py`` measures every level.

On the CPU every step (and every colour solve and shape fine-tune step) is
:func:`gscodec.raster.cpu.squared_error_grad`: the render minus the target
straight in the backward pass's block layout, with no image-sized render,
rearrangement or autograd in between (the same values bit for bit).

Many same-size images are fitted together (``fit_batch``): every tensor is
``(B, N, .)`` and one rasterizer call renders the whole batch, so both cores
stay busy; an image that stops early leaves the batch.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from ..gaussians import GaussianImage
from ..metrics import psnr, psnr_batch
from ..presets import preset_for_density
from ..quantize import Quantization
from ..raster import rasterize_sum
from ..raster.cpu import squared_error_grad, target_blocks
from .adam import adam_step, fused_adam
from .placement import fit_device, on_device
from .effort import DEFAULT_EFFORT, effort_row
from .targets import as_target
from .init import (
    MIN_SCALE,
    SHEAR_LIMIT,
    adaptive_init,
    chol_from_shape,
    density_scale,
    grid_init,
    local_density,
    luminance_abs,
    mean_spacing,
    sample_by_error,
    shape_from_chol,
    shape_grad,
    solve_colors,
)


@dataclass(frozen=True)
class FitConfig:
    """Everything that steers a fit. The defaults are tuned on the CPU, at 224x224 and at native size.

    Attributes:
        points: Gaussian budget per image; the result has exactly this many
            (fewer only if the image has fewer pixels than Gaussians asked for).
        effort: 1 (fastest) to 9 (slowest); every field of
            :data:`gscodec.fit.effort.EFFORT_FIELDS` left ``None`` is taken from
            this level's row of :data:`gscodec.fit.effort.EFFORTS` (so an explicit
            value overrides the level). ``dataclasses.replace`` keeps the resolved
            values: make a new config to change the level.
        spare: extra Gaussians fitted, as a share of ``points``: the fit runs with
            ``points * (1 + spare)`` and keeps the ``points`` of most energy
            (``|color|^2 l11 l22``), their colours re-solved, so the result has
            ``points`` Gaussians (fewer only for an image of fewer pixels).
            Fitting more and dropping the faintest beats fitting ``points``:
            on four 384x240 crops at effort 3, 0.008 Gaussians/px, 25% spare
            gave 31.77 dB at 0.258 bpp where a plain fit of as many Gaussians
            gave 31.25 dB at 0.282 bpp. It costs fit time: the steps draw more
            Gaussians.
        iterations: maximum Adam steps.
        coarse: share of ``iterations`` (the first ones) run at ``1 / coarse_factor``
            of the size, against the area-downsampled target; skipped where that
            size would hold more than :data:`COARSE_MAX_DENSITY` Gaussians per pixel.
        init: ``"adaptive"`` (content-adaptive, Image-GS) or ``"grid"`` (the
            paper's structured grid).
        init_fraction: share of the budget placed at initialization; the rest
            is added by error-guided densification.
        init_scale: isotropic sigma of new Gaussians relative to the local spacing.
        uniform_share: uniform share of the adaptive sampling density.
        grad_blur: blur (px) of the gradient-magnitude map of the adaptive init.
        init_color_iters: conjugate-gradient steps solving the initial colours.
        lr_means: Adam learning rate of the positions, in units of the mean
            spacing ``sqrt(H * W / points)`` (0.2 is 1.5 px at 224x224 with 900
            Gaussians), so it carries over across budgets and image sizes.
        lr_shape, lr_colors: Adam learning rates of the log-scales and shear,
            and of the colours.
        lr_shape_density: Gaussians per pixel up to which ``lr_shape`` applies as
            given; denser fits scale it by ``sqrt(lr_shape_density / density)``
            (at 768x480, 300 steps: 0.3 beat 0.15 by 0.06 dB at 0.008 Gaussians/px,
            0.15 beat 0.3 by 0.11 dB at 0.03).
        lr_final: learning rate at the end of the cosine decay, relative (0.3 beat 0.1 by
            0.07-0.15 dB at 224x224 and at native resolution, issue #6).
        betas: Adam betas.
        lambda_reg: weight of ``sum |colors|`` next to the per-pixel MSE
            (the paper's 1e-6), for fits of up to ``reg_points`` Gaussians.
        reg_points: budgets above it scale ``lambda_reg`` by ``reg_points / points``
            (:func:`color_l1_weight`).
        tau_th: luminance-aware pruning threshold on ``|colors|``.
        events: number of densify/prune events; ``events_until``: fraction of
            ``iterations`` by which they are done.
        densify_events: the first this many events add Gaussians.
        prune_from: first event (1-based) that prunes.
        error_blur: blur (px) of the squared-error map that new centres are sampled from.
        event_color_iters: conjugate-gradient colour steps after every event.
        final_color_iters: conjugate-gradient colour steps after the last Adam step.
        polish_iters: Adam steps on all parameters once the spare Gaussians are
            dropped, from fresh moments at small constant rates and without the
            L1 term (:func:`polish`), then ``final_color_iters`` colour steps again.
        color_solve_every, color_solve_iters: every this many steps (0: never)
            re-solve all colours by this many conjugate-gradient steps.
        check_every: steps between PSNR checks (early stop, target, progress).
        patience, min_delta: a plateau is ``patience`` consecutive checks after
            the last event without a gain of ``min_delta`` dB over the best so far;
            the image then finishes its learning-rate decay within ``anneal``
            (fraction of ``iterations``) steps and stops.
        quantization: the file's quantizer; when set the result is snapped to
            its grid (with the colour refit of :mod:`gscodec.fit.refit`).
            ``"auto"`` chooses it per image once the float fit is done:
            :func:`gscodec.presets.preset_for_density` of the image's density
            and of the float fit's PSNR (:attr:`FitResult.quantization` says
            which it took).
        refit_iters: conjugate-gradient steps of the quantization-aware colour
            refit (0 disables it).
        refit_shape_iters: Adam steps on shapes and colours after the positions
            are snapped, before the shapes are (0 disables it).
        code_sweeps: sweeps of the colour-code refinement (:mod:`gscodec.fit.codes`).
        grid_sweeps: sweeps of the position and of the shape-code refinement on the
            file's grid (:func:`gscodec.fit.codes.refine_position_codes`,
            :func:`gscodec.fit.codes.refine_shape_codes`).
        seed: random seed (sampling of centres).
        target_psnr: stop as soon as the (unquantized) PSNR reaches this many dB.
        backend: rasterizer backend (see :mod:`gscodec.raster`); ``"cuda"`` also
            keeps the fit's tensors on the GPU (:mod:`gscodec.fit.placement`).
    """

    points: int = 900
    spare: float = 0.25
    iterations: int | None = None
    init: str = "adaptive"
    init_fraction: float = 0.7
    init_scale: float = 0.6
    uniform_share: float = 0.3
    grad_blur: float = 2.0
    init_color_iters: int = 5
    lr_means: float = 0.2
    lr_shape: float = 0.3
    lr_colors: float = 0.06
    lr_final: float = 0.3
    lr_shape_density: float = 0.008
    betas: tuple[float, float] = (0.9, 0.999)
    lambda_reg: float = 1e-6
    reg_points: int = 720
    tau_th: float = 0.05
    events: int | None = None
    events_until: float | None = None
    densify_events: int | None = None
    prune_from: int = 2
    error_blur: float = 1.0
    event_color_iters: int | None = None
    final_color_iters: int | None = None
    polish_iters: int | None = None
    color_solve_every: int = 0
    color_solve_iters: int = 5
    check_every: int = 25
    patience: int = 3
    min_delta: float = 0.01
    anneal: float = 0.15
    quantization: Quantization | str | None = field(default_factory=Quantization)
    refit_iters: int | None = None
    refit_shape_iters: int | None = None
    code_sweeps: int | None = None
    grid_sweeps: int | None = None
    seed: int = 0
    target_psnr: float | None = None
    backend: str = "cpu"
    coarse: float | None = None
    coarse_factor: int = 2
    effort: int = DEFAULT_EFFORT

    def __post_init__(self) -> None:
        for name, value in effort_row(self.effort).items():
            if getattr(self, name) is None:
                object.__setattr__(self, name, value)
        if self.points < 1:
            raise ValueError(f"points must be positive, got {self.points}")
        if not (0 <= self.spare <= 4):
            raise ValueError(f"spare must be a share of points from 0 to 4, got {self.spare}")
        if self.iterations < 0:  # type: ignore[operator]
            raise ValueError(f"iterations must be non-negative, got {self.iterations}")
        if self.polish_iters < 0:  # type: ignore[operator]
            raise ValueError(f"polish_iters must be non-negative, got {self.polish_iters}")
        if self.reg_points < 1:
            raise ValueError(f"reg_points must be a positive number of Gaussians, got {self.reg_points}")
        if self.init not in ("adaptive", "grid"):
            raise ValueError(f"init must be 'adaptive' or 'grid', got {self.init!r}")
        if not 0 < self.init_fraction <= 1:
            raise ValueError(f"init_fraction must be in (0, 1], got {self.init_fraction}")
        if not 0 <= self.coarse <= 1:  # type: ignore[operator]
            raise ValueError(f"coarse must be in [0, 1], got {self.coarse}")
        if self.coarse_factor < 1:
            raise ValueError(f"coarse_factor must be at least 1, got {self.coarse_factor}")
        if self.check_every < 1:
            raise ValueError(f"check_every must be positive, got {self.check_every}")
        if isinstance(self.quantization, str) and self.quantization != "auto":
            raise ValueError(f"quantization must be a Quantization, 'auto' or None, got {self.quantization!r}")


@dataclass
class FitResult:
    """The outcome of fitting one image.

    Attributes:
        gaussians: the final Gaussians; snapped to the quantization grid (Morton
            order) when the config has a quantization.
        psnr: PSNR (dB, peak 1.0, render clamped to [0, 1]) of ``gaussians``
            against the target, i.e. of what the file decodes to.
        psnr_unquantized: the same for the float fit before quantization.
        quantization: the grid ``gaussians`` are snapped to, which the file
            must be written with (``None``: not quantized).
        iterations: Adam steps taken.
        seconds: wall time (for a batch: the batch's time divided by its size).
    """

    gaussians: GaussianImage
    psnr: float
    psnr_unquantized: float
    iterations: int
    seconds: float
    quantization: Quantization | None = None


_chol = chol_from_shape
_shape = shape_from_chol


class _State:
    """Parameters and Adam moments of a batch, ``(B, N, .)`` each, with per-slot step counts."""

    GROUPS = ("means", "shape", "colors")

    def __init__(self, means: torch.Tensor, shape: torch.Tensor, colors: torch.Tensor, counts: torch.Tensor):
        self.p = {"means": means.contiguous(), "shape": shape.contiguous(), "colors": colors.contiguous()}
        self.m = {k: torch.zeros_like(v) for k, v in self.p.items()}
        self.v = {k: torch.zeros_like(v) for k, v in self.p.items()}
        self.steps = torch.zeros(means.shape[:2] + (1,), dtype=torch.float32)
        self.counts = counts.clone()

    def reset(self, b: int, idx: torch.Tensor) -> None:
        for k in self.GROUPS:
            self.m[k][b, idx] = 0
            self.v[k][b, idx] = 0
        self.steps[b, idx] = 0

    def select(self, keep: torch.Tensor) -> None:
        for d in (self.p, self.m, self.v):
            for k in self.GROUPS:
                d[k] = d[k][keep].contiguous()
        self.steps = self.steps[keep].contiguous()
        self.counts = self.counts[keep].contiguous()

    def snapshot(self, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
        n = int(self.counts[i])
        return (self.p["means"][i, :n].clone(), _chol(self.p["shape"][i, :n]), self.p["colors"][i, :n].clone(), n)


def _clamp_bounds(width: int, height: int) -> np.ndarray:
    """The clamps of :func:`_adam`: ``width, height`` (positions), the log-scales' range, the shear limit."""
    return np.array([width, height, math.log(MIN_SCALE), math.log(2.0 * max(width, height)), SHEAR_LIMIT])


def _adam(state: _State, g_means: torch.Tensor, g_chol: torch.Tensor, chol: torch.Tensor, g_colors: torch.Tensor,
          lrs: np.ndarray, betas: tuple[float, float], reg: float, bounds: np.ndarray) -> None:
    """One Adam step of every group, then the clamps: positions to the image, log-scales to
    ``bounds[2:4]``, shears to ``bounds[4]``. ``g_*``: loss gradients w.r.t. the means, the Cholesky factors
    ``chol`` of the current shapes and the colours; ``lrs (B, 3)`` the rates of means, shape and colours;
    ``reg`` an L1 weight on the colours. Padding slots stay put."""
    if state.p["means"].device.type == "cpu":  # one numba pass instead of some 60 small torch ops
        b, n = g_means.shape[:2]
        flat = [state.p[k].view(b, -1).numpy() for k in state.GROUPS]
        moments = [x[k].view(b, -1).numpy() for k in state.GROUPS for x in (state.m, state.v)]
        fused_adam(*flat, g_means.numpy(), g_chol.numpy(), g_colors.numpy(), *moments,
                   state.steps.view(b, n).numpy(), state.counts.numpy(), lrs, betas[0], betas[1], reg, bounds)
    else:
        _adam_torch(state, g_means, g_chol, chol, g_colors, lrs, betas, reg, bounds)


def _adam_torch(state: _State, g_means: torch.Tensor, g_chol: torch.Tensor, chol: torch.Tensor,
                g_colors: torch.Tensor, lrs: np.ndarray, betas: tuple[float, float], reg: float,
                bounds: np.ndarray) -> None:
    """:func:`_adam` in torch operations, on any device."""
    if reg > 0:
        g_colors = g_colors + reg * torch.sign(state.p["colors"])
    grads = {"means": g_means, "shape": shape_grad(g_chol, chol, state.p["shape"]), "colors": g_colors}
    valid = (torch.arange(state.steps.shape[1], device=g_means.device)[None, :]
             < state.counts.to(g_means.device)[:, None])[..., None]
    state.steps += valid.float()
    t = state.steps.clamp_min(1)
    rates = torch.from_numpy(lrs).float().to(g_means.device)
    for j, k in enumerate(state.GROUPS):
        adam_step(state.p[k], grads[k], state.m[k], state.v[k], rates[:, j, None, None] * valid, t, betas)
    hi = torch.tensor([float(bounds[0]), float(bounds[1])], device=g_means.device)
    state.p["means"] = torch.maximum(torch.minimum(state.p["means"], hi), torch.zeros_like(hi))
    sh = state.p["shape"]
    sh[..., 0].clamp_(float(bounds[2]), float(bounds[3]))
    sh[..., 2].clamp_(float(bounds[2]), float(bounds[3]))
    sh[..., 1].clamp_(-float(bounds[4]), float(bounds[4]))


def learning_rates(cfg: FitConfig, points: int, width: int, height: int) -> tuple[float, float, float]:
    """Peak Adam rates ``(means in px, shape, colors)`` of a fit of ``points`` Gaussians to ``width`` x ``height``."""
    lr_shape = cfg.lr_shape * min(1.0, math.sqrt(cfg.lr_shape_density * width * height / max(points, 1)))
    return cfg.lr_means * mean_spacing(points, width, height), lr_shape, cfg.lr_colors


def color_l1_weight(cfg: FitConfig, width: int, height: int) -> float:
    """Weight of ``sum |colors|`` next to the fitter's loss, the unnormalized squared error ``MSE * H * W * 3``.

    ``lambda_reg * H * W * 3``, times ``reg_points / points`` for budgets above
    ``reg_points``. The L1 term pulls every colour towards zero by about its
    weight over the colour's curvature ``2 pi l11 l22``; at a fixed weight that
    bias grows with the Gaussian count (their sizes shrink), and at 0.03
    Gaussians/px on a 768x512 photo it held the fit several dB below what the
    Gaussians can reach. Scaled by the budget, the bias stays about what the
    paper's weight gives at a few hundred Gaussians.
    """
    scale = min(1.0, cfg.reg_points / max(cfg.points, 1))
    return cfg.lambda_reg * height * width * 3 * scale


def _schedule(cfg: FitConfig) -> dict[int, tuple[bool, bool]]:
    """Iteration -> (densify, prune) of every event."""
    out: dict[int, tuple[bool, bool]] = {}
    if cfg.events <= 0 or cfg.iterations <= 0:
        return out
    for k in range(1, cfg.events + 1):
        t = max(1, round(cfg.iterations * cfg.events_until * k / cfg.events))
        if t >= cfg.iterations:
            continue
        dens = k <= cfg.densify_events
        prune = k >= cfg.prune_from and cfg.tau_th > 0
        if dens or prune:
            d0, p0 = out.get(t, (False, False))
            out[t] = (d0 or dens, p0 or prune)
    return out


def _event(state: _State, target: torch.Tensor, render: torch.Tensor, cfg: FitConfig, n_total: int, goal: torch.Tensor,
           densify: bool, prune: bool, gens) -> None:
    """Prune dark Gaussians and/or grow towards ``goal`` slots, placing new ones by error; re-solve colours."""
    b, h, w, _ = target.shape
    if isinstance(gens, torch.Generator):
        gens = [gens] * b
    residual = target - render  # a new Gaussian takes the residual colour at its pixel
    error = (residual * residual).sum(-1)
    spacing = mean_spacing(n_total, w, h)
    for i in range(b):
        n = int(state.counts[i])
        freed = torch.empty(0, dtype=torch.long)
        if prune:
            lum = luminance_abs(state.p["colors"][i, :n])
            freed = torch.nonzero(lum < cfg.tau_th).reshape(-1)
        new_n = int(goal[i]) if densify else n
        need = len(freed) + max(new_n - n, 0)
        if need == 0:
            continue
        slots = torch.cat([freed, torch.arange(n, n + max(new_n - n, 0))])
        keep = torch.ones(n, dtype=torch.bool)
        keep[freed] = False
        xy = sample_by_error(error[i], need, gens[i], cfg.error_blur)
        # scale from the density of the Gaussians that stay plus the new ones
        dens = local_density(torch.cat([state.p["means"][i, :n][keep], xy]), int(keep.sum()) + need, w, h,
                             0.5 * spacing)
        s = density_scale(dens, xy, cfg.init_scale, w, h)
        j = xy[:, 0].floor().long().clamp(0, w - 1)
        r = xy[:, 1].floor().long().clamp(0, h - 1)
        state.p["means"][i, slots] = xy
        state.p["shape"][i, slots] = _shape(torch.stack([s, torch.zeros_like(s), s], 1))
        state.p["colors"][i, slots] = residual[i, r, j]
        state.reset(i, slots)
        state.counts[i] = max(n, new_n)
    if cfg.event_color_iters > 0:
        state.p["colors"] = solve_colors(state.p["means"], _chol(state.p["shape"]), state.p["colors"], target,
                                         cfg.event_color_iters, cfg.backend, state.counts)


COARSE_MAX_DENSITY = 0.125
"""Most Gaussians per pixel of the coarse level for which the fit starts coarse: denser, they
would be smaller than its pixels (and a 48x40 test image drifted 1.5 dB between runs)."""


class _Level:
    """The resolution a fit step renders at: the targets area-downsampled by ``factor`` (1: full size).

    Parameters stay in full-size pixels; :meth:`render` maps them to the level's
    pixels (``x' = s x``, ``L' = S L`` with ``S = diag(sx, sy)``, which keeps
    ``L'`` lower triangular), so gradients reach the full-size parameters.
    """

    @staticmethod
    def size(width: int, height: int, factor: int) -> tuple[int, int]:
        """``(w, h)`` of the level ``factor`` times smaller than ``width`` x ``height``."""
        return max(1, round(width / factor)), max(1, round(height / factor))

    def __init__(self, targets: torch.Tensor, factor: int, backend: str):
        b, h, w, _ = targets.shape
        self.w, self.h = self.size(w, h, factor)
        self.full = (self.w, self.h) == (w, h)
        if self.full:
            self.targets = targets
        else:
            x = torch.nn.functional.interpolate(targets.permute(0, 3, 1, 2), size=(self.h, self.w), mode="area")
            self.targets = x.permute(0, 2, 3, 1).contiguous()
        self.scale = torch.tensor([self.w / w, self.h / h], device=targets.device)
        self.chol_scale = torch.tensor([self.w / w, self.h / h, self.h / h], device=targets.device)
        # the CPU's fused step reads the targets in the rasterizer's block layout, made once per level
        self.blocks = target_blocks(self.targets) if backend == "cpu" else None

    def step(self, means: torch.Tensor, chol: torch.Tensor, colors: torch.Tensor, counts: torch.Tensor,
             backend: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(B,)`` float64 MSE of the clamped render and the gradients of ``sum((render - target)^2)``
        w.r.t. the full-size ``means``, ``chol`` and ``colors``."""
        m, c = (means, chol) if self.full else (means * self.scale, chol * self.chol_scale)
        if self.blocks is not None:
            sse, g_means, g_chol, g_colors = squared_error_grad(m, c, colors, self.w, self.h, counts, self.blocks)
            mse = torch.from_numpy(sse / (3.0 * self.w * self.h))
        else:
            m = m.detach().requires_grad_(True)
            c = c.detach().requires_grad_(True)
            k = colors.detach().requires_grad_(True)
            render = rasterize_sum(m, c, k, self.w, self.h, counts, backend)
            mse = ((render.detach().clamp(0, 1) - self.targets) ** 2).double().mean((1, 2, 3))
            # the residual in the render's own buffer (nothing reads the render after this), and the
            # factor 2 of the squared error on the (N, .) gradients: one image-sized pass, not three
            residual = render.detach().sub_(self.targets)
            g_means, g_chol, g_colors = (2.0 * g for g in torch.autograd.grad(render, (m, c, k), residual))
        if not self.full:
            g_means, g_chol = g_means * self.scale, g_chol * self.chol_scale
        return mse, g_means, g_chol, g_colors

    def select(self, keep: torch.Tensor, targets: torch.Tensor) -> None:
        """Keep the rows ``keep``; ``targets`` are the full-size targets already selected."""
        self.targets = targets if self.full else self.targets[keep]
        if self.blocks is not None:
            self.blocks = self.blocks[keep.cpu().numpy()]


def _fit_tensors(targets: torch.Tensor, cfg: FitConfig, progress: Callable | None) -> list[dict]:
    """Fit the batch ``(B, H, W, 3)``; per image a dict of float params, iterations and PSNR."""
    b, h, w, _ = targets.shape
    # one generator per image, all seeded alike: an image gets the same fit alone or in a batch
    gens = [torch.Generator().manual_seed(cfg.seed) for _ in range(b)]
    n_total = int(min(round(cfg.points * (1 + cfg.spare)), h * w))  # more Gaussians than pixels cannot help
    n_init = max(1, min(n_total, round(n_total * cfg.init_fraction)))
    if cfg.init == "grid":
        means, chol, colors = grid_init(targets, n_init, cfg.init_scale, gens, cfg.uniform_share, cfg.grad_blur)
    else:
        means, chol, colors = adaptive_init(targets, n_init, cfg.init_scale, gens, cfg.uniform_share, cfg.grad_blur,
                                            total=n_total)
    pad = n_total - n_init
    means = torch.cat([means, torch.full((b, pad, 2), 0.5)], 1)
    chol = torch.cat([chol, torch.ones((b, pad, 3))], 1)
    colors = torch.cat([colors, torch.zeros((b, pad, 3))], 1)
    counts = torch.full((b,), n_init, dtype=torch.long)
    colors = solve_colors(means, chol, colors, targets, cfg.init_color_iters, cfg.backend, counts)
    state = _State(means, _shape(chol), colors, counts)

    schedule = _schedule(cfg)
    densify_total = sum(1 for d, _ in schedule.values() if d)
    last_event = max(schedule) if schedule else 0
    done_densify = 0
    n_iter = cfg.iterations
    ids = list(range(b))  # original index of every row still in the batch
    results: list[dict | None] = [None] * b
    best = np.full(b, -math.inf)
    stale = np.zeros(b, dtype=np.int64)
    # Per-image position in the learning-rate schedule (0 -> 1). It advances by
    # 1 / iterations per step; a plateau makes it jump to finish within the
    # anneal steps, so the image still gets the low-rate end of the schedule.
    pos = np.zeros(b)
    rate = np.full(b, 1.0 / max(n_iter, 1))
    anneal_steps = max(1, round(cfg.anneal * n_iter))
    bounds = _clamp_bounds(w, h)
    reg = color_l1_weight(cfg, w, h)
    rates = np.array([learning_rates(cfg, n_total, w, h)])
    coarse_until = round(cfg.coarse * n_iter) if cfg.coarse_factor > 1 else 0
    coarse_w, coarse_h = _Level.size(w, h, cfg.coarse_factor)
    if n_total > COARSE_MAX_DENSITY * coarse_w * coarse_h:  # too dense to draw at the coarse size
        coarse_until = 0
    level = _Level(targets, cfg.coarse_factor if coarse_until > 0 else 1, cfg.backend)
    for t in range(n_iter + 1):
        if t == coarse_until and not level.full:
            level = _Level(targets, 1, cfg.backend)
        if t in schedule:
            dens, prune = schedule[t]
            goal = state.counts.clone()
            if dens:
                done_densify += 1
                add = n_total - n_init
                goal = torch.full_like(state.counts, n_init + round(add * done_densify / max(densify_total, 1)))
            render = rasterize_sum(state.p["means"], _chol(state.p["shape"]), state.p["colors"], w, h,
                                   state.counts, cfg.backend)
            _event(state, targets, render, cfg, n_total, goal, dens, prune, [gens[i] for i in ids])
        elif cfg.color_solve_every > 0 and t > 0 and t % cfg.color_solve_every == 0 and cfg.color_solve_iters > 0:
            state.p["colors"] = solve_colors(state.p["means"], _chol(state.p["shape"]), state.p["colors"], targets,
                                             cfg.color_solve_iters, cfg.backend, state.counts)
        chol = _chol(state.p["shape"])
        mse, g_means, g_chol, g_colors = level.step(state.p["means"], chol, state.p["colors"], state.counts,
                                                    cfg.backend)
        rows = len(ids)
        stop = pos[:rows] >= 1.0 - 1e-9
        if t == n_iter:
            stop[:] = True
        if t % cfg.check_every == 0 or stop.any():
            cur = (10.0 * torch.log10(1.0 / mse)).tolist()
            for r, i in enumerate(ids):
                p = cur[r]
                if not level.full:  # a PSNR against the downsampled target decides no stop
                    continue
                if cfg.target_psnr is not None and p >= cfg.target_psnr:
                    stop[r] = True
                elif t > last_event and rate[r] * anneal_steps < 1.0 - pos[r]:
                    stale[i] = stale[i] + 1 if p < best[i] + cfg.min_delta else 0
                    if stale[i] >= cfg.patience:  # plateau: finish the schedule quickly
                        rate[r] = (1.0 - pos[r]) / anneal_steps
                best[i] = max(best[i], p)
            if progress is not None:
                progress({"iteration": t, "iterations": n_iter, "psnr": cur, "images": list(ids)})
        if stop.any():
            for r in np.nonzero(stop)[0].tolist():
                m_, c_, k_, n_ = state.snapshot(r)
                results[ids[r]] = {"means": m_, "chol": c_, "colors": k_, "iterations": t}
            keep_np = ~stop
            if not keep_np.any():
                break
            keep = torch.from_numpy(keep_np).to(targets.device)
            state.select(keep)
            targets = targets[keep]
            level.select(keep, targets)
            ids = [i for r, i in enumerate(ids) if keep_np[r]]
            pos, rate = pos[:rows][keep_np], rate[:rows][keep_np]
            # every image's render and gradients are its own: those of the images that continue are rows of these
            chol, g_means, g_chol, g_colors = chol[keep], g_means[keep], g_chol[keep], g_colors[keep]
        frac = np.minimum(pos, 1.0)
        decay = cfg.lr_final + (1 - cfg.lr_final) * 0.5 * (1 + np.cos(np.pi * frac))
        _adam(state, g_means, g_chol, chol, g_colors, decay[:, None] * rates, cfg.betas, reg, bounds)
        pos = pos + rate
    return results  # type: ignore[return-value]


def _keep_strongest(result: dict, keep: int) -> dict:
    """``result`` with its ``keep`` Gaussians of most energy ``|color|^2 l11 l22`` (in their order)."""
    n = result["means"].shape[0]
    if n <= keep:
        return result
    energy = result["colors"].double().square().sum(1) * result["chol"][:, 0].double() * result["chol"][:, 2].double()
    idx = torch.topk(energy, keep).indices.sort().values
    return {**result, "means": result["means"][idx], "chol": result["chol"][idx], "colors": result["colors"][idx]}


POLISH_RATES = (0.02, 0.03, 0.012)
"""Adam rates of the polish (``FitConfig.polish_iters``): positions in units of the mean spacing, log-shapes and
shear, colours (those of the quantization-aware shape fine-tune, :func:`gscodec.fit.refit.finetune_shapes`)."""


def polish(means: torch.Tensor, chol: torch.Tensor, colors: torch.Tensor, targets: torch.Tensor,
           counts: torch.Tensor, cfg: FitConfig) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``cfg.polish_iters`` Adam steps on all parameters from fresh moments, at the constant :data:`POLISH_RATES`,
    on the plain squared error (no L1 term); the fitter's own step (fused on the CPU).

    ``means (B, N, 2)``, ``chol (B, N, 3)``, ``colors (B, N, 3)``: the slots ``k < counts[b]`` of every image;
    ``targets (B, H, W, 3)``. Returns the new ``means``, ``chol`` and ``colors``.
    """
    b, h, w, _ = targets.shape
    state = _State(means.clone(), _shape(chol), colors.clone(), counts)
    level = _Level(targets, 1, cfg.backend)
    spacing = mean_spacing(min(cfg.points, h * w), w, h)
    lrs = np.tile(np.array([[POLISH_RATES[0] * spacing, POLISH_RATES[1], POLISH_RATES[2]]]), (b, 1))
    bounds = _clamp_bounds(w, h)
    for _ in range(cfg.polish_iters):
        c = _chol(state.p["shape"])
        _, g_means, g_chol, g_colors = level.step(state.p["means"], c, state.p["colors"], state.counts, cfg.backend)
        _adam(state, g_means, g_chol, c, g_colors, lrs, cfg.betas, 0.0, bounds)
    return state.p["means"], _chol(state.p["shape"]), state.p["colors"]


def _finish(results: list[dict], targets: torch.Tensor,
            cfg: FitConfig) -> list[tuple[GaussianImage, float, float, Quantization | None]]:
    """Final colour solve, GaussianImages, quantization; per image (gaussians, psnr, psnr_unquantized, quantization)."""
    from .refit import quantize_refit, render_batch

    b, h, w, _ = targets.shape
    results = [_keep_strongest(r, min(cfg.points, h * w)) for r in results]
    n_max = max(r["means"].shape[0] for r in results)
    counts = torch.tensor([r["means"].shape[0] for r in results], dtype=torch.long)

    def padded(key: str, fill: float) -> torch.Tensor:
        out = []
        for r in results:
            x = r[key]
            pad = torch.full((n_max - x.shape[0], x.shape[1]), fill)
            out.append(torch.cat([x, pad], 0))
        return torch.stack(out)

    means, chol, colors = padded("means", 0.5), padded("chol", 1.0), padded("colors", 0.0)
    if cfg.final_color_iters > 0:
        colors = solve_colors(means, chol, colors, targets, cfg.final_color_iters, cfg.backend, counts)
    if cfg.polish_iters > 0:
        means, chol, colors = polish(means, chol, colors, targets, counts, cfg)
        if cfg.final_color_iters > 0:
            colors = solve_colors(means, chol, colors, targets, cfg.final_color_iters, cfg.backend, counts)
    gs = [
        GaussianImage(w, h, means[i, : counts[i]], chol[i, : counts[i]], colors[i, : counts[i]]) for i in range(b)
    ]
    p_float = [float(p) for p in psnr_batch(render_batch(gs, cfg.backend), targets)]
    if cfg.quantization is None:
        return [(g, p, p, None) for g, p in zip(gs, p_float)]
    if cfg.quantization == "auto":
        qs = [preset_for_density(g.count / (w * h), p) for g, p in zip(gs, p_float)]
    else:
        qs = [cfg.quantization] * b  # type: ignore[list-item]
    out: list[tuple[GaussianImage, float, float, Quantization | None]] = [None] * b  # type: ignore[list-item]
    for q in dict.fromkeys(qs):  # one batched refit per distinct grid
        idx = [i for i in range(b) if qs[i] == q]
        snapped, p_q = quantize_refit([gs[i] for i in idx], targets[idx], q, cfg.refit_iters, cfg.backend,
                                      code_sweeps=cfg.code_sweeps, shape_iters=cfg.refit_shape_iters,
                                      grid_sweeps=cfg.grid_sweeps)
        for i, g, pq in zip(idx, snapped, p_q):
            out[i] = (g, float(pq), p_float[i], q)
    return out


def fit_batch(images: list, config: FitConfig = FitConfig(), progress: Callable | None = None) -> list[FitResult]:
    """Fit many same-size images together in one batched loop; one :class:`FitResult` per image.

    ``images``: ``(H, W, 3)`` float tensors in [0, 1] or uint8 arrays, all the
    same size. ``progress``, if given, is called every ``check_every`` steps
    with a dict (``iteration``, ``iterations``, ``psnr`` of the images still
    running, ``images``: their indices).
    """
    if len(images) == 0:
        return []
    start = time.perf_counter()
    targets = [as_target(im) for im in images]
    size = targets[0].shape
    for t in targets:
        if t.shape != size:
            raise ValueError(f"fit_batch needs images of one size; got {tuple(size)} and {tuple(t.shape)}")
    device = fit_device(config.backend)
    batch = torch.stack(targets).to(device)
    threads = torch.get_num_threads()
    # The per-step tensor work is tiny; torch's own thread pool would only fight
    # the rasterizer's numba threads for the two cores.
    torch.set_num_threads(1)
    try:
        with on_device(device):
            results = _fit_tensors(batch, config, progress)
            finished = _finish(results, batch, config)
    finally:
        torch.set_num_threads(threads)
    seconds = (time.perf_counter() - start) / len(images)
    return [
        FitResult(gaussians=g, psnr=pq, psnr_unquantized=pf, iterations=int(r["iterations"]), seconds=seconds,
                  quantization=q)
        for (g, pq, pf, q), r in zip(finished, results)
    ]


def fit(image, config: FitConfig = FitConfig(), progress: Callable | None = None) -> FitResult:
    """Fit one image (``(H, W, 3)`` float tensor in [0, 1] or uint8 array) with ``config``."""
    return fit_batch([image], config, progress)[0]


__all__ = ["FitConfig", "FitResult", "color_l1_weight", "fit", "fit_batch", "polish", "psnr"]
