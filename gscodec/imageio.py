"""Reading ordinary images into 8-bit RGB arrays, CLIP-style resizing, and atomic PNG writing.

:func:`load_image` (a file) and :func:`load_image_bytes` (bytes in memory, e.g. a tar member) turn
anything Pillow reads into an ``(H, W, 3)`` uint8 array:

* the EXIF orientation is applied (``ImageOps.exif_transpose``);
* greyscale is repeated to RGB; CMYK, YCbCr and other colour modes go through
  Pillow's conversion to RGB (embedded ICC profiles are not applied);
* transparency (RGBA, LA, PA, palette or colour-key transparency) is
  composited over **white**, since the codec stores opaque RGB;
* 16-bit data (``I;16`` greyscale, 16-bit RGB/RGBA PNG) is rounded to 8 bits
  as ``round(v * 255 / 65535)``; 32-bit integer images (mode ``I``) are read
  as 16-bit data, clipped to ``0..65535``;
* multi-frame files (GIF, TIFF, APNG) give their first frame;
* images over :data:`~gscodec.limits.MAX_IMAGE_PIXELS` are refused from their
  header, before decoding; Pillow's decompression-bomb limit
  (``Image.MAX_IMAGE_PIXELS``) stays on, and its warning is an error here too;
* only regular files are read: a FIFO, device or folder is refused unopened.

Every failure (missing, unreadable, unknown format, corrupt, truncated, too
large) raises :class:`ImageReadError` naming the file, never a raw Pillow error.
"""

from __future__ import annotations

import io
import os
import warnings
from contextlib import ExitStack
from pathlib import Path
from typing import BinaryIO, Callable

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .files import NotRegularFileError, open_regular
from .format import write_atomic
from .limits import MAX_IMAGE_PIXELS

_STUB_FORMATS = frozenset({"BUFR", "GRIB", "HDF5", "MPEG", "WMF"})
"""Formats Pillow identifies but cannot decode without an external handler."""


class ImageReadError(ValueError):
    """An image file could not be read; ``path`` names it and the message says why."""

    def __init__(self, path: str | os.PathLike, reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"cannot read image {str(self.path)!r}: {reason}")


def image_extensions() -> frozenset[str]:
    """Lower-case file extensions (with the dot) of the formats Pillow can open here."""
    Image.init()
    return frozenset(ext.lower() for ext, fmt in Image.registered_extensions().items()
                     if fmt in Image.OPEN and fmt not in _STUB_FORMATS and fmt != "GSI")


def load_image(path: str | os.PathLike) -> np.ndarray:
    """Read the image at ``path`` as ``(H, W, 3)`` uint8 RGB (see the module notes for the conversions).

    Raises :class:`ImageReadError` for every failure, among them a path that
    is not a regular file (a FIFO is never opened for reading, so never blocks)
    and an image over :data:`~gscodec.limits.MAX_IMAGE_PIXELS`, refused from
    its header before any pixel is decoded.
    """
    path = Path(path)
    return _load(path, lambda: open_regular(path))


def load_image_bytes(data: bytes, name: str) -> np.ndarray:
    """:func:`load_image` for encoded image bytes in memory (e.g. a tar member); ``name`` labels errors."""
    return _load(Path(name), lambda: io.BytesIO(data))


def image_to_rgb8(image: Image.Image | np.ndarray) -> np.ndarray:
    """An image already in memory as ``(H, W, 3)`` uint8 RGB, converted as :func:`load_image` converts files.

    ``image``: a PIL image (EXIF orientation applied, alpha composited on white,
    16-bit and greyscale to 8-bit RGB) or an integer array ``(H, W)``, ``(H, W, C)``
    with C in 1..4 (2 and 4: the last channel is alpha), uint8 or uint16 (read
    as 16-bit). A uint8 ``(H, W, 3)`` array is returned as it is. Raises
    ``ValueError`` for any other array.
    """
    if isinstance(image, Image.Image):
        image.load()  # a loaded image has no tile left, so a 16-bit PNG is taken as Pillow decoded it
        data, maxval = _decode(image, lambda: image)
        return _to_rgb8(data, maxval)
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3 or not 1 <= arr.shape[2] <= 4 or arr.dtype not in (np.uint8, np.uint16) or 0 in arr.shape:
        raise ValueError(f"expected a non-empty (H, W) or (H, W, 1..4) uint8 or uint16 array, got "
                         f"{arr.shape} {arr.dtype}")
    return _to_rgb8(arr, 255 if arr.dtype == np.uint8 else 65535)


