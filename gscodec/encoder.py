"""The encoder: pixels in, `.gsi` bytes out, with its rate control and the metadata it writes.

:func:`encode_image` (``gscodec.encode_image``) encodes one image;
:func:`fit_images` is the path every driver shares (``gsi encode`` on files,
tar shards and the GPU, and the ``gsi`` codec of ``gsi bench``): same-size
images are fitted together, at most :data:`~gscodec.limits.MAX_FIT_PIXELS`
pixels per fit. Rate control, from :class:`EncoderSettings`:

* ``points`` Gaussians (default 900), or ``density`` Gaussians per pixel;
* ``bpp``: the count is estimated from the preset's typical bytes per Gaussian
  (:data:`BYTES_PER_GAUSSIAN`), and the image is fitted once more with a
  corrected count if the file misses the size by more than :data:`RATE_TOLERANCE`;
* ``target_psnr``: the fit stops :data:`PSNR_MARGIN` dB above it (quantized modes);
* ``quality``: a preset of :mod:`gscodec.presets`, ``auto`` (chosen per image
  from the density and the float fit's PSNR), or ``float16``/``float32``;
  :func:`encode_image` also takes a number 0..100 (:func:`gscodec.presets.quality_settings`:
  a density and a preset).

Each file's metadata names its ``source``, the fitted ``psnr``, the ``encoder`` and its ``settings``
(:meth:`EncoderSettings.describe`, which ``gsi encode`` compares before skipping an existing output).
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from . import __version__
from .extras import require

require("encode", "encoding (the fitter)")
from .files import error_text  # noqa: E402
from .fit import FitConfig, FitResult, fit, fit_batch  # noqa: E402
from .fit.effort import DEFAULT_EFFORT, effort_row  # noqa: E402
from .format import GsiError  # noqa: E402
from .format import encode as encode_gsi  # noqa: E402
from .imageio import image_to_rgb8, load_image, resize_for_clip  # noqa: E402
from .limits import MAX_DIMENSION, MAX_FIT_PIXELS, MAX_GAUSSIANS  # noqa: E402
from .presets import PRESETS, quality_settings, resolve_preset  # noqa: E402
from .quantize import Quantization  # noqa: E402

if TYPE_CHECKING:
    from PIL import Image

QUALITIES: dict[str, Quantization | None] = {"auto": None, **PRESETS, "float16": None, "float32": None}
"""``quality`` values: bits per quantized field, an unquantized float mode, or ``auto`` (the preset chosen per
image from the Gaussian density and the float fit's PSNR, :func:`gscodec.presets.preset_for_density`)."""

BYTES_PER_GAUSSIAN = {"auto": 5.0, "low": 4.4, "medium": 5.8, "high": 6.8, "max": 9.0, "float16": 16.1, "float32": 32.1}
"""Typical file bytes per Gaussian of each quality, measured by benchmarks/bench_quantization.py;
``bpp`` starts from it and corrects once from the real size."""

PSNR_MARGIN = 0.35
"""dB a ``target_psnr`` fit aims above its target to leave room for the typical quantization loss."""

RATE_TOLERANCE = 0.08
"""Relative miss of the ``bpp`` size that triggers one refit with a corrected Gaussian count."""

ENCODER = f"gscodec {__version__}"
"""The ``encoder`` metadata value (and the shard manifests' ``encoder``)."""

BACKENDS = ("cpu", "cuda")


class EncodeError(RuntimeError):
    """An image could not be encoded (the fit failed); the message says why."""


@dataclass(frozen=True)
class EncoderSettings:
    """How images are encoded; the defaults are ``gsi encode``'s. At most one of points, density and bpp counts:
    ``bpp`` wins over ``density``, which wins over ``points``."""

    points: int = 900
    density: float | None = None
    bpp: float | None = None
    effort: int | None = None
    iterations: int | None = None
    resize: int | None = None
    quality: str = "auto"
    seed: int = 0
    target_psnr: float | None = None
    backend: str = "cpu"  # the fitter's rasterizer: "cuda" fits on the GPU (see gscodec.fit.placement)
    format_version: int | None = None  # None: the spec's writer rule (the smaller of 1 and 2); 1 decodes faster

    def __post_init__(self) -> None:
        if not 1 <= self.points <= MAX_GAUSSIANS:
            raise ValueError(f"points must be in 1..{MAX_GAUSSIANS}, got {self.points}")
        if self.density is not None and not 0 < self.density <= 1:
            raise ValueError(f"density must be in (0, 1] Gaussians per pixel, got {self.density}")
        if self.bpp is not None and not 0 < self.bpp <= 64:
            raise ValueError(f"bpp must be in (0, 64] bits per pixel, got {self.bpp}")
        if self.quality not in QUALITIES:
            raise ValueError(f"unknown quality {self.quality!r}; valid: {', '.join(QUALITIES)}")
        if self.resize is not None and not 1 <= self.resize <= MAX_DIMENSION:
            raise ValueError(f"resize must be in 1..{MAX_DIMENSION}, got {self.resize}")
        if self.iterations is not None and self.iterations < 0:
            raise ValueError(f"iterations must be non-negative, got {self.iterations}")
        if self.target_psnr is not None and math.isnan(self.target_psnr):
            raise ValueError("target_psnr must be a number of dB, got nan")
        if self.bpp is not None and self.target_psnr is not None:
            raise ValueError("bpp and target_psnr both set the rate (a file size and a quality to stop at): give one")
        if self.backend not in BACKENDS:
            raise ValueError(f"unknown backend {self.backend!r}; valid: {', '.join(BACKENDS)}")
        if self.effort is not None:
            effort_row(self.effort)
        if self.format_version not in (None, 1, 2):
            raise ValueError(f"format_version must be 1, 2 or None (the smaller), got {self.format_version!r}")
        if self.format_version == 2 and self.mode != "quantized":
            raise ValueError(f"format version 2 holds only quantized files, not quality {self.quality!r}")

    @property
    def mode(self) -> str:
        return self.quality if self.quality in ("float16", "float32") else "quantized"

    @property
    def quantization(self) -> Quantization | str | None:
        """The fitter's quantization: ``None`` in a float mode; ``"auto"`` is chosen per image by the fitter
        from the density and the float fit's PSNR."""
        return resolve_preset(self.quality) if self.mode == "quantized" else None

    def describe(self) -> str:
        """The settings that shape the file, as the canonical text its ``settings`` metadata records, e.g.
        ``"points=900 effort=4 quantization=auto seed=0 format=auto"`` (the rate control that counts, the
        effort level even when it is the default, then ``iterations``, ``resize`` and ``psnr`` when given).
        ``backend`` is left out: CPU and GPU fits of the same settings are the same request."""
        if self.bpp is not None:
            rate = f"bpp={self.bpp:.6g}"
        elif self.density is not None:
            rate = f"density={self.density:.6g}"
        else:
            rate = f"points={self.points}"
        parts = [rate, f"effort={DEFAULT_EFFORT if self.effort is None else self.effort}"]
        if self.iterations is not None:
            parts.append(f"iterations={self.iterations}")
        if self.resize is not None:
            parts.append(f"resize={self.resize}")
        if self.target_psnr is not None:
            parts.append(f"psnr={self.target_psnr:.6g}")
        parts += [f"quantization={self.quality}", f"seed={self.seed}",
                  f"format={'auto' if self.format_version is None else self.format_version}"]
        return " ".join(parts)

    def target_bytes(self, width: int, height: int) -> int | None:
        """The ``bpp`` file size of a ``width`` x ``height`` image, if one was asked for."""
        return None if self.bpp is None else int(self.bpp * width * height / 8)

    def points_for(self, width: int, height: int) -> int:
        """The Gaussian budget of a ``width`` x ``height`` image."""
        if self.bpp is not None:
            per_gaussian = BYTES_PER_GAUSSIAN[self.quality]
            return int(min(MAX_GAUSSIANS, max(1, round((self.target_bytes(width, height) - 100) / per_gaussian))))
        if self.density is None:
            return self.points
        return int(min(MAX_GAUSSIANS, max(1, round(self.density * width * height))))

    def config(self, width: int, height: int, points: int | None = None) -> FitConfig:
        """The fitter's configuration for a ``width`` x ``height`` image (``points`` overrides the budget)."""
        points = points or self.points_for(width, height)
        quantization = self.quantization
        target = None if self.target_psnr is None else self.target_psnr + (PSNR_MARGIN if quantization else 0.0)
        kwargs: dict[str, Any] = dict(points=points,
                                      quantization=quantization, seed=self.seed, target_psnr=target,
                                      backend=self.backend)
        if self.effort is not None:
            kwargs["effort"] = self.effort
        if self.iterations is not None:
            kwargs["iterations"] = self.iterations
        return FitConfig(**kwargs)

    def prepare(self, image: np.ndarray) -> np.ndarray:
        """The array the fitter sees: ``image`` resized and cropped as ``resize`` asks."""
        return resize_for_clip(image, self.resize) if self.resize is not None else image


@dataclass
class Fitted:
    """One image fitted and serialized: the `.gsi` bytes and what the records and manifests report."""

    data: bytes
    psnr: float
    seconds: float
    width: int
    height: int
    gaussians: int


ProgressFn = Callable[[str, dict], None]


def fit_images(images: list[np.ndarray], sources: list[str], settings: EncoderSettings,
               progress: ProgressFn | None = None, metadata: bool = True) -> list[Fitted | str]:
    """Fit ``images`` (``(H, W, 3)`` uint8) and serialize them; per image a :class:`Fitted` or why it failed.

    Same-size images are fitted together with :func:`gscodec.fit.fit_batch`, at
    most :data:`~gscodec.limits.MAX_FIT_PIXELS` pixels per fit; an image over
    that limit fails (use ``resize``). With ``metadata``, each file names its
    ``source`` (a file or tar member name), the fitted PSNR and the encoder;
    without, the file has no metadata. ``progress(name, info)`` receives the
    fitter's progress dicts.
    """
    out: list[Fitted | str] = ["not fitted"] * len(images)
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, image in enumerate(images):
        pixels = image.shape[0] * image.shape[1]
        if pixels > MAX_FIT_PIXELS:
            out[i] = (f"{image.shape[1]}x{image.shape[0]} is {pixels:,} pixels, over the fitter's limit of "
                      f"{MAX_FIT_PIXELS:,}; use --resize")
            continue
        groups.setdefault(image.shape, []).append(i)
    fits = [(shape, same[k:k + step]) for shape, same in groups.items()
            for step in [max(1, MAX_FIT_PIXELS // (shape[0] * shape[1]))] for k in range(0, len(same), step)]
    for shape, idx in fits:
        height, width = shape[0], shape[1]
        name = ", ".join(sources[i] for i in idx)
        callback = (lambda info, name=name: progress(name, info)) if progress is not None else None
        try:
            config = settings.config(width, height)
            batch = [images[i] for i in idx]
            results = fit_batch(batch, config, callback) if len(batch) > 1 else [fit(batch[0], config, callback)]
        except Exception as exc:  # a fitter failure fails these images, not the run
            for i in idx:
                out[i] = f"fitting failed: {error_text(exc)}"
            continue
        for i, res in zip(idx, results):
            source = sources[i] if metadata else None
            try:
                out[i] = _serialize(res, source, settings, width, height)
                target = settings.target_bytes(width, height)
                if target is not None and abs(len(out[i].data) - target) > RATE_TOLERANCE * target:
                    points = max(1, round(res.gaussians.count * (target - 100) / max(1, len(out[i].data) - 100)))
                    refit_config = settings.config(width, height, min(points, MAX_GAUSSIANS))
                    refit = fit(images[i], refit_config, callback)
                    refit.seconds += res.seconds
                    out[i] = _serialize(refit, source, settings, width, height)
            except GsiError as exc:
                out[i] = error_text(exc)
            except Exception as exc:  # a fitter failure fails this image, not the run
                out[i] = f"fitting failed: {error_text(exc)}"
    return out


def _serialize(res: FitResult, source: str | None, settings: EncoderSettings, width: int, height: int) -> Fitted:
    """The `.gsi` bytes of one fit (on the grid the fitter snapped it to), with its metadata unless ``source``
    is ``None``."""
    start = time.perf_counter()
    metadata = None if source is None else {"source": source, "psnr": f"{res.psnr:.2f}", "encoder": ENCODER,
                                            "settings": settings.describe()}
    data = encode_gsi(res.gaussians, mode=settings.mode, quantization=res.quantization or Quantization(),
                      metadata=metadata, version=settings.format_version)
    return Fitted(data, res.psnr, res.seconds + time.perf_counter() - start, width, height, res.gaussians.count)


def encode_image(image: str | os.PathLike | Image.Image | np.ndarray, *, points: int | None = None,
                 density: float | None = None, bpp: float | None = None, psnr: float | None = None,
                 quality: str | float = "auto", effort: int | None = None, iterations: int | None = None,
                 resize: int | None = None, seed: int = 0, backend: str = "cpu", source: str | None = None,
                 metadata: bool = True, progress: Callable[[dict], None] | None = None,
                 format_version: int | None = None) -> bytes:
    """Encode one image as `.gsi` bytes, exactly as ``gsi encode`` with the same options writes it.

    ``image``: a path (read with :func:`gscodec.imageio.load_image`), a PIL image
    or an ``(H, W)``/``(H, W, 1..4)`` uint8 or uint16 array (converted as
    :func:`gscodec.imageio.image_to_rgb8` says). Give at most one of ``points``
    (default 900), ``density`` (Gaussians per pixel) and ``bpp`` (target bits
    per pixel, one corrective refit); ``psnr`` stops the fit once the file
    should reach that many dB. ``quality``: a preset name (as ``gsi encode
    --quantization``), or a number 0..100 (as ``gsi encode -q``), which sets the
    density and the preset (:func:`gscodec.presets.quality_settings`) and so
    excludes ``points``, ``density`` and ``bpp``. ``effort``, ``iterations``,
    ``resize``, ``seed``, ``backend`` and ``format_version`` (``None``: the
    smaller of versions 1 and 2; ``1`` decodes faster) are :class:`EncoderSettings`'. The
    metadata's ``source`` is ``source``, else the path's name, else ``""``;
    ``metadata=False`` writes none. ``progress(info)`` receives the fitter's
    progress dicts. Raises ``ValueError`` for bad options or an image over the
    fitter's pixel limit, :class:`~gscodec.imageio.ImageReadError` for an
    unreadable file and :class:`EncodeError` when the fit fails.
    """
    if sum(v is not None for v in (points, density, bpp)) > 1:
        raise ValueError("give only one of points, density and bpp")
    if not isinstance(quality, str):
        if points is not None or density is not None or bpp is not None:
            raise ValueError("a quality of 0..100 sets the density: give it without points, density or bpp")
        chosen = quality_settings(quality)
        density, quality = chosen.density, chosen.quantization
    settings = EncoderSettings(points=900 if points is None else points, density=density, bpp=bpp, effort=effort,
                               iterations=iterations, resize=resize, quality=quality, seed=seed, target_psnr=psnr,
                               backend=backend, format_version=format_version)
    if isinstance(image, (str, os.PathLike)):
        source = Path(image).name if source is None else source
        pixels = load_image(image)
    else:
        pixels = image_to_rgb8(image)
    pixels = settings.prepare(pixels)
    if pixels.shape[0] * pixels.shape[1] > MAX_FIT_PIXELS:
        raise ValueError(f"{pixels.shape[1]}x{pixels.shape[0]} is {pixels.shape[0] * pixels.shape[1]:,} pixels, "
                         f"over the fitter's limit of {MAX_FIT_PIXELS:,}; give resize")
    report = (lambda name, info: progress(info)) if progress is not None else None
    [result] = fit_images([pixels], [source or ""], settings, report, metadata=metadata)
    if isinstance(result, str):
        raise EncodeError(result)
    return result.data


__all__ = ["BYTES_PER_GAUSSIAN", "EncodeError", "EncoderSettings", "Fitted", "PSNR_MARGIN", "QUALITIES",
           "RATE_TOLERANCE", "ENCODER", "encode_image", "fit_images"]
