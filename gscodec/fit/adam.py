"""One Adam step, shared by the fitter's main loop and the quantization-aware shape fine-tune."""

from __future__ import annotations

import torch


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


__all__ = ["adam_step"]
