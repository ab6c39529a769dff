"""Pillow plugin: ``PIL.Image.open("x.gsi")`` decodes a `.gsi` file, ``Image.save("x.gsi")`` encodes one.

Reading: the image opens at its stored size, in mode RGB; ``info`` carries the
file's metadata and ``info["gaussians"]`` its Gaussian count. Since the format
is resolution-free, :meth:`GsiImageFile.draft` and :meth:`GsiImageFile.thumbnail`
render straight at the size asked for (any scale, not only 1/2, 1/4, 1/8 as for
JPEG); no full-size image is rendered and shrunk. Below the stored size each
Gaussian is first convolved with a small Gaussian (:func:`downscaled`), the
anti-aliasing a resize filter would give (point-sampling sharp Gaussians at a
fraction of their size aliases).

Writing: ``im.save("x.gsi", quality=75)`` or ``im.save("x.gsi", points=900, quality="auto", effort=5)`` runs the
fitter (:func:`gscodec.fit.fit`) on the image converted as ``gsi encode``
converts files (alpha composited on white, EXIF orientation applied, 16-bit
and greyscale to 8-bit RGB; see :func:`encode_pixels`) and writes the file
``gsi encode --points N --quantization Q --effort E`` (``gsi encode -q 75`` for ``quality=75``) writes for the
same pixels. Other keyword arguments
are ignored, as Pillow's own plugins ignore the options of other formats.

Errors are Pillow's, and the library's: a file that is not a valid `.gsi`
header is not opened (``PIL.UnidentifiedImageError``, an ``OSError``, as for
any unknown data); a corrupt payload raises :class:`GsiDecodeError` (an
``OSError`` as Pillow raises for broken files, and a :class:`~gscodec.GsiError`)
when the pixels are loaded; a render over the budget of
:func:`gscodec.render.check_render_budget` (a decompression bomb) raises
:class:`GsiDecompressionBombError`, both ``PIL.Image.DecompressionBombError``
(what Pillow raises for images with too many pixels) and
:class:`~gscodec.RenderBudgetError`. Bad save options raise ``ValueError``.
Pillow's own pixel limit applies to the declared size at ``open``.

Pillow (13.0) has no entry-point mechanism for third-party plugins: its
``Image.init()`` imports only its own bundled plugin list. Call
:func:`gscodec.register_pillow` once.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import IO, Any

import numpy as np
from PIL import Image, ImageFile

from .format import GsiError, peek, read
from .format.header import MAGIC
from .gaussians import GaussianImage
from .render import RenderBudgetError, render

FORMAT = "GSI"
ANTIALIAS_SIGMA = 0.35
"""Standard deviation (output pixels) of the Gaussian each Gaussian is convolved with when rendered well below
its stored size: on two development photos at 1/4 to 1/8 size, the straight render scored 37-40 dB PSNR against a
full render shrunk with Lanczos, point sampling 24-31 dB."""
SAVE_OPTIONS = ("points", "quality", "effort")
"""The keyword arguments of ``Image.save`` this plugin reads."""


class GsiDecodeError(OSError, GsiError):
    """A `.gsi` file's payload cannot be decoded (corrupt, truncated, over a limit)."""


class GsiDecompressionBombError(Image.DecompressionBombError, RenderBudgetError):
    """Rendering a `.gsi` file would visit more footprint pixels than the render budget allows."""


def _accept(prefix: bytes) -> bool:
    return prefix[: len(MAGIC)] == MAGIC


def draft_size(stored: tuple[int, int], requested: tuple[int, int]) -> tuple[int, int]:
    """The smallest size at ``stored``'s aspect ratio that is at least ``requested`` in both sides (as JPEG's
    draft promises), never above ``stored``; ``(width, height)`` in pixels."""
    w, h = stored
    scale = min(1.0, max(requested[0] / w, requested[1] / h))
    return max(1, min(w, math.ceil(w * scale - 1e-9))), max(1, min(h, math.ceil(h * scale - 1e-9)))