def _load(path: Path, source: Callable[[], BinaryIO]) -> np.ndarray:
    try:
        with warnings.catch_warnings(), ExitStack() as files:
            warnings.simplefilter("error", Image.DecompressionBombWarning)

            def opener() -> Image.Image:
                return Image.open(files.enter_context(source()))

            with opener() as im:
                width, height = im.size
                if width * height > MAX_IMAGE_PIXELS:
                    raise ImageReadError(path, f"{width}x{height} is {width * height:,} pixels, over the limit "
                                               f"of {MAX_IMAGE_PIXELS:,}")
                data, maxval = _decode(im, opener)
    except ImageReadError:
        raise
    except NotRegularFileError as exc:
        raise ImageReadError(path, exc.strerror or "not a regular file") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageReadError(path, f"too many pixels (decompression-bomb limit of "
                                   f"{Image.MAX_IMAGE_PIXELS} pixels): {exc}") from None
    except FileNotFoundError:
        raise ImageReadError(path, "no such file") from None
    except IsADirectoryError:
        raise ImageReadError(path, "is a folder, not a file") from None
    except PermissionError:
        raise ImageReadError(path, "permission denied") from None
    except UnidentifiedImageError:
        raise ImageReadError(path, "not an image format Pillow recognises") from None
    except MemoryError:
        raise ImageReadError(path, "not enough memory to decode it") from None
    except Exception as exc:  # Pillow raises OSError, SyntaxError, ValueError, struct.error, ... for bad data
        reason = str(exc) or type(exc).__name__
        if "truncated" in reason.lower() or isinstance(exc, EOFError):
            reason = f"file is truncated ({reason})"
        raise ImageReadError(path, f"corrupt or unsupported image data: {reason}") from exc
    return _to_rgb8(data, maxval)


def _png16_rawmode(im: Image.Image) -> str | None:
    """The 16-bit raw mode of a colour PNG that Pillow would cut to its high bytes, else ``None``."""
    if im.format != "PNG" or len(im.tile) != 1:
        return None
    rawmode = im.tile[0].args
    return rawmode if rawmode in ("RGB;16B", "RGBA;16B") else None


def _png16_low_bytes(opener: Callable[[], Image.Image], rawmode: str) -> Image.Image:
    """Decode a 16-bit colour PNG a second time keeping each sample's low byte instead of its high byte.

    Pillow's PNG decoder unfilters the 16-bit samples and then keeps the high
    byte; the little-endian unpacker of the same width picks the other byte.
    """
    low = opener()
    low.tile = [low.tile[0]._replace(args=rawmode.replace(";16B", ";16L"))]
    low.load()
    return low


def _decode(im: Image.Image, opener: Callable[[], Image.Image]) -> tuple[np.ndarray, int]:
    """``(array, maxval)``: the first frame, oriented, as an integer ``(H, W, C)`` array, C in 1..4."""
    rawmode = _png16_rawmode(im)
    if rawmode is not None:
        high = np.asarray(ImageOps.exif_transpose(im)).astype(np.uint16)
        with _png16_low_bytes(opener, rawmode) as low_im:
            low = np.asarray(ImageOps.exif_transpose(low_im)).astype(np.uint16)
        if low.shape != high.shape:
            raise ValueError("inconsistent 16-bit PNG decode")
        return (high << 8) | low, 65535
    im.load()
    im = ImageOps.exif_transpose(im)
    mode = im.mode
    if mode.startswith("I;16"):
        return np.asarray(im).astype(np.uint16)[..., None], 65535
    if mode == "I":
        return np.clip(np.asarray(im), 0, 65535).astype(np.uint16)[..., None], 65535
    if mode in ("L", "RGB") and "transparency" not in im.info:
        pass
    elif mode in ("LA", "RGBA"):
        pass
    elif mode == "1":
        im = im.convert("L")
    elif mode in ("P", "PA", "La", "RGBa") or "transparency" in im.info:
        im = im.convert("RGBA")
    elif mode == "F":
        im = im.convert("L")  # Pillow's convention: float samples in 0..255, clipped
    else:  # CMYK, YCbCr, LAB, HSV, RGBX, ...
        im = im.convert("RGB")
    arr = np.asarray(im)
    if arr.ndim == 2:
        arr = arr[..., None]
    return arr, 255


