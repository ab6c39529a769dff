"""gscodec: images as sums of 2D Gaussians, the `.gsi` format, and a compressed-domain CLIP head.

Library use::

    import gscodec
    f = gscodec.read("photo.gsi")          # GsiFile: header, metadata, gaussians
    pixels = gscodec.render(f.gaussians)   # (H, W, 3) uint8
    gscodec.write(f.gaussians, "copy.gsi")
"""

from .format import (GsiError, GsiFile, GsiInfo, Mode, decode, encode, peek, read, write)
from .gaussians import GaussianImage, InvalidGaussiansError
from .quantize import Quantization, dequantize, quantize, snap
from .render import RenderBudgetError, render, render_float


def register_pillow() -> None:
    """Make Pillow read (``Image.open``, any size through ``draft``/``thumbnail``) and write (``Image.save``)
    `.gsi` files; Pillow has no plugin entry points, so this call is the registration (see :mod:`gscodec.pillow`)."""
    from .pillow import register

    register()


__version__ = "0.1.0"

__all__ = [
    "GaussianImage", "GsiError", "GsiFile", "GsiInfo", "InvalidGaussiansError", "Mode", "Quantization",
    "RenderBudgetError",
    "decode", "dequantize", "encode", "peek", "quantize", "read", "register_pillow", "render", "render_float",
    "snap", "write",
]
