"""Effort levels: how much work the fitter spends per image, 1 (fastest) to 9 (slowest).

Like cjxl's ``-e``, avifenc's ``--speed`` and cwebp's ``-m``: each level is a
named row of fitter settings (:data:`EFFORTS`), kept as data, and
:class:`gscodec.fit.FitConfig` takes its unset fields from the row of its
``effort``. A field given explicitly (``FitConfig(effort=3, iterations=900)``,
``gsi encode --effort 3 --iterations 900``) overrides the row; the rest of the
row still applies.

Fields of a row:

* ``iterations``: Adam steps of the float fit;
* ``coarse``: the share of them run at half resolution (each about a third of
  the cost of a full-size step);
* ``refit_shape_iters``: Adam steps on shapes and colours with the positions
  on the file's grid (the quantization-aware end);
* ``refit_iters``: conjugate-gradient steps of the colour refit for the snapped geometry;
* ``code_sweeps``: sweeps of the colour-code refinement (:mod:`gscodec.fit.codes`).

The measured cost and quality of every level are in the README
(``benchmarks/bench_effort.py``).
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Mapping

DEFAULT_EFFORT = 5
"""The level ``FitConfig`` and ``gsi encode`` use when none is given."""

_ROWS: dict[int, tuple[str, dict[str, float | int]]] = {
    1: ("lightning", dict(iterations=80, coarse=0.6, refit_shape_iters=0, refit_iters=8, code_sweeps=2)),
    2: ("swift", dict(iterations=140, coarse=0.5, refit_shape_iters=0, refit_iters=10, code_sweeps=4)),
    3: ("quick", dict(iterations=200, coarse=0.5, refit_shape_iters=20, refit_iters=20, code_sweeps=8)),
    4: ("fast", dict(iterations=280, coarse=0.4, refit_shape_iters=40, refit_iters=30, code_sweeps=12)),
    5: ("default", dict(iterations=360, coarse=0.35, refit_shape_iters=60, refit_iters=40, code_sweeps=16)),
    6: ("careful", dict(iterations=500, coarse=0.3, refit_shape_iters=100, refit_iters=40, code_sweeps=24)),
    7: ("slow", dict(iterations=700, coarse=0.25, refit_shape_iters=150, refit_iters=40, code_sweeps=24)),
    8: ("slower", dict(iterations=1000, coarse=0.2, refit_shape_iters=200, refit_iters=60, code_sweeps=32)),
    9: ("placebo", dict(iterations=1500, coarse=0.2, refit_shape_iters=300, refit_iters=80, code_sweeps=48)),
}

EFFORTS: Mapping[int, Mapping[str, float | int]] = MappingProxyType(
    {level: MappingProxyType(row) for level, (_, row) in _ROWS.items()})
"""Fitter settings per effort level (read-only)."""

EFFORT_NAMES: Mapping[int, str] = MappingProxyType({level: name for level, (name, _) in _ROWS.items()})
"""A short name per level, for help texts and reports."""

EFFORT_FIELDS: tuple[str, ...] = tuple(_ROWS[DEFAULT_EFFORT][1])
"""The :class:`gscodec.fit.FitConfig` fields an effort level sets."""


def effort_row(effort: int) -> Mapping[str, float | int]:
    """The settings of level ``effort``; ``ValueError`` naming the valid levels for any other value."""
    if isinstance(effort, bool) or not isinstance(effort, int) or effort not in EFFORTS:
        raise ValueError(f"effort must be an integer from {min(EFFORTS)} to {max(EFFORTS)}, got {effort!r}")
    return EFFORTS[effort]


__all__ = ["DEFAULT_EFFORT", "EFFORTS", "EFFORT_FIELDS", "EFFORT_NAMES", "effort_row"]
