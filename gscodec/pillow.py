"""Pillow plugin: ``PIL.Image.open("x.gsi")`` decodes a `.gsi` file to RGB at its stored size.

Errors are Pillow's: a file that is not a valid `.gsi` header is not opened
(``PIL.UnidentifiedImageError``, an ``OSError``, as for any unknown data);
one whose payload is corrupt raises ``OSError`` when its pixels are loaded; a
decompression bomb (a render over :data:`~gscodec.limits.MAX_RENDER_OVERLAP`,
see :func:`gscodec.render.check_render_budget`) raises
``PIL.Image.DecompressionBombError`` on loading, the error Pillow itself raises
for images with too many pixels, so code that guards against Pillow's bombs
guards against these too. Pillow's own pixel limit applies to the declared size
at ``open``.
"""

from __future__ import annotations

from PIL import Image, ImageFile

from .format import GsiError, peek, read
from .format.header import MAGIC
from .render import RenderBudgetError, render

FORMAT = "GSI"


def _accept(prefix: bytes) -> bool:
    return prefix[: len(MAGIC)] == MAGIC


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
        self._size = (info.header.width, info.header.height)
        self.info.update(info.metadata)
        self.info["gaussians"] = info.header.count
        self.tile = [ImageFile._Tile(FORMAT, (0, 0) + self._size, 0, None)]


class GsiDecoder(ImageFile.PyDecoder):
    """Reads the whole file from the image's file object and renders it."""

    _pulls_fd = True

    def decode(self, buffer: bytes | Image.SupportsArrayInterface) -> tuple[int, int]:
        assert self.fd is not None
        self.fd.seek(0)
        try:
            pixels = render(read(self.fd).gaussians)
        except RenderBudgetError as exc:
            raise Image.DecompressionBombError(f".gsi decompression bomb: {exc}") from exc
        except GsiError as exc:
            raise OSError(f"cannot decode .gsi file: {exc}") from exc
        self.set_as_raw(pixels.tobytes())
        return -1, 0


def register() -> None:
    """Register the `.gsi` opener, decoder and extension with Pillow (idempotent)."""
    Image.register_open(FORMAT, GsiImageFile, _accept)
    Image.register_decoder(FORMAT, GsiDecoder)
    Image.register_extension(FORMAT, ".gsi")
    Image.register_mime(FORMAT, "image/x-gsi")
