"""Integer refinement of quantized codes, colours and positions: a better lattice point than rounding.

Rounding each colour to its nearest code ignores that overlapping Gaussians can
compensate each other's rounding errors. With the geometry fixed, the image
error is quadratic in the colours, so the change of ``L = 0.5 * sum(err^2)``
from moving Gaussian ``k``'s colour by ``u`` is
``grad_k . u + 0.5 * D_k * |u|^2`` with ``D_k = sum_p w_k(p)^2 ~ pi * l11 * l22``
(the integral of the squared footprint). Each sweep computes the colour
gradient with one forward and backward pass, picks every Gaussian's best
single-code move, and applies a random share of the improving moves (all of
them at once would overshoot where neighbours overlap). Positions get the same
treatment with a Gauss-Newton model of the error (:func:`refine_position_codes`).
The file format is untouched: only which codes the encoder writes changes.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..gaussians import GaussianImage
from ..quantize import COLOR_YCOCG, Quantization, dequantize, morton_order, quantize, snap
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
    means, chol, _ = g.tensors(dev)
    img = rasterize_sum(means, chol, colors.to(dev), g.width, g.height, backend=backend)
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
    chol = g.tensors().chol
    footprint = (math.pi * chol[:, 0] * chol[:, 2])[:, None]
    quad = 0.5 * footprint * (moves**2).sum(1)[None, :]
    rng = np.random.default_rng(seed)
    best = g
    with torch.no_grad():
        best_loss = float(_loss(g, target, g.tensors().colors, backend))
    current = g
    for _ in range(sweeps):
        colors = current.tensors().colors.clone().requires_grad_(True)
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
        final = float(_loss(current, target, current.tensors().colors, backend))
    return current if final < best_loss else best


_MOVES = np.array([(1, 0), (-1, 0), (0, 1), (0, -1), (1, 1), (1, -1), (-1, 1), (-1, -1)], dtype=np.float64)


def refine_position_codes(
    g: GaussianImage,
    target: torch.Tensor,
    q: Quantization,
    sweeps: int = 16,
    share: float = 0.6,
    seed: int = 0,
) -> GaussianImage:
    """Move positions of the snapped image ``g`` to neighbouring grid points while the error drops (CPU).

    The change of ``L = 0.5 * sum(err^2)`` from moving Gaussian ``k`` by ``u``
    (px) is modelled as ``grad_k . u + 0.5 u^T H_k u`` with the Gauss-Newton
    ``H_k = |c_k|^2 (pi l11 l22 / 2) Sigma_k^-1`` (the integral of the squared
    footprint's derivative). Each sweep moves a random share of the Gaussians
    whose best of the 8 neighbouring grid points predicts a drop, and the result
    is kept only while the clamped error falls. Returns an image on the grid of ``q``.
    """
    from ..raster.cpu import squared_error_grad, target_blocks

    if g.count == 0 or sweeps <= 0:
        return g
    blocks = target_blocks(target[None])
    counts = torch.tensor([g.count])
    step = 2.0 ** -q.position_bits
    rng = np.random.default_rng(seed)

    def evaluate(x: GaussianImage) -> tuple[float, np.ndarray]:
        sse, g_means, _, _ = squared_error_grad(torch.as_tensor(x.means)[None], torch.as_tensor(x.chol)[None],
                                                torch.as_tensor(x.colors)[None], x.width, x.height, counts, blocks)
        return 0.5 * float(sse[0]), 0.5 * g_means[0].double().numpy()

    best_loss, grad = evaluate(g)
    best = g
    for _ in range(sweeps):
        chol = np.asarray(best.chol, dtype=np.float64)
        col = np.asarray(best.colors, dtype=np.float64)
        l11, l21, l22 = chol[:, 0], chol[:, 1], chol[:, 2]
        a = (col ** 2).sum(1) * (math.pi * np.abs(l11 * l22) / 2) / np.maximum((l11 * l22) ** 2, 1e-12)
        # H = a * [[l21^2 + l22^2, -l11 l21], [-l11 l21, l11^2]]
        u = _MOVES * step  # (8, 2)
        quad = 0.5 * a[:, None] * ((l21 ** 2 + l22 ** 2)[:, None] * u[None, :, 0] ** 2
                                   - 2 * (l11 * l21)[:, None] * u[None, :, 0] * u[None, :, 1]
                                   + (l11 ** 2)[:, None] * u[None, :, 1] ** 2)
        gain = grad @ u.T + quad  # (N, 8)
        choice = gain.argmin(1)
        pick = (gain[np.arange(g.count), choice] < 0) & (rng.random(g.count) < share)
        if not pick.any():
            break
        means = np.asarray(best.means, dtype=np.float64).copy()
        means[pick] += u[choice[pick]]
        means[:, 0] = np.clip(means[:, 0], 0.0, g.width)
        means[:, 1] = np.clip(means[:, 1], 0.0, g.height)
        trial = GaussianImage(g.width, g.height, means.astype(np.float32), best.chol, best.colors)
        loss, trial_grad = evaluate(trial)
        if loss >= best_loss:
            break
        best, best_loss, grad = trial, loss, trial_grad
    return best.permuted(morton_order(best, q.position_bits))


def refine_shape_codes(
    g: GaussianImage,
    target: torch.Tensor,
    q: Quantization,
    sweeps: int = 16,
    share: float = 0.6,
    seed: int = 0,
) -> GaussianImage:
    """Move the shape codes (``log2 l11``, ``log2 l22``, shear) of ``g`` by single steps while the error drops (CPU).

    ``g``: positions and shapes on the grid of ``q``, in Morton order; its colours may be free (they are kept).
    Gauss-Newton curvatures of ``L = 0.5 * sum(err^2)`` per field (a footprint's integrals):
    ``|c|^2 l11 l22 pi (3 + s^2) / 4`` for ``ln l11`` and ``ln l22``, ``|c|^2 l11 l22 pi / 4`` for the shear ``s``.
    """
    from ..raster.cpu import squared_error_grad, target_blocks
    from .init import shape_from_chol, shape_grad

    if g.count == 0 or sweeps <= 0:
        return g
    blocks = target_blocks(target[None])
    counts = torch.tensor([g.count])
    qg = quantize(g, q)
    if not np.array_equal(morton_order(g, q.position_bits), np.arange(g.count)):
        raise ValueError("refine_shape_codes needs Gaussians in Morton order")
    s_scale, _, s_shear = (float(s) for s in qg.steps[:3])
    unit = np.array([math.log(2.0) * s_scale, s_shear, math.log(2.0) * s_scale])  # code step in (ln l11, s, ln l22)
    field_of = (0, 2, 1)  # the code row of each shape parameter
    colors = torch.as_tensor(g.colors)
    rng = np.random.default_rng(seed)

    def evaluate(chol: torch.Tensor) -> tuple[float, np.ndarray]:
        sse, _, g_chol, _ = squared_error_grad(torch.as_tensor(g.means)[None], chol[None], colors[None], g.width,
                                               g.height, counts, blocks)
        grad = shape_grad(g_chol[0], chol, shape_from_chol(chol))
        return 0.5 * float(sse[0]), 0.5 * grad.double().numpy()

    codes = qg.codes.copy()
    chol = torch.as_tensor(g.chol)
    best_loss, grad = evaluate(chol)
    for _ in range(sweeps):
        c = chol.double().numpy()
        area = np.abs(c[:, 0] * c[:, 2]) * (colors.double().numpy() ** 2).sum(1)
        s2 = (c[:, 1] / c[:, 2]) ** 2
        curv = np.stack([area * math.pi * (3 + s2) / 4, area * math.pi / 4, area * math.pi * (3 + s2) / 4], 1)
        gain = np.concatenate([grad * unit + 0.5 * curv * unit ** 2, -grad * unit + 0.5 * curv * unit ** 2], 1)
        choice = gain.argmin(1)
        pick = (gain[np.arange(g.count), choice] < 0) & (rng.random(g.count) < share)
        if not pick.any():
            break
        trial_codes = codes.copy()
        for m in range(6):
            sel = pick & (choice == m)
            trial_codes[field_of[m % 3], sel] += 1 if m < 3 else -1
        trial = type(qg)(qg.width, qg.height, qg.position_bits, qg.color_transform, qg.ix, qg.iy, qg.offsets,
                         qg.steps, trial_codes)
        trial_chol = torch.as_tensor(dequantize(trial).chol)
        loss, trial_grad = evaluate(trial_chol)
        if loss >= best_loss:
            break
        codes, chol, best_loss, grad = trial_codes, trial_chol, loss, trial_grad
    return GaussianImage(g.width, g.height, g.means, chol, colors)