def thumbnail_size(stored: tuple[int, int], size: tuple[float, float]) -> tuple[int, int] | None:
    """The size ``PIL.Image.Image.thumbnail(size)`` gives an image of size ``stored`` (same rounding), or
    ``None`` where it leaves the image as it is."""
    x, y = math.floor(size[0]), math.floor(size[1])
    width, height = stored
    if x >= width and y >= height:
        return None
    aspect = width / height

    def round_aspect(number: float, key: Any) -> int:
        return max(min(math.floor(number), math.ceil(number), key=key), 1)

    if x / y >= aspect:
        x = round_aspect(y * aspect, key=lambda n: abs(aspect - n / y))
    else:
        y = round_aspect(x / aspect, key=lambda n: 0 if n == 0 else abs(aspect - x / n))
    return x, y


def downscaled(g: GaussianImage, width: int, height: int) -> GaussianImage:
    """``g`` mapped onto a ``width`` x ``height`` grid (:meth:`GaussianImage.scaled`) and low-passed for it.

    Each Gaussian's covariance gains ``s**2 * (1 - r**2)`` px² on the diagonal, ``s`` =
    :data:`ANTIALIAS_SIGMA` and ``r`` the larger of the two scale ratios (at most 1), and its colour is scaled
    by ``sqrt(det(old) / det(new))``: the continuous image convolved with that Gaussian. At the stored size
    ``g`` is returned unchanged (the normative decode).
    """
    if (width, height) == (g.width, g.height):
        return g
    ratio = min(1.0, max(width / g.width, height / g.height))
    var = ANTIALIAS_SIGMA**2 * (1.0 - ratio**2)
    s = g.scaled(width, height)
    l11, l21, l22 = np.asarray(s.chol, dtype=np.float64).T
    a, b, c = l11**2 + var, l11 * l21, l21**2 + l22**2 + var  # the widened covariance [[a, b], [b, c]]
    n11 = np.sqrt(a)
    n21 = b / n11
    n22 = np.sqrt(c - n21**2)
    gain = (l11 * l22) / (n11 * n22)
    colors = np.asarray(s.colors, dtype=np.float64) * gain[:, None]
    return GaussianImage(width, height, s.means, np.stack([n11, n21, n22], 1), colors)


class GsiImageFile(ImageFile.ImageFile):
    """Pillow image backed by a `.gsi` file; ``info`` carries its metadata."""

    format = FORMAT
    format_description = "gscodec Gaussian splat image"

    def _open(self) -> None:
        try:
            info = peek(self.fp)
        except GsiError as exc:
            raise SyntaxError(f"not a valid .gsi file: {exc}") from exc
        self._mode = "RGB"
        self.stored_size = (info.header.width, info.header.height)
        self.info.update(info.metadata)
        self.info["gaussians"] = info.header.count
        self._set_render_size(self.stored_size)

    def _set_render_size(self, size: tuple[int, int]) -> None:
        self._size = size
        self.tile = [ImageFile._Tile(FORMAT, (0, 0) + size, 0, None)]

    def _unloaded(self) -> bool:
        return bool(self.tile) and self._im is None

    def draft(self, mode: str | None, size: tuple[int, int] | None
              ) -> tuple[str, tuple[int, int, float, float]] | None:
        """Before loading, render at :func:`draft_size` of ``size`` (at least ``size`` in both sides, aspect
        kept, at most the stored size). The mode stays RGB. Returns ``(mode, box)`` as Pillow's JPEG reader
        does, or ``None`` once loaded or for no size."""
        if size is None or not self._unloaded():
            return None
        target = draft_size(self.stored_size, size)
        self._set_render_size(target)
        return self.mode, (0, 0, float(target[0]), float(target[1]))

    def thumbnail(self, size: tuple[float, float], resample: Image.Resampling = Image.Resampling.BICUBIC,
                  reducing_gap: float | None = 2.0) -> None:
        """Pillow's ``thumbnail``, rendered straight at the thumbnail's size when not yet loaded (``resample``
        and ``reducing_gap`` then do not apply: nothing is resized)."""
        if not self._unloaded():
            super().thumbnail(size, resample, reducing_gap)
            return
        final = thumbnail_size(self.size, size)
        if final is None:
            return
        self._set_render_size(final)
        self.load()
        self.readonly = 0


