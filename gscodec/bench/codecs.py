"""The codecs under test: one small class each, ``encode(image, quality) -> bytes`` and ``decode(bytes) -> image``.

Images are ``(H, W, 3)`` uint8 RGB arrays. The bytes are exactly what the codec
writes to a file (container included, no metadata), so ``8 * len(bytes) / (W * H)``
is the real bits per pixel. Every codec runs single-threaded (libavif's
``max_threads=1``; the fitter's threads are set by the caller), so that encode
and decode times compare across codecs and runs.

* ``gsi``: quality = Gaussian density (Gaussians per pixel, the rate knob).
  Encoding is :func:`gscodec.encode_image` (``gsi encode``'s encoder, its
  defaults unless ``effort`` or ``iterations`` is given) with the ``auto``
  quantization (the preset of its density and float-fit PSNR,
  :func:`gscodec.presets.preset_for_density`), writing a quantized `.gsi`
  without metadata (``gsi encode`` adds ~50 bytes of provenance); decoding
  parses the file and renders it (:func:`gscodec.render`).
* ``jpeg``: Pillow/libjpeg, quality 5..95 (5 reaches down to the low PSNRs
  where the splat codec lives), 4:2:0 chroma subsampling, Pillow's other
  defaults (baseline, standard Huffman tables), as CompressAI's JPEG runs.
* ``webp``: Pillow/libwebp lossy, ``method=6`` (slowest, best compression).
* ``avif``: Pillow/libavif, 4:2:0, ``speed=6`` (libavif's and Pillow's default;
  0 is slowest/best, 10 fastest), ``max_threads=1``.
"""

from __future__ import annotations

import hashlib
import io
import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from ..presets import PRESETS

DEFAULT_DENSITIES: tuple[float, ...] = (0.002, 0.004, 0.008, 0.016, 0.03)
"""Default ``gsi`` rate points, in Gaussians per pixel: about 0.1 to 1.2 bpp on the development photos
covering the 0.1-1 bpp range codecs are compared over (issue #6)."""


def quality_label(quality: float) -> str:
    """The canonical text of a quality setting (``10``, ``0.004``), used as a key in ``points.csv``."""
    q = float(quality)
    return str(int(q)) if q.is_integer() and abs(q) < 1e15 else repr(q)


def _normalized(qualities: tuple[float, ...]) -> tuple[float, ...]:
    """Qualities as floats, sorted, without repeats."""
    return tuple(sorted({float(q) for q in qualities}))


class Codec(ABC):
    """A codec with its quality settings (``qualities``: sorted, low to high rate)."""

    name: ClassVar[str]
    qualities: tuple[float, ...]

    @abstractmethod
    def description(self) -> str:
        """One line naming the implementation, its version and every setting that changes the bytes."""

    def label(self) -> str:
        """A few words naming the codec and its settings, for plot titles."""
        return self.name

    @abstractmethod
    def encode(self, image: np.ndarray, quality: float) -> bytes:
        """Compress an ``(H, W, 3)`` uint8 image at ``quality``; the bytes of the file."""

    @abstractmethod
    def decode(self, data: bytes) -> np.ndarray:
        """Decompress ``data`` to an ``(H, W, 3)`` uint8 image."""


@dataclass(frozen=True)
class _PillowCodec(Codec):
    """A lossy Pillow format with an integer ``quality``."""

    qualities: tuple[float, ...] = ()
    format: ClassVar[str]
    quality_range: ClassVar[tuple[int, int]]
    options: ClassVar[dict[str, Any]] = {}

    def __post_init__(self) -> None:
        if not self.qualities:
            raise ValueError(f"{self.name}: give at least one quality")
        object.__setattr__(self, "qualities", _normalized(self.qualities))
        lo, hi = self.quality_range
        for q in self.qualities:
            if not (float(q).is_integer() and lo <= q <= hi):
                raise ValueError(f"{self.name} quality must be an integer in {lo}..{hi}, got {q}")
        from PIL import features

        feature = {"JPEG": "jpg", "WEBP": "webp", "AVIF": "avif"}[self.format]
        if not features.check(feature):
            raise ValueError(f"{self.name}: this Pillow was built without {self.format} support")

    def _library(self) -> str:
        from PIL import __version__, features

        feature = {"JPEG": "jpg", "WEBP": "webp", "AVIF": "avif"}[self.format]
        return f"Pillow {__version__} ({feature} {features.version(feature)})"

    def label(self) -> str:
        return f"{self.name} via {self._library()}"

    def encode(self, image: np.ndarray, quality: float) -> bytes:
        from PIL import Image

        buf = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(image), "RGB").save(buf, format=self.format, quality=int(quality),
                                                                   **self.options)
        return buf.getvalue()

    def decode(self, data: bytes) -> np.ndarray:
        from PIL import Image

        with Image.open(io.BytesIO(data)) as im:
            return np.asarray(im.convert("RGB")).copy()


