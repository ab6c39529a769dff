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
* ``refit_iters``: conjugate-gradient steps of the colour refit for the snapped geometry
  (every colour solve is Jacobi-preconditioned, :func:`gscodec.fit.init.solve_colors`,
  which let levels 1-4 halve their CG counts: on 6 development photos at
  level 4, -5.6% BD-rate with the former counts and -4.7% with half, about
  6% faster);
* ``code_sweeps``: sweeps of the colour-code refinement (:mod:`gscodec.fit.codes`);
* ``event_color_iters``, ``final_color_iters``: conjugate-gradient colour steps
  after each densify/prune event and after the last Adam step;
* ``grid_sweeps``: sweeps that move positions to neighbouring points of the
  file's grid, then as many that move shape codes by one step, where that
  lowers the error (:func:`gscodec.fit.codes.refine_position_codes`,
  :func:`gscodec.fit.codes.refine_shape_codes`). On four textured 384x240
  crops at the former level 3 (330 steps): positions +0.38 dB at 0.008 and +0.55 dB at 0.03
  Gaussians/px, shapes +0.26 / +0.39 dB more, at the same rate; 16 sweeps
  with 60% of the moves per sweep beat 8 or 24 with 30%;
* ``polish_iters``: Adam steps on all parameters after the spare Gaussians are
  dropped, from fresh moments at small constant rates
  (:attr:`gscodec.fit.FitConfig.polish_iters`). On 6 development photos at
  level 4 (0.002-0.03 Gaussians/px, paired, with the budget-scaled L1 weight
  of :func:`gscodec.fit.optimize.color_l1_weight` in both), 60 steps gave
  -3.8% BD-rate (+0.12 to +0.23 dB per density) for 10-22% more time; at
  224x224 with 900 Gaussians, batched, 30 steps gave +0.14 dB and 60 +0.23 dB
  for 6-17% and 20-25% more time. Levels 1-4 run none, which keeps the
  default's 224x224 time under 0.5 s per image; levels 5-9 run 100-300;
* ``events``, ``events_until``, ``densify_events``: densify/prune events, the
  share of the steps by which they are done, and how many of them add
  Gaussians (the rest relocate the faint ones). Longer fits gain from more,
  later relocation: about one event per 35-50 steps (on textured 384x240
  crops at 0.008 Gaussians/px, level 5 with 8 events up to 70% gained
  +0.48 dB over 4 up to 50%, the former 330-step level 3 with 6 up to 60%
  +0.26 dB, level 9 with 16 (6 densifying) +0.08 dB over 8; the former
  170-step level 1 lost 0.06 dB with 8).

The default, level 4, keeps 224x224 crops with 900 Gaussians above 32 dB
(33.08 dB in 0.45 s per image, batched, on an idle 2-core machine) and the
development photos' BD-rate against JPEG clear of -46% (-52.3%; level 3
-50.2%); level 5 is the former default's row, with a 100-step polish, and the
first level ahead of AVIF on the development photos (-9.8%). Levels 1-3 sit below it
(120-230 steps); level 1 takes 1.1-1.3 s for a 768x512 photo at 0.008
Gaussians/px (-44.5% against JPEG on the development photos). The measured cost and quality of every level are in the
README (``benchmarks/bench_effort.py``).
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Mapping

DEFAULT_EFFORT = 4
"""The level ``FitConfig`` and ``gsi encode`` use when none is given."""

EFFORT_FIELDS: tuple[str, ...] = ("iterations", "coarse", "refit_shape_iters", "refit_iters", "code_sweeps",
                                   "event_color_iters", "final_color_iters", "events", "events_until",
                                   "densify_events", "grid_sweeps", "polish_iters")
"""The :class:`gscodec.fit.FitConfig` fields an effort level sets, in the order of the table below."""

_TABLE: dict[int, tuple[str, tuple[float | int, ...]]] = {
    #     name         iters  coarse shape  cg  sweeps event final events until densify grid polish
    1: ("lightning", (120,   0.55,  0,     6,   4,     2,    6,    4,     0.5,  3,      6,      0)),
    2: ("swift",     (190,   0.5,   20,    8,   6,     2,    6,    4,     0.5,  3,      8,      0)),
    3: ("quick",     (230,   0.45,  30,    10,  8,     2,    8,    5,     0.55, 4,      10,     0)),
    4: ("balanced",  (280,   0.4,   40,    10,  8,     2,    8,    6,     0.6,  4,      12,     0)),
    5: ("thorough",  (600,   0.3,   110,   40,  16,    5,    20,   8,     0.7,  4,      16,     100)),
    6: ("careful",   (750,   0.25,  150,   40,  24,    5,    20,   8,     0.7,  4,      24,     150)),
    7: ("slow",      (950,   0.2,   200,   40,  24,    5,    20,   8,     0.7,  4,      32,     200)),
    8: ("slower",    (1300,  0.2,   250,   60,  32,    5,    30,   8,     0.7,  4,      32,     250)),
    9: ("placebo",   (1800,  0.15,  300,   80,  48,    5,    40,   16,    0.7,  6,      48,     300)),
}

EFFORTS: Mapping[int, Mapping[str, float | int]] = MappingProxyType(
    {level: MappingProxyType(dict(zip(EFFORT_FIELDS, row))) for level, (_, row) in _TABLE.items()})
"""Fitter settings per effort level (read-only)."""

EFFORT_NAMES: Mapping[int, str] = MappingProxyType({level: name for level, (name, _) in _TABLE.items()})
"""A short name per level, for help texts and reports."""


def effort_row(effort: int) -> Mapping[str, float | int]:
    """The settings of level ``effort``; ``ValueError`` naming the valid levels for any other value."""
    if isinstance(effort, bool) or not isinstance(effort, int) or effort not in EFFORTS:
        raise ValueError(f"effort must be an integer from {min(EFFORTS)} to {max(EFFORTS)}, got {effort!r}")
    return EFFORTS[effort]


__all__ = ["DEFAULT_EFFORT", "EFFORTS", "EFFORT_FIELDS", "EFFORT_NAMES", "effort_row"]
