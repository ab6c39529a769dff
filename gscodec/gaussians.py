"""The Gaussian image: the one public type every part of gscodec passes around.

Coordinate convention (normative, see ``spec/gsi.md``):

* Positions are in pixels of the stored image. ``x`` grows to the right, ``y``
  grows downwards, and ``(0, 0)`` is the top-left *corner* of the image, so
  the centre of pixel (row ``i``, column ``j``) is ``(j + 0.5, i + 0.5)``.
* The covariance of Gaussian ``k`` is ``L Lᵀ`` with the lower-triangular
  Cholesky factor ``L = [[l11, 0], [l21, l22]]`` (pixels), ``l11 > 0``,
  ``l22 > 0``.
* Colours are RGB in display units (``1.0`` is 8-bit 255) and unbounded: the
  image is the plain sum of all Gaussians, so a colour may be negative.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from .limits import MAX_DIMENSION, MAX_GAUSSIANS

if TYPE_CHECKING:
    import torch


class InvalidGaussiansError(ValueError):
    """The arrays given to :class:`GaussianImage` do not describe a valid image."""


class GaussianTensors(NamedTuple):
    """The parameters of a :class:`GaussianImage` as torch tensors (:meth:`GaussianImage.tensors`)."""

    means: "torch.Tensor"
    """``(N, 2)`` float32 centres ``(x, y)`` in pixels."""
    chol: "torch.Tensor"
    """``(N, 3)`` float32 Cholesky factors ``(l11, l21, l22)`` in pixels."""
    colors: "torch.Tensor"
    """``(N, 3)`` float32 RGB amplitudes."""


_REAL_INTS = (np.dtype(np.int32), np.dtype(np.int64))


def _as_float32(name: str, value: Any) -> np.ndarray:
    """``value`` (a numpy array, a torch tensor on any device, or nested lists of numbers) as a C-contiguous
    float32 numpy array; no copy when it already is one (a CPU float32 tensor is viewed, not copied)."""
    torch = sys.modules.get("torch")  # a tensor can only exist once torch is imported: never import it here
    if torch is not None and isinstance(value, torch.Tensor):
        if not (value.is_floating_point() or value.dtype in (torch.int32, torch.int64)):
            raise InvalidGaussiansError(f"{name} must be a real tensor, got {value.dtype}")
        return value.detach().to(device="cpu", dtype=torch.float32).contiguous().numpy()
    try:
        array = np.asarray(value)
    except (ValueError, TypeError) as exc:
        raise InvalidGaussiansError(f"{name} is not an array of numbers: {exc}") from None
    if not (array.dtype.kind == "f" or array.dtype in _REAL_INTS):
        raise InvalidGaussiansError(f"{name} must be a real array (float, int32 or int64), got {array.dtype}")
    return np.ascontiguousarray(array, dtype=np.float32)


@dataclass(frozen=True, eq=False)
class GaussianImage:
    """A ``width`` x ``height`` image stored as ``N`` coloured 2D Gaussians.

    Attributes:
        width: stored width in pixels, ``1..MAX_DIMENSION``.
        height: stored height in pixels, ``1..MAX_DIMENSION``.
        means: ``(N, 2)`` float32 numpy array, ``(x, y)`` centres in pixels.
        chol: ``(N, 3)`` float32 numpy array, ``(l11, l21, l22)`` Cholesky
            factor of the covariance in pixels; ``l11`` and ``l22`` strictly positive.
        colors: ``(N, 3)`` float32 numpy array, RGB amplitude (1.0 = full scale).

    The constructor takes numpy arrays, nested lists or torch tensors (detached
    and moved to the CPU) and stores C-contiguous float32 numpy arrays, without
    a copy where the input already is one. It validates shapes, finiteness and
    positivity and raises :class:`InvalidGaussiansError` otherwise.
    :meth:`tensors` gives zero-copy torch views for the fitter, the CLIP head
    or a GPU; nothing else here needs torch.
    """

    width: int
    height: int
    means: np.ndarray
    chol: np.ndarray
    colors: np.ndarray

    def __post_init__(self) -> None:
        for name in ("width", "height"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise InvalidGaussiansError(f"{name} must be an int, got {type(value).__name__}")
            if not 1 <= value <= MAX_DIMENSION:
                raise InvalidGaussiansError(f"{name}={value} is outside 1..{MAX_DIMENSION}")
            object.__setattr__(self, name, int(value))
        arrays = {name: _as_float32(name, getattr(self, name)) for name in ("means", "chol", "colors")}
        n = arrays["means"].shape[0] if arrays["means"].ndim == 2 else -1
        for name, width in (("means", 2), ("chol", 3), ("colors", 3)):
            shape = tuple(arrays[name].shape)
            if len(shape) != 2 or shape[1] != width or shape[0] != n:
                raise InvalidGaussiansError(
                    f"{name} must have shape (N, {width}) with the same N for all arrays; got {shape}"
                )
        if n > MAX_GAUSSIANS:
            raise InvalidGaussiansError(f"{n} Gaussians exceed the limit of {MAX_GAUSSIANS}")
        for name, value in arrays.items():
            if not np.isfinite(value).all():
                raise InvalidGaussiansError(f"{name} contains NaN or infinite values")
            object.__setattr__(self, name, value)
        chol = arrays["chol"]
        if n and not ((chol[:, 0] > 0).all() and (chol[:, 2] > 0).all()):
            raise InvalidGaussiansError("chol diagonal (l11, l22) must be strictly positive")

    @property
    def count(self) -> int:
        """Number of Gaussians ``N``."""
        return int(self.means.shape[0])

    def __len__(self) -> int:
        return self.count

    def __repr__(self) -> str:
        return f"GaussianImage(width={self.width}, height={self.height}, count={self.count})"

    def tensors(self, device: "torch.device | str | None" = None) -> GaussianTensors:
        """``(means, chol, colors)`` as float32 torch tensors (imports torch).

        On the CPU (``device`` ``None`` or ``"cpu"``) they are zero-copy views
        of the arrays (:func:`torch.from_numpy`): writing to one writes to the
        image. On another device they are copies there.
        """
        import torch

        views = GaussianTensors(torch.from_numpy(self.means), torch.from_numpy(self.chol),
                                torch.from_numpy(self.colors))
        if device is None or torch.device(device).type == "cpu":
            return views
        return GaussianTensors(*(t.to(device) for t in views))

    def params(self) -> np.ndarray:
        """``(N, 8)`` float32 ``x, y, l11, l21, l22, r, g, b`` (a new array)."""
        return np.concatenate([self.means, self.chol, self.colors], axis=1)

    def covariance(self) -> np.ndarray:
        """``(N, 2, 2)`` float32 covariance matrices ``L Lᵀ`` in pixels²."""
        l11, l21, l22 = self.chol[:, 0], self.chol[:, 1], self.chol[:, 2]
        sxx = l11 * l11
        sxy = l11 * l21
        syy = l21 * l21 + l22 * l22
        return np.stack([np.stack([sxx, sxy], -1), np.stack([sxy, syy], -1)], -2)

    def scaled(self, width: int, height: int) -> "GaussianImage":
        """The same continuous image mapped onto a ``width`` x ``height`` pixel grid.

        Means scale by ``(sx, sy) = (width / self.width, height / self.height)``
        and ``L`` becomes ``diag(sx, sy) @ L``, which is again lower-triangular
        with a positive diagonal (products in float32).
        """
        sx = width / self.width
        sy = height / self.height
        means = self.means * np.array([sx, sy], dtype=np.float32)
        chol = self.chol * np.array([sx, sy, sy], dtype=np.float32)
        return GaussianImage(width, height, means, chol, self.colors)

    def permuted(self, order: Any) -> "GaussianImage":
        """The same image with its Gaussians reordered by the integer index array ``order`` ``(N,)``
        (numpy, a CPU tensor or a list)."""
        index = np.asarray(order.cpu() if hasattr(order, "cpu") else order)
        if index.dtype.kind not in "iu" or index.shape != (self.count,):
            raise ValueError(f"order must be ({self.count},) integer indices, got {index.dtype} {index.shape}")
        return GaussianImage(self.width, self.height, self.means[index], self.chol[index], self.colors[index])

    def equal(self, other: "GaussianImage") -> bool:
        """Bit-for-bit equality of size and all parameters, in order."""
        return (
            self.width == other.width
            and self.height == other.height
            and np.array_equal(self.means, other.means)
            and np.array_equal(self.chol, other.chol)
            and np.array_equal(self.colors, other.colors)
        )


__all__ = ["GaussianImage", "GaussianTensors", "InvalidGaussiansError"]
