"""gscodec: images as sums of 2D Gaussians, the `.gsi` format, and a compressed-domain CLIP head.

Library use::

    import gscodec
    f = gscodec.read("photo.gsi")          # GsiFile: header, metadata, gaussians
    pixels = gscodec.render(f.gaussians)   # (H, W, 3) uint8
    gscodec.write(f.gaussians, "copy.gsi")
    data = gscodec.encode_image("photo.jpg", bpp=0.5)   # `.gsi` bytes, as `gsi encode` writes them
"""

from .format import (GsiError, GsiFile, GsiInfo, Mode, decode, encode, peek, read, write)
from .gaussians import GaussianImage, GaussianTensors, InvalidGaussiansError
from .quantize import Quantization, dequantize, quantize, snap
from .render import RenderBudgetError, render, render_float, render_tensor


def register_pillow() -> None:
    """Make Pillow read (``Image.open``, any size through ``draft``/``thumbnail``) and write (``Image.save``)
    `.gsi` files; Pillow has no plugin entry points, so this call is the registration (see :mod:`gscodec.pillow`)."""
    from .pillow import register

    register()


__version__ = "0.1.0"


def __getattr__(name: str):
    if name == "encode_image":  # the encoder imports the fitter: only when it is asked for
        from .encoder import encode_image

        return encode_image
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "GaussianImage", "GaussianTensors", "GsiError", "GsiFile", "GsiInfo", "InvalidGaussiansError", "Mode", "Quantization",
    "RenderBudgetError",
    "decode", "dequantize", "encode", "encode_image", "peek", "quantize", "read", "register_pillow", "render",
    "render_float", "render_tensor", "snap", "write",
]
