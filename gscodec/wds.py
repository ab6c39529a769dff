"""`.gsi` members of tar shards in a webdataset pipeline: a decoder handler, without torch or webdataset.

webdataset calls each handler given to ``wds.decode`` as ``handler(key, data)``
with a sample's field name (the member's extension, e.g. ``"gsi"`` for
``0001.gsi``, ``"x.gsi"`` for ``0001.x.gsi``) and its bytes; a handler returns
the decoded value, or ``None`` to leave the field to the next handler.
:func:`gsi_decoder` decodes every field whose name ends in ``gsi``::

    import webdataset as wds
    import gscodec

    pixels = wds.WebDataset(urls).decode(gscodec.gsi_decoder)                  # "gsi": (H, W, 3) uint8
    params = wds.WebDataset(urls).decode(gscodec.wds.gsi_handler("params"))    # "gsi": (N, 8) float32

A file that is not valid `.gsi` raises :class:`gscodec.GsiError` (and a render
over the budget :class:`gscodec.RenderBudgetError`), which the pipeline's own
``handler=`` (e.g. ``wds.warn_and_continue``) deals with as for any decoder.
This module needs only the core (numpy, zstandard, numba, Pillow); webdataset
itself is not imported, and is not needed for the handler's ``(key, bytes)`` contract.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from .format import GsiFile, decode
from .gaussians import GaussianImage
from .limits import MAX_RENDER_OVERLAP
from .render import output_size, render

OUTPUTS = ("pixels", "params", "gaussians", "file")
"""What a decoded `.gsi` field becomes: ``(H, W, 3)`` uint8 pixels, ``(N, 8)`` float32 parameters
``x, y, l11, l21, l22, r, g, b``, the :class:`~gscodec.GaussianImage`, or the whole :class:`~gscodec.GsiFile`."""

Handler = Callable[[str, bytes], Any]


def render_pixels(g: GaussianImage, width: int | None = None, height: int | None = None,
                  scale: float | None = None, antialias: bool = True,
                  max_overlap: float | None = MAX_RENDER_OVERLAP) -> np.ndarray:
    """``(H, W, 3)`` uint8 render of ``g`` at the size :func:`gscodec.render.output_size` resolves.

    With ``antialias``, a render below the stored size is low-passed first
    (:func:`gscodec.pillow.downscaled`, as Pillow's ``thumbnail`` of a `.gsi`
    renders); at or above the stored size it is the normative decode.
    """
    w, h = output_size(g, width, height, scale)
    if antialias and (w < g.width or h < g.height):
        from .pillow import downscaled

        return render(downscaled(g, w, h), max_overlap=max_overlap)
    return render(g, w, h, max_overlap=max_overlap)


def convert(f: GsiFile, output: str = "pixels", width: int | None = None, height: int | None = None,
            scale: float | None = None, antialias: bool = True) -> Any:
    """A decoded file as ``output`` (one of :data:`OUTPUTS`); the size arguments apply to ``"pixels"``."""
    if output == "file":
        return f
    if output == "gaussians":
        return f.gaussians
    if output == "params":
        return f.gaussians.params()
    if output == "pixels":
        return render_pixels(f.gaussians, width, height, scale, antialias)
    raise ValueError(f"unknown output {output!r}; valid: {', '.join(OUTPUTS)}")


def _is_gsi(key: str) -> bool:
    return key.lower().rsplit(".", 1)[-1] == "gsi"


def gsi_handler(output: str = "pixels", *, width: int | None = None, height: int | None = None,
                scale: float | None = None, antialias: bool = True) -> Handler:
    """A webdataset decoder handler for `.gsi` fields that returns ``output`` (see :data:`OUTPUTS`).

    ``width``/``height``/``scale`` set the size of ``"pixels"`` as :func:`gscodec.render` does
    (one side keeps the aspect ratio; give both for batches of one size); ``antialias`` low-passes
    renders below the stored size (:func:`render_pixels`). Other fields give ``None``, so
    webdataset tries its next handler. Raises ``ValueError`` here for a bad ``output`` or size.
    """
    if output not in OUTPUTS:
        raise ValueError(f"unknown output {output!r}; valid: {', '.join(OUTPUTS)}")
    for name, value in (("width", width), ("height", height)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1):
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if scale is not None and not scale > 0:
        raise ValueError(f"scale must be positive, got {scale!r}")
    if scale is not None and (width is not None or height is not None):
        raise ValueError("give either scale or width/height, not both")

    def handler(key: str, data: bytes) -> Any:
        if not _is_gsi(key) or not isinstance(data, (bytes, bytearray, memoryview)):
            return None
        return convert(decode(data), output, width, height, scale, antialias)

    handler.__name__ = handler.__qualname__ = f"gsi_handler_{output}"
    return handler


gsi_decoder: Handler = gsi_handler("pixels")
"""The default handler: each `.gsi` field as ``(H, W, 3)`` uint8 pixels at its stored size."""


__all__ = ["OUTPUTS", "convert", "gsi_decoder", "gsi_handler", "render_pixels"]
