"""The fitter: a photo to ``N`` coloured 2D Gaussians whose plain sum approximates it.

Public API::

    fit(image, config=FitConfig(), progress=None) -> FitResult
    fit_batch(images, config=FitConfig(), progress=None) -> list[FitResult]
    psnr(a, b) -> float
    EFFORTS, DEFAULT_EFFORT   # FitConfig(effort=1..9): the levels' fitter settings

See :mod:`gscodec.fit.optimize` for the algorithm, :mod:`gscodec.fit.init` for
the initializations and :mod:`gscodec.fit.refit` for the quantization-aware end.
"""

from .effort import DEFAULT_EFFORT, EFFORTS
from .optimize import FitConfig, FitResult, fit, fit_batch, psnr

__all__ = ["DEFAULT_EFFORT", "EFFORTS", "FitConfig", "FitResult", "fit", "fit_batch", "psnr"]
