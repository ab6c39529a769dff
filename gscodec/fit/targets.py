"""Small image helpers for the fitter: input normalisation, resizing for benchmarks, blurs.

Loading files is not the fitter's job; these helpers only convert what callers
already hold (float tensors or uint8 arrays) into the float32 ``(H, W, 3)``
targets in ``[0, 1]`` that the optimizer works on.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from numba import njit, prange


def as_target(image) -> torch.Tensor:
    """``image`` as a float32 ``(H, W, 3)`` CPU tensor in ``[0, 1]``.

    Accepts a torch tensor or numpy array of shape ``(H, W, 3)``, ``(H, W, 4)``
    (alpha dropped), ``(H, W, 1)`` or ``(H, W)`` (grey, repeated); integer
    arrays are read as 8-bit (``/ 255``), floating arrays as ``[0, 1]`` (clamped).
    A PIL image is accepted as well.
    """
    if hasattr(image, "convert") and hasattr(image, "size") and not isinstance(image, (np.ndarray, torch.Tensor)):
        image = np.asarray(image.convert("RGB"))
    if isinstance(image, np.ndarray):
        integer = np.issubdtype(image.dtype, np.integer) or image.dtype == np.bool_
        if image.dtype == np.uint16:
            t = torch.from_numpy(image.astype(np.float32) / 65535.0)
            integer = False
        else:
            t = torch.from_numpy(np.ascontiguousarray(image).astype(np.float32))
    elif isinstance(image, torch.Tensor):
        integer = not image.is_floating_point()
        t = image.detach().to(device="cpu", dtype=torch.float32)
    else:
        raise TypeError(f"image must be a torch.Tensor or numpy array, got {type(image).__name__}")
    if integer:
        t = t / 255.0
    if t.ndim == 2:
        t = t[..., None]
    if t.ndim != 3:
        raise ValueError(f"image must have shape (H, W, 3), (H, W, 1) or (H, W); got {tuple(t.shape)}")
    if t.shape[2] == 1:
        t = t.expand(-1, -1, 3)
    elif t.shape[2] == 4:
        t = t[..., :3]
    elif t.shape[2] != 3:
        raise ValueError(f"image must have 1, 3 or 4 channels, got {t.shape[2]}")
    if t.shape[0] < 1 or t.shape[1] < 1:
        raise ValueError(f"image must not be empty, got {tuple(t.shape)}")
    if not bool(torch.isfinite(t).all()):
        raise ValueError("image contains NaN or infinite values")
    return t.clamp(0.0, 1.0).contiguous()


def resize_center_crop(image: np.ndarray, size: int = 224) -> np.ndarray:
    """uint8 ``(size, size, 3)``: shorter side resized to ``size`` (Lanczos), then centre-cropped."""
    from PIL import Image

    if isinstance(image, np.ndarray):
        arr = image
        if arr.ndim == 2:
            arr = np.repeat(arr[..., None], 3, axis=2)
        pil = Image.fromarray(np.ascontiguousarray(arr[..., :3]))
    else:
        pil = image.convert("RGB")
    w, h = pil.size
    scale = size / min(w, h)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    pil = pil.resize((nw, nh), Image.LANCZOS)
    left, top = (nw - size) // 2, (nh - size) // 2
    return np.asarray(pil.crop((left, top, left + size, top + size)).convert("RGB"))


@njit(cache=True, parallel=True)
def _separable_blur(x: np.ndarray, k: np.ndarray, out: np.ndarray) -> None:
    """``out (P, H, W)``: every plane of ``x`` convolved with the odd kernel ``k`` along rows, then columns; each
    pass divided by the kernel mass inside the image, so taps that fall off an edge do not darken it."""
    planes, h, w = x.shape
    r = k.shape[0] // 2
    mass_w = np.zeros(w, dtype=np.float32)
    mass_h = np.zeros(h, dtype=np.float32)
    for t in range(k.shape[0]):
        for j in range(max(0, r - t), min(w, w + r - t)):
            mass_w[j] += k[t]
        for i in range(max(0, r - t), min(h, h + r - t)):
            mass_h[i] += k[t]
    rows = np.empty_like(x)
    for task in prange(planes * h):
        p = task // h
        i = task - p * h
        acc = np.zeros(w, dtype=np.float32)
        for t in range(k.shape[0]):
            kt = k[t]
            for j in range(max(0, r - t), min(w, w + r - t)):
                acc[j] += kt * x[p, i, j + t - r]
        for j in range(w):
            rows[p, i, j] = acc[j] / mass_w[j]
    for task in prange(planes * h):
        p = task // h
        i = task - p * h
        acc = np.zeros(w, dtype=np.float32)
        for t in range(max(0, r - i), min(k.shape[0], h + r - i)):
            kt = k[t]
            src = i + t - r
            for j in range(w):
                acc[j] += kt * rows[p, src, j]
        for j in range(w):
            out[p, i, j] = acc[j] / mass_h[i]


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of ``(B, C, H, W)`` float32, normalised at the edges.

    Taps that fall outside the image are dropped and the rest renormalised
    (the blur divided by the blurred all-ones image), so a constant image stays
    constant. From ``sigma`` = 4 px on (density maps) the blur runs on a
    ``sigma // 2``-times smaller average-pooled copy and is interpolated back
    (bilinear): 5-7x cheaper, and the result is that smooth anyway.
    """
    if sigma <= 0:
        return x
    if sigma >= 4:
        f = int(sigma // 2)
        h, w = x.shape[2], x.shape[3]
        small = F.avg_pool2d(x, f, ceil_mode=True)
        return F.interpolate(gaussian_blur(small, sigma / f), size=(h, w), mode="bilinear", align_corners=False)
    radius = max(1, int(math.ceil(3 * sigma)))
    k = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    k = (k / k.sum()).astype(np.float32)
    b, c, h, w = x.shape
    planes = x.detach().to(device="cpu", dtype=torch.float32).reshape(b * c, h, w).contiguous().numpy()
    out = np.empty_like(planes)
    _separable_blur(planes, k, out)
    return torch.from_numpy(out).reshape(b, c, h, w).to(device=x.device, dtype=x.dtype)


def luminance(x: torch.Tensor) -> torch.Tensor:
    """Rec. 709 luminance of ``(..., 3)``."""
    return 0.2126 * x[..., 0] + 0.7152 * x[..., 1] + 0.0722 * x[..., 2]


__all__ = ["as_target", "gaussian_blur", "luminance", "resize_center_crop"]
