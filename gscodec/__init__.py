"""gscodec: images as sums of 2D Gaussians, the `.gsi` format, and a compressed-domain CLIP head.

Library use::

    import gscodec
    f = gscodec.read("photo.gsi")          # GsiFile: header, metadata, gaussians
    pixels = gscodec.render(f.gaussians)   # (H, W, 3) uint8
    gscodec.write(f, "copy.gsi")           # the same Gaussians, metadata, mode and version
    data = gscodec.encode_image("photo.jpg", quality=75)   # `.gsi` bytes, as `gsi encode` writes them

Importing the package loads numpy and nothing heavier. Reading, writing and
rendering need only numpy, zstandard, numba and Pillow (the core install;
numba loads on the first payload decode or render); :func:`encode_image`, the
datasets of :mod:`gscodec.datasets`, the CLIP head (:mod:`gscodec.clip`) and
GPU rendering import torch (the ``encode``, ``clip`` and ``gpu`` extras).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# The core, eagerly: these modules need numpy only (the payload codecs and the renderer load numba on first use).
from .format import GsiError, GsiFile, GsiInfo, Mode, decode, encode, peek, read, write
from .gaussians import GaussianImage, GaussianTensors, InvalidGaussiansError
from .quantize import Quantization, dequantize, quantize, snap
from .render import RenderBudgetError, render, render_float, render_tensor

_LAZY: dict[str, str] = {
    "quality_settings": "presets",
    "gsi_decoder": "wds", "gsi_handler": "wds",
    # torch: the encoder (the fitter) and the datasets
    "encode_image": "encoder", "EncodeError": "encoder",
    "GsiImageDataset": "datasets",
}
"""Public names imported from their module on first use, so that ``import gscodec`` stays light."""

if TYPE_CHECKING:  # for type checkers and IDEs; at run time these load lazily (PEP 562)
    from .datasets import GsiImageDataset
    from .encoder import EncodeError, encode_image
    from .presets import quality_settings
    from .wds import gsi_decoder, gsi_handler


def register_pillow() -> None:
    """Make Pillow read (``Image.open``, any size through ``draft``/``thumbnail``) and write (``Image.save``)
    `.gsi` files; Pillow has no plugin entry points, so this call is the registration (see :mod:`gscodec.pillow`).
    Opening and rendering a file does not import torch; saving one runs the fitter, which does."""
    from .pillow import register

    register()


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "EncodeError", "GaussianImage", "GaussianTensors", "GsiError", "GsiFile", "GsiImageDataset", "GsiInfo",
    "InvalidGaussiansError", "Mode", "Quantization", "RenderBudgetError",
    "decode", "dequantize", "encode", "encode_image", "gsi_decoder", "gsi_handler", "peek", "quality_settings", "quantize", "read",
    "register_pillow", "render", "render_float", "render_tensor", "snap", "write",
]
