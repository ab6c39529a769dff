"""Integer refinement of quantized colour codes: a better lattice point than rounding.

Rounding each colour to its nearest code ignores that overlapping Gaussians can
compensate each other's rounding errors. With the geometry fixed, the image
error is quadratic in the colours, so the change of ``L = 0.5 * sum(err^2)``
from moving Gaussian ``k``'s colour by ``u`` is
``grad_k . u + 0.5 * D_k * |u|^2`` with ``D_k = sum_p w_k(p)^2 ~ pi * l11 * l22``
(the integral of the squared footprint). Each sweep computes the colour
gradient with one forward and backward pass, picks every Gaussian's best
single-code move, and applies a random share of the improving moves (all of
them at once would overshoot where neighbours overlap). The file format is
untouched: only which codes the encoder writes changes.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..gaussians import GaussianImage
from ..quantize import COLOR_YCOCG, Quantization, dequantize, quantize, snap
from ..raster import rasterize_sum


def _code_steps(q: Quantization, steps: np.ndarray) -> torch.Tensor:
    """``(3, 3)`` RGB change of one code step in each colour field."""
    a, b, c = (float(s) for s in steps[3:6])
    if q.color_transform == COLOR_YCOCG:
        rows = [[a, a, a], [b, 0.0, -b], [-c, c, -c]]
    else:
        rows = [[a, 0.0, 0.0], [0.0, b, 0.0], [0.0, 0.0, c]]
    return torch.tensor(rows, dtype=torch.float32)


def _loss(g: GaussianImage, target: torch.Tensor, colors: torch.Tensor, backend: str) -> torch.Tensor:
    dev = target.device  # g is on the CPU (GaussianImage); the render runs where the target is
    img = rasterize_sum(g.means.to(dev), g.chol.to(dev), colors.to(dev), g.width, g.height, backend=backend)
    return 0.5 * ((img.clamp(0.0, 1.0) - target) ** 2).sum()


def refine_color_codes(
    g: GaussianImage,
    target: torch.Tensor,
    q: Quantization,
    sweeps: int = 24,
    share: float = 0.3,
    seed: int = 0,
    backend: str = "cpu",
) -> GaussianImage:
    """Move colour codes of the snapped image ``g`` by single steps while the error drops.

    Args:
        g: Gaussians already on the grid of ``q`` (``snap(g, q)`` equals ``g``), in Morton order.
        target: ``(H, W, 3)`` float image in [0, 1].
        q: the file's quantization.
        sweeps: gradient evaluations at most.
        share: probability that an improving move is applied in a sweep.

    Returns:
        The refined image (on the same grid, same geometry), never worse than ``g``
        in clamped squared error.
    """
    if g.count == 0 or sweeps <= 0:
        return g
    qg = quantize(g, q)
    codes = qg.codes.copy()
    unit = _code_steps(q, qg.steps).cpu()
    moves = torch.cat([unit, -unit])  # (6, 3): +1 then -1 in each colour field
    footprint = (math.pi * g.chol[:, 0] * g.chol[:, 2])[:, None]
    quad = 0.5 * footprint * (moves**2).sum(1)[None, :]
    rng = np.random.default_rng(seed)
    best = g
    with torch.no_grad():
        best_loss = float(_loss(g, target, g.colors, backend))
    current = g
    for _ in range(sweeps):
        colors = current.colors.clone().requires_grad_(True)
        loss = _loss(current, target, colors, backend)
        (grad,) = torch.autograd.grad(loss, colors)
        grad = grad.cpu()
        if float(loss.detach()) < best_loss:
            best, best_loss = current, float(loss.detach())
        gain = grad @ moves.T + quad  # (N, 6) predicted change of the loss
        delta, choice = gain.min(dim=1)
        pick = (delta < 0).numpy() & (rng.random(g.count) < share)
        if not pick.any():
            break
        choice = choice.numpy()
        for m in range(6):
            sel = pick & (choice == m)
            codes[3 + m % 3, sel] += 1 if m < 3 else -1
        trial = type(qg)(qg.width, qg.height, qg.position_bits, qg.color_transform, qg.ix, qg.iy,
                         qg.offsets, qg.steps, codes.copy())
        current = snap(dequantize(trial), q)  # re-centres the offsets, so the file holds exactly these values
    with torch.no_grad():
        final = float(_loss(current, target, current.colors, backend))
    return current if final < best_loss else best