_COMPOSITE_PIXELS = 1 << 20
"""Pixels composited over white at a time (bounds the float32 temporaries to about 50 MB)."""


def _to_rgb8(data: np.ndarray, maxval: int) -> np.ndarray:
    """Composite any alpha over white, expand grey to RGB and round to 8 bits."""
    channels = data.shape[2]
    if channels in (2, 4):
        rgb8 = np.empty(data.shape[:2] + (channels - 1,), np.uint8)
        rows = max(1, _COMPOSITE_PIXELS // max(1, data.shape[1]))  # float temporaries for this many pixels only
        for y in range(0, data.shape[0], rows):
            block = data[y:y + rows]
            alpha = block[..., -1:].astype(np.float32) / maxval
            out = block[..., :-1].astype(np.float32) / maxval * alpha + (1.0 - alpha)
            rgb8[y:y + rows] = np.floor(np.clip(out, 0.0, 1.0) * 255.0 + 0.5)
    elif maxval == 255:
        rgb8 = data.astype(np.uint8, copy=False)
    else:
        rgb8 = ((data.astype(np.uint32) * 255 + maxval // 2) // maxval).astype(np.uint8)
    if rgb8.shape[2] == 1:
        rgb8 = np.repeat(rgb8, 3, axis=2)
    return np.ascontiguousarray(rgb8)


def resize_for_clip(img: np.ndarray, size: int = 224) -> np.ndarray:
    """CLIP preprocessing geometry: shorter side to ``size`` (bicubic, antialiased), then a centre crop.

    Matches torchvision's ``Resize(size, BICUBIC)`` + ``CenterCrop(size)``:
    the longer side becomes ``int(size * long / short)`` and the crop offset
    is ``round((side - size) / 2)``. Returns ``(size, size, 3)`` uint8.
    Where that resized image would exceed :data:`~gscodec.limits.MAX_IMAGE_PIXELS`
    (an extreme aspect ratio such as 1 x 30000), only the crop's box of the
    source is resampled, straight to ``size x size`` (within a few levels of
    the full resize), so memory stays ``O(size^2)``.
    """
    if size < 1:
        raise ValueError(f"size must be positive, got {size}")
    arr = np.asarray(img)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 array, got {arr.shape} {arr.dtype}")
    h, w = arr.shape[:2]
    if w <= h:
        nw, nh = size, max(size, int(size * h / w))
    else:
        nw, nh = max(size, int(size * w / h)), size
    pil = Image.fromarray(np.ascontiguousarray(arr))
    left, top = int(round((nw - size) / 2.0)), int(round((nh - size) / 2.0))
    if nw * nh > MAX_IMAGE_PIXELS:  # an extreme aspect ratio: resample only the crop's box of the source
        sx, sy = w / nw, h / nh
        box = (left * sx, top * sy, (left + size) * sx, (top + size) * sy)
        return np.asarray(pil.resize((size, size), Image.Resampling.BICUBIC, box=box))
    if (nw, nh) != (w, h):
        pil = pil.resize((nw, nh), Image.Resampling.BICUBIC)
    return np.asarray(pil.crop((left, top, left + size, top + size)))


def save_png(array: np.ndarray, path: str | os.PathLike) -> None:
    """Write ``(H, W, 3)`` (or ``(H, W)`` grey) uint8 ``array`` as a PNG, atomically.

    Raises ``ValueError`` for other arrays and :class:`~gscodec.format.WriteError`
    when the file cannot be written (any previous file is left untouched).
    """
    arr = np.asarray(array)
    if arr.dtype != np.uint8 or not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] in (3, 4))):
        raise ValueError(f"expected an (H, W), (H, W, 3) or (H, W, 4) uint8 array, got {arr.shape} {arr.dtype}")
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(arr)).save(buf, format="PNG")
    write_atomic(Path(path), buf.getvalue())


__all__ = ["ImageReadError", "image_extensions", "image_to_rgb8", "load_image", "load_image_bytes", "resize_for_clip",
           "save_png"]
