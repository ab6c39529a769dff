"""Adam steps: the fitter's fused step over all parameter groups, and a plain one for the shape fine-tune."""

from __future__ import annotations

import math

import numpy as np
import torch
from numba import njit


def adam_step(param: torch.Tensor, grad: torch.Tensor, m: torch.Tensor, v: torch.Tensor, lr: float | torch.Tensor,
              t: int | torch.Tensor, betas: tuple[float, float], eps: float = 1e-12, rate_first: bool = False) -> None:
    """Update ``param`` in place by one Adam step; the moments ``m`` and ``v`` are updated in place too.

    ``param``, ``grad``, ``m``, ``v``: one shape. ``t``: the 1-based step count, a number or a tensor that
    broadcasts against ``param`` (per-slot counts); ``lr`` likewise (per image, 0 where a slot stays put).
    ``rate_first`` multiplies by ``lr`` before dividing by the second moment rather than after: the same step
    but for the float rounding, kept where a caller's results were fixed in that order (the shape fine-tune).
    """
    b1, b2 = betas
    m.mul_(b1).add_(grad, alpha=1 - b1)
    v.mul_(b2).addcmul_(grad, grad, value=1 - b2)
    first = m / (1 - b1**t)
    denom = (v / (1 - b2**t)).sqrt_().add_(eps)
    param.sub_(lr * first / denom if rate_first else first / denom * lr)


@njit(cache=True, inline="always")
def _update(p: np.ndarray, g: float, m: np.ndarray, v: np.ndarray, j: int, b1: np.float32, b2: np.float32,
            rate: np.float32, root: np.float32, eps: np.float32) -> None:
    """``p[j] -= rate * m / (sqrt(v) * root + eps)`` after the moment updates; ``rate = lr / (1 - b1^t)``,
    ``root = 1 / sqrt(1 - b2^t)``: Adam's bias corrections folded into two per-slot factors."""
    one = np.float32(1.0)
    gf = np.float32(g)
    mj = m[j] * b1 + gf * (one - b1)
    vj = v[j] * b2 + gf * gf * (one - b2)
    m[j] = mj
    v[j] = vj
    p[j] = p[j] - rate * mj / (np.sqrt(vj) * root + eps)


@njit(cache=True)
def fused_adam(means: np.ndarray, shape: np.ndarray, colors: np.ndarray, g_means: np.ndarray, g_chol: np.ndarray,
               g_colors: np.ndarray, m_means: np.ndarray, v_means: np.ndarray, m_shape: np.ndarray,
               v_shape: np.ndarray, m_colors: np.ndarray, v_colors: np.ndarray, steps: np.ndarray,
               counts: np.ndarray, lrs: np.ndarray, b1: float, b2: float, reg: float, bounds: np.ndarray) -> None:
    """One Adam step of the fit's three groups, in place, for the slots ``k < counts[b]`` of every image ``b``.

    ``means (B, 2N)``, ``shape (B, 3N)`` (``log l11, l21 / l22, log l22``), ``colors (B, 3N)`` and their moments
    ``m_*``, ``v_*`` are flat float32 rows; ``g_means (B, N, 2)``, ``g_chol (B, N, 3)``, ``g_colors (B, N, 3)``
    the loss gradients w.r.t. means, Cholesky factors and colours (the chain rule to ``shape`` happens here);
    ``steps (B, N)`` float32 per-slot step counts (incremented); ``lrs (B, 3)`` the rates of means, shape and
    colours; ``reg`` adds ``reg * sign(color)`` to the colour gradient. ``bounds``: ``width, height`` (the means
    are clamped to ``[0, width] x [0, height]``), ``lo_log, hi_log`` (the log-scales' range) and the shear limit.
    """
    nb, n = g_means.shape[0], g_means.shape[1]
    f1, f2, eps = np.float32(b1), np.float32(b2), np.float32(1e-12)
    one, zero = np.float32(1.0), np.float32(0.0)
    width, height = np.float32(bounds[0]), np.float32(bounds[1])
    lo_log, hi_log, shear = np.float32(bounds[2]), np.float32(bounds[3]), np.float32(bounds[4])
    for b in range(nb):
        lr_m, lr_s, lr_c = np.float32(lrs[b, 0]), np.float32(lrs[b, 1]), np.float32(lrs[b, 2])
        pm, mm, vm, gm = means[b], m_means[b], v_means[b], g_means[b]
        ps, ms, vs, gs = shape[b], m_shape[b], v_shape[b], g_chol[b]
        pc, mc, vc, gc = colors[b], m_colors[b], v_colors[b], g_colors[b]
        last_t = np.float32(-1.0)
        bc1 = bc2 = one
        for k in range(min(counts[b], n)):
            t = steps[b, k] + one
            steps[b, k] = t
            if t != last_t:  # most slots share their step count
                bc1 = one - np.float32(math.pow(b1, t))
                bc2 = one - np.float32(math.pow(b2, t))
                last_t = t
            root = one / np.float32(math.sqrt(bc2))
            rate_m, rate_s, rate_c = lr_m / bc1, lr_s / bc1, lr_c / bc1
            _update(pm, gm[k, 0], mm, vm, 2 * k, f1, f2, rate_m, root, eps)
            _update(pm, gm[k, 1], mm, vm, 2 * k + 1, f1, f2, rate_m, root, eps)
            # the chain rule from chol = (exp s0, s1 exp s2, exp s2) to the shape parameters s
            l11 = np.float32(math.exp(ps[3 * k]))
            l22 = np.float32(math.exp(ps[3 * k + 2]))
            g_shear = gs[k, 1] * l22
            g_l22 = g_shear * ps[3 * k + 1] + gs[k, 2] * l22
            _update(ps, gs[k, 0] * l11, ms, vs, 3 * k, f1, f2, rate_s, root, eps)
            _update(ps, g_shear, ms, vs, 3 * k + 1, f1, f2, rate_s, root, eps)
            _update(ps, g_l22, ms, vs, 3 * k + 2, f1, f2, rate_s, root, eps)
            for c in range(3):
                x = pc[3 * k + c]
                g = gc[k, c]
                if reg > 0 and x != zero:
                    g = g + (np.float32(reg) if x > zero else -np.float32(reg))
                _update(pc, g, mc, vc, 3 * k + c, f1, f2, rate_c, root, eps)
            pm[2 * k] = min(max(pm[2 * k], zero), width)
            pm[2 * k + 1] = min(max(pm[2 * k + 1], zero), height)
            ps[3 * k] = min(max(ps[3 * k], lo_log), hi_log)
            ps[3 * k + 1] = min(max(ps[3 * k + 1], -shear), shear)
            ps[3 * k + 2] = min(max(ps[3 * k + 2], lo_log), hi_log)


__all__ = ["adam_step", "fused_adam"]