@dataclass(frozen=True)
class JpegCodec(_PillowCodec):
    """JPEG through Pillow: 4:2:0, baseline, standard Huffman tables."""

    name: ClassVar[str] = "jpeg"
    qualities: tuple[float, ...] = (5, 10, 15, 20, 30, 40, 50, 60, 70, 80, 90, 95)
    format: ClassVar[str] = "JPEG"
    quality_range: ClassVar[tuple[int, int]] = (1, 95)
    options: ClassVar[dict[str, Any]] = {"subsampling": "4:2:0"}

    def description(self) -> str:
        return f"JPEG, {self._library()}, 4:2:0, baseline, no Huffman optimization; quality = Pillow quality"


@dataclass(frozen=True)
class WebpCodec(_PillowCodec):
    """Lossy WebP through Pillow at ``method=6``."""

    name: ClassVar[str] = "webp"
    qualities: tuple[float, ...] = (0, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95)
    format: ClassVar[str] = "WEBP"
    quality_range: ClassVar[tuple[int, int]] = (0, 100)
    options: ClassVar[dict[str, Any]] = {"method": 6, "lossless": False}

    def description(self) -> str:
        return f"WebP (lossy), {self._library()}, method 6; quality = Pillow quality"


@dataclass(frozen=True)
class AvifCodec(_PillowCodec):
    """AVIF through Pillow: 4:2:0, ``speed=6``, one thread."""

    name: ClassVar[str] = "avif"
    qualities: tuple[float, ...] = (5, 10, 20, 30, 40, 50, 60, 70, 80, 90)
    format: ClassVar[str] = "AVIF"
    quality_range: ClassVar[tuple[int, int]] = (0, 100)
    options: ClassVar[dict[str, Any]] = {"subsampling": "4:2:0", "speed": 6, "max_threads": 1}

    def description(self) -> str:
        return f"AVIF, {self._library()}, 4:2:0, speed 6, 1 thread; quality = Pillow quality"


@dataclass(frozen=True)
class GsiCodec(Codec):
    """The splat codec: fit ``round(density * W * H)`` Gaussians, write a quantized `.gsi`, render it back."""

    name: ClassVar[str] = "gsi"
    qualities: tuple[float, ...] = DEFAULT_DENSITIES
    effort: int | None = None
    iterations: int | None = None
    preset: str = "auto"
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.qualities:
            raise ValueError("gsi: give at least one density")
        object.__setattr__(self, "qualities", _normalized(self.qualities))
        for q in self.qualities:
            if not (math.isfinite(q) and 0 < q <= 1):
                raise ValueError(f"gsi density must be in (0, 1] Gaussians per pixel, got {q}")
        if self.preset not in ("auto", *PRESETS):
            raise ValueError(f"unknown quantization preset {self.preset!r}; valid: auto, {', '.join(PRESETS)}")
        self._settings(self.qualities[0])  # the encoder checks effort and iterations

    def description(self) -> str:
        from .. import __version__
        from ..presets import COLOR_BITS_BY_PSNR, RATE_PRESETS

        defaults = self._settings(self.qualities[0]).config(1, 1, points=1)
        # a digest of every fitter setting and of the auto preset's tables, so a results folder
        # made with other settings is not resumed
        digest = hashlib.sha1(repr((defaults, RATE_PRESETS, COLOR_BITS_BY_PSNR)).encode()).hexdigest()[:8]
        return (f"gscodec {__version__} .gsi, quantized ({self.preset} preset), fitter at effort {defaults.effort} "
                f"with {defaults.iterations} iterations "
                f"(early stopping on, defaults {digest}), seed {self.seed}, no metadata; "
                f"quality = Gaussians per pixel")

    def label(self) -> str:
        config = self._settings(self.qualities[0]).config(1, 1, points=1)
        return f"gsi effort {config.effort} ({config.iterations} steps, {self.preset} quantization)"

    def encode(self, image: np.ndarray, quality: float) -> bytes:
        from ..encoder import encode_image

        return encode_image(image, density=quality, quality=self.preset, effort=self.effort,
                            iterations=self.iterations, seed=self.seed, metadata=False)

    def _settings(self, density: float):  # -> EncoderSettings (imported lazily: no torch until it fits)
        from ..encoder import EncoderSettings

        return EncoderSettings(density=density, quality=self.preset, effort=self.effort, iterations=self.iterations,
                               seed=self.seed)

    def decode(self, data: bytes) -> np.ndarray:
        from .. import decode, render

        return render(decode(data).gaussians)


CODECS: dict[str, type[Codec]] = {"gsi": GsiCodec, "jpeg": JpegCodec, "webp": WebpCodec, "avif": AvifCodec}
"""Codec classes by name, in the default order."""


def make_codec(name: str, qualities: tuple[float, ...] | None = None, **options: Any) -> Codec:
    """A codec by ``name`` with its default qualities unless given; ``options`` go to ``gsi`` only (``effort``,
    ``iterations``)."""
    if name not in CODECS:
        raise ValueError(f"unknown codec {name!r}; valid: {', '.join(CODECS)}")
    kwargs: dict[str, Any] = {} if qualities is None else {"qualities": tuple(float(q) for q in qualities)}
    if name == "gsi":
        kwargs.update(options)
    elif options:
        raise ValueError(f"{name} takes no options, got {', '.join(options)}")
    return CODECS[name](**kwargs)


__all__ = ["CODECS", "Codec", "DEFAULT_DENSITIES", "AvifCodec", "GsiCodec", "JpegCodec", "WebpCodec", "make_codec",
           "quality_label"]
