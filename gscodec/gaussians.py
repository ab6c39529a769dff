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

from dataclasses import dataclass

import numpy as np
import torch

from .limits import MAX_DIMENSION, MAX_GAUSSIANS


class InvalidGaussiansError(ValueError):
    """The arrays given to :class:`GaussianImage` do not describe a valid image."""


@dataclass(frozen=True, eq=False)
class GaussianImage:
    """A ``width`` x ``height`` image stored as ``N`` coloured 2D Gaussians.

    Attributes:
        width: stored width in pixels, ``1..MAX_DIMENSION``.
        height: stored height in pixels, ``1..MAX_DIMENSION``.
        means: ``(N, 2)`` float32, ``(x, y)`` centres in pixels.
        chol: ``(N, 3)`` float32, ``(l11, l21, l22)`` Cholesky factor of the
            covariance in pixels; ``l11`` and ``l22`` strictly positive.
        colors: ``(N, 3)`` float32, RGB amplitude (1.0 = full scale).

    Tensors are detached CPU float32 after construction; the constructor
    validates shapes, finiteness and positivity and raises
    :class:`InvalidGaussiansError` otherwise.
    """

    width: int
    height: int
    means: torch.Tensor
    chol: torch.Tensor
    colors: torch.Tensor

    def __post_init__(self) -> None:
        for name in ("width", "height"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise InvalidGaussiansError(f"{name} must be an int, got {type(value).__name__}")
            if not 1 <= value <= MAX_DIMENSION:
                raise InvalidGaussiansError(f"{name}={value} is outside 1..{MAX_DIMENSION}")
        arrays = {}
        for name in ("means", "chol", "colors"):
            value = getattr(self, name)
            if not isinstance(value, torch.Tensor):
                value = torch.as_tensor(value)
            if not (value.is_floating_point() or value.dtype in (torch.int32, torch.int64)):
                raise InvalidGaussiansError(f"{name} must be a real tensor, got {value.dtype}")
            arrays[name] = value.detach().to(device="cpu", dtype=torch.float32).contiguous()
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
            # numpy views of the CPU tensors: far cheaper than torch ops on small arrays
            if not np.isfinite(value.numpy()).all():
                raise InvalidGaussiansError(f"{name} contains NaN or infinite values")
            object.__setattr__(self, name, value)
        chol = arrays["chol"].numpy()
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

    def covariance(self) -> torch.Tensor:
        """``(N, 2, 2)`` covariance matrices ``L Lᵀ`` in pixels²."""
        l11, l21, l22 = self.chol.unbind(-1)
        sxx = l11 * l11
        sxy = l11 * l21
        syy = l21 * l21 + l22 * l22
        return torch.stack([torch.stack([sxx, sxy], -1), torch.stack([sxy, syy], -1)], -2)

    def scaled(self, width: int, height: int) -> "GaussianImage":
        """The same continuous image mapped onto a ``width`` x ``height`` pixel grid.

        Means scale by ``(sx, sy) = (width / self.width, height / self.height)``
        and ``L`` becomes ``diag(sx, sy) @ L``, which is again lower-triangular
        with a positive diagonal.
        """
        sx = width / self.width
        sy = height / self.height
        means = self.means * torch.tensor([sx, sy], dtype=torch.float32)
        chol = self.chol * torch.tensor([sx, sy, sy], dtype=torch.float32)
        return GaussianImage(width, height, means, chol, self.colors)

    def permuted(self, order: torch.Tensor) -> "GaussianImage":
        """The same image with its Gaussians reordered by the index tensor ``order`` ``(N,)``."""
        return GaussianImage(self.width, self.height, self.means[order], self.chol[order], self.colors[order])

    def equal(self, other: "GaussianImage") -> bool:
        """Bit-for-bit equality of size and all parameters, in order."""
        return (
            self.width == other.width
            and self.height == other.height
            and torch.equal(self.means, other.means)
            and torch.equal(self.chol, other.chol)
            and torch.equal(self.colors, other.colors)
        )