class GsiDecoder(ImageFile.PyDecoder):
    """Reads the whole file from the image's file object and renders it at the tile's size."""

    _pulls_fd = True

    def decode(self, buffer: bytes | Image.SupportsArrayInterface) -> tuple[int, int]:
        assert self.fd is not None
        self.fd.seek(0)
        try:
            g = downscaled(read(self.fd).gaussians, self.state.xsize, self.state.ysize)
            pixels = render(g)
        except RenderBudgetError as exc:
            raise GsiDecompressionBombError(f".gsi decompression bomb: {exc}") from exc
        except GsiError as exc:
            raise GsiDecodeError(f"cannot decode .gsi file: {exc}") from exc
        self.set_as_raw(pixels.tobytes())
        return -1, 0


def encode_pixels(image: Image.Image, points: int | None = None, quality: str | float = "auto",
                  effort: int | None = None, source: str = "") -> bytes:
    """The `.gsi` bytes ``gsi encode --points --quantization --effort`` (or ``-q`` for a number) writes for
    ``image``, with its metadata
    (:func:`gscodec.encode_image` of the loaded image; ``source`` names it in the metadata).

    ``quality``: a number ``0..100`` (``gsi encode -q``: the Gaussian density and quantization of
    :func:`gscodec.presets.quality_settings`; not with ``points``) or a preset name (``--quantization``);
    ``points`` defaults to 900 with a preset name. Raises ``ValueError`` for a bad option or an image
    over the fitter's pixel limit.
    """
    from .encoder import encode_image
    from .limits import MAX_GAUSSIANS

    if points is not None and (isinstance(points, bool) or not isinstance(points, (int, np.integer))
                               or not 1 <= points <= MAX_GAUSSIANS):
        raise ValueError(f"points must be an integer in 1..{MAX_GAUSSIANS}, got {points!r}")
    if isinstance(quality, bool) or not isinstance(quality, (str, int, float, np.integer, np.floating)):
        raise ValueError(f"quality is 0..100 or a preset name (auto, low, medium, high, max, float16, float32), "
                         f"got {quality!r}")
    if not isinstance(quality, str):
        quality = float(quality) if isinstance(quality, (float, np.floating)) else int(quality)
    image.load()
    return encode_image(image, points=None if points is None else int(points), quality=quality, effort=effort,
                        source=source)


def _save(im: Image.Image, fp: IO[bytes], filename: str | bytes) -> None:
    options = {k: im.encoderinfo[k] for k in SAVE_OPTIONS if k in im.encoderinfo}
    source = Path(im.filename).name if isinstance(getattr(im, "filename", None), str) and im.filename else ""
    fp.write(encode_pixels(im, source=source, **options))


def register() -> None:
    """Register the `.gsi` opener, decoder, saver and extension with Pillow (idempotent)."""
    Image.register_open(FORMAT, GsiImageFile, _accept)
    Image.register_decoder(FORMAT, GsiDecoder)
    Image.register_save(FORMAT, _save)
    Image.register_extension(FORMAT, ".gsi")
    Image.register_mime(FORMAT, "image/x-gsi")


__all__ = ["ANTIALIAS_SIGMA", "GsiDecodeError", "GsiDecompressionBombError", "GsiDecoder", "GsiImageFile",
           "downscaled", "draft_size", "encode_pixels", "register", "thumbnail_size"]
