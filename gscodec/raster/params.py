"""The rasterizer's inputs, checked the same way by every backend (see :func:`gscodec.raster.rasterize_sum`)."""

from __future__ import annotations

import torch

def check_inputs(means: torch.Tensor, chol: torch.Tensor, colors: torch.Tensor, width: int, height: int,
                 counts: torch.Tensor | None) -> tuple[int, int, torch.Tensor]:
    """``(width, height, counts)`` of a valid call: the sizes as ints, ``counts`` as a ``(B,)`` int64 tensor on
    the device of ``means`` clamped to ``0..N`` (all ``N`` when ``None``; ``B = 1`` unbatched).

    Raises ``ValueError`` for shapes other than ``(N, 2|3|3)`` or ``(B, N, 2|3|3)``, tensors on two devices, a
    negative size or ``counts`` of another shape.
    """
    if means.ndim not in (2, 3):
        raise ValueError(f"means must have shape (N, 2) or (B, N, 2), got {tuple(means.shape)}")
    lead = tuple(means.shape[:-1])
    for name, value, size in (("means", means, 2), ("chol", chol, 3), ("colors", colors, 3)):
        if tuple(value.shape) != (*lead, size):
            raise ValueError(f"{name} must have shape {(*lead, size)}, got {tuple(value.shape)}")
        if value.device != means.device:
            raise ValueError(f"{name} is on {value.device}, means on {means.device}")
    width, height = int(width), int(height)
    if width < 0 or height < 0:
        raise ValueError(f"width and height must be non-negative, got {width}x{height}")
    nb = lead[0] if means.ndim == 3 else 1
    n = lead[-1]
    if counts is None:
        return width, height, torch.full((nb,), n, dtype=torch.int64, device=means.device)
    counts_t = torch.as_tensor(counts).to(device=means.device, dtype=torch.int64).reshape(-1).clamp(0, n)
    if counts_t.shape != (nb,):
        raise ValueError(f"counts must have shape ({nb},), got {tuple(counts_t.shape)}")
    return width, height, counts_t


__all__ = ["check_inputs"]
