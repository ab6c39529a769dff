"""The backward chain rule from a Gaussian's weighted gradient sums to its position and Cholesky factor.

Both gradient backends reduce, per Gaussian, the sums ``S[z1]``, ``S[z2]``,
``S[z1 z1]``, ``S[z1 z2]``, ``S[z2 z2]`` of ``w * (G . colour) * z`` products
over its footprint (``z = L^-1 (p - mu)``, ``w`` the weight, ``G`` the upstream
gradient); the gradients are linear in them. :func:`chain_rule` is plain
arithmetic, so it serves numbers inside the numba kernels (:mod:`.backward`)
and tensors in the Triton backend (:mod:`.triton`) alike.
"""

from __future__ import annotations

from typing import TypeVar

T = TypeVar("T")


def chain_rule(l11: T, l22: T, r: T, s1: T, s2: T, s11: T, s12: T, s22: T) -> tuple[T, T, T, T, T]:
    """``(dL/dx, dL/dy, dL/dl11, dL/dl21, dL/dl22)`` from the sums, with ``r = l21 / l22``:
    ``dL/dx = -2/l11 (S[z1] - r S[z2])``, ``dL/dy = -2/l22 S[z2]``,
    ``dL/dl11 = -2/l11 (S[z1 z1] - r S[z1 z2])``, ``dL/dl21 = -2/l22 S[z1 z2]``, ``dL/dl22 = -2/l22 S[z2 z2]``."""
    return (-2.0 / l11 * (s1 - r * s2), -2.0 / l22 * s2,
            -2.0 / l11 * (s11 - r * s12), -2.0 / l22 * s12, -2.0 / l22 * s22)


__all__ = ["chain_rule"]
