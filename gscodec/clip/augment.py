"""Augmentations in the Gaussian domain, each with its exact pixel-domain counterpart.

A :class:`View` is a crop box (which also shifts and zooms), an optional
horizontal flip and a 3x3 colour matrix. :func:`apply_gaussians` applies it to
the parameters of a :class:`~gscodec.gaussians.GaussianImage` (a few
arithmetic operations per Gaussian, no rendering); :func:`apply_pixels`
applies the same view to the original pixels, which is what the teacher sees
for the target. Rendering the transformed Gaussians equals transforming the
render inside the frame: exactly for flips, shifts by whole pixels and colour
matrices (the image is linear in the colours), up to resampling for zooms, and
up to 8-bit clipping for colour matrices that push values past full scale.
Outside the frame the two differ: the pixels there are black, while the
Gaussians' sum goes on past the border (a fit constrains it only inside), so
:func:`random_view` keeps its crop box inside the image.

Conventions (``spec/gsi.md``): positions in pixels with ``(0, 0)`` the top-left
corner (pixel ``j``'s centre is ``j + 0.5``), covariance ``L Lᵀ`` with
``L = [[l11, 0], [l21, l22]]``, colours RGB in display units.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..gaussians import GaussianImage

LUMA = (0.2126, 0.7152, 0.0722)
"""Rec. 709 luminance weights (the saturation matrix mixes towards this grey)."""

IDENTITY_COLOR: tuple[float, ...] = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)


@dataclass(frozen=True)
class View:
    """One augmentation of a ``width`` x ``height`` image.

    Attributes:
        box: ``(x0, y0, w, h)`` in source pixels: the part of the image that becomes the whole output
            (``(0, 0, width, height)``: no crop). May reach outside the image (a shift; outside is black).
        hflip: mirror left-right after the crop.
        color: row-major 3x3 matrix ``M``: ``rgb' = M @ rgb`` (9 floats).
    """

    box: tuple[float, float, float, float]
    hflip: bool = False
    color: tuple[float, ...] = IDENTITY_COLOR

    def to_list(self) -> list[float]:
        """14 floats: ``x0, y0, w, h, hflip, M (9)`` (the layout :meth:`from_list` reads)."""
        return [*map(float, self.box), float(self.hflip), *map(float, self.color)]

    @classmethod
    def from_list(cls, values) -> "View":
        """Inverse of :meth:`to_list`."""
        v = [float(x) for x in values]
        if len(v) != 14:
            raise ValueError(f"a view has 14 values, got {len(v)}")
        return cls((v[0], v[1], v[2], v[3]), v[4] >= 0.5, tuple(v[5:14]))

    @classmethod
    def identity(cls, width: int, height: int) -> "View":
        """The view that changes nothing."""
        return cls((0.0, 0.0, float(width), float(height)))

    @property
    def matrix(self) -> np.ndarray:
        """``(3, 3)`` float32 colour matrix."""
        return np.asarray(self.color, dtype=np.float32).reshape(3, 3)


def color_matrix(gain: float = 1.0, saturation: float = 1.0,
                 channel_gains: tuple[float, float, float] = (1.0, 1.0, 1.0)) -> tuple[float, ...]:
    """A linear colour transform: per-channel gains, then saturation (mix towards luminance), then a gain.

    Linear with no offset, so it maps a sum of Gaussians to a sum of Gaussians.
    """
    luma = np.asarray(LUMA, dtype=np.float64)
    sat = saturation * np.eye(3) + (1.0 - saturation) * np.outer(np.ones(3), luma)
    m = gain * sat @ np.diag(channel_gains)
    return tuple(float(x) for x in m.ravel())


def random_view(width: int, height: int, rng: np.random.Generator, *, min_area: float = 0.5,
                flip_p: float = 0.5, gain: tuple[float, float] = (0.75, 1.0),
                saturation: tuple[float, float] = (0.6, 1.2), channel: float = 0.06) -> View:
    """A random view: a crop of ``min_area..1`` of the area (same aspect) anywhere inside the image (so a shift
    and a zoom), a flip with probability ``flip_p`` and a colour jitter."""
    scale = float(np.sqrt(rng.uniform(min_area, 1.0)))
    w, h = width * scale, height * scale
    x0 = float(rng.uniform(0.0, width - w))
    y0 = float(rng.uniform(0.0, height - h))
    gains = tuple(float(g) for g in rng.uniform(1 - channel, 1 + channel, 3))
    col = color_matrix(float(rng.uniform(*gain)), float(rng.uniform(*saturation)), gains)  # type: ignore[arg-type]
    return View((x0, y0, w, h), bool(rng.random() < flip_p), col)


def apply_params(params: torch.Tensor, size: tuple[int, int], view: View, margin: float = 3.0) -> torch.Tensor:
    """``view`` applied to ``(N, 8)`` raw parameters ``x, y, l11, l21, l22, r, g, b`` of a ``size = (W, H)`` image.

    Crop: ``x' = (x - x0) W / w``, ``L' = diag(W / w, H / h) L`` (still lower-triangular); Gaussians whose
    centre lies more than ``margin`` standard deviations outside the output are dropped (at least one is kept).
    Flip: ``x' = W - x``, ``l21' = -l21``. Colour: ``rgb' = M rgb``. Returns ``(N', 8)`` float32.
    """
    width, height = size
    x0, y0, bw, bh = view.box
    sx, sy = width / bw, height / bh
    p = params.float().clone()
    p[:, 0] = (p[:, 0] - x0) * sx
    p[:, 1] = (p[:, 1] - y0) * sy
    p[:, 2] *= sx
    p[:, 3] *= sy
    p[:, 4] *= sy
    if view.hflip:
        p[:, 0] = width - p[:, 0]
        p[:, 3] = -p[:, 3]
    if view.color != IDENTITY_COLOR:
        p[:, 5:8] = p[:, 5:8] @ torch.from_numpy(view.matrix).T
    if (x0, y0, bw, bh) != (0.0, 0.0, float(width), float(height)) and len(p):
        sig_x = p[:, 2].abs()
        sig_y = torch.sqrt(p[:, 3] ** 2 + p[:, 4] ** 2)
        keep = ((p[:, 0] > -margin * sig_x) & (p[:, 0] < width + margin * sig_x)
                & (p[:, 1] > -margin * sig_y) & (p[:, 1] < height + margin * sig_y))
        if not bool(keep.any()):
            keep[0] = True
        p = p[keep]
    return p


def apply_gaussians(g: GaussianImage, view: View) -> GaussianImage:
    """``view`` applied to the parameters of ``g`` (same width and height)."""
    from .data import gaussians_to_params

    p = apply_params(gaussians_to_params(g), (g.width, g.height), view)
    q = p.numpy()
    return GaussianImage(g.width, g.height, q[:, 0:2].copy(), q[:, 2:5].copy(), q[:, 5:8].copy())


def apply_pixels(pixels: np.ndarray, view: View, out_size: tuple[int, int] | None = None) -> np.ndarray:
    """``view`` applied to ``(H, W, 3)`` uint8 pixels -> ``(H', W', 3)`` uint8, ``out_size = (W', H')``
    (default ``(W, H)``): bicubic resampling of the box, black outside the image, colour matrix in display
    units, rounded and clipped to 8 bits."""
    from PIL import Image

    height, width = pixels.shape[:2]
    out_w, out_h = out_size if out_size is not None else (width, height)
    x0, y0, bw, bh = view.box
    img = np.asarray(pixels[..., :3], dtype=np.uint8)
    if (x0, y0, bw, bh, out_w, out_h) != (0.0, 0.0, float(width), float(height), width, height):
        # Pad so that a box reaching outside the image samples black there.
        pad = int(np.ceil(max(0.0, -x0, -y0, x0 + bw - width, y0 + bh - height))) + 2
        padded = np.pad(img, ((pad, pad), (pad, pad), (0, 0))) if pad > 2 else img
        off = pad if pad > 2 else 0
        im = Image.fromarray(np.ascontiguousarray(padded))
        img = np.asarray(im.resize((out_w, out_h), Image.BICUBIC,
                                   box=(x0 + off, y0 + off, x0 + off + bw, y0 + off + bh)))
    if view.hflip:
        img = img[:, ::-1]
    if view.color != IDENTITY_COLOR:
        f = img.astype(np.float32) @ view.matrix.T
        img = np.floor(np.clip(f, 0.0, 255.0) + 0.5).astype(np.uint8)
    return np.ascontiguousarray(img)


__all__ = ["IDENTITY_COLOR", "LUMA", "View", "apply_gaussians", "apply_params", "apply_pixels", "color_matrix",
           "random_view"]
