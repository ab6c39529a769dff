"""Optional dependencies: which extra of ``pip install gscodec[...]`` brings what, and one clear error.

The core install (numpy, zstandard, numba, Pillow, click, rich) reads, writes,
inspects and renders `.gsi` files. The rest comes with extras (``pyproject.toml``):

* ``encode``: torch, for the fitter (``gsi encode``, :func:`gscodec.encode_image`,
  ``Image.save`` to `.gsi`) and the torch datasets (:mod:`gscodec.datasets`);
* ``clip``: torch, open_clip and safetensors, for the CLIP head (:mod:`gscodec.clip`);
* ``gpu``: torch and gsplat, for CUDA fitting and rendering;
* ``bench``: torch, matplotlib and pytorch-msssim, for ``gsi bench``;
* ``all``: all of these; ``dev``: ``all`` and the test and docs tools.
"""

from __future__ import annotations

import importlib.util


class MissingDependencyError(ImportError):
    """An optional package that the feature asked for needs is not installed; the message names the extra."""


EXTRAS: dict[str, tuple[str, ...]] = {
    "encode": ("torch",),
    "clip": ("torch", "open_clip", "safetensors"),
    "gpu": ("torch", "gsplat"),
    "bench": ("torch", "matplotlib", "pytorch_msssim"),
}
"""Extra -> the import names of the packages it installs (beyond the core)."""


def missing(extra: str) -> list[str]:
    """The import names of ``extra``'s packages that cannot be found here (none imported)."""
    try:
        modules = EXTRAS[extra]
    except KeyError:
        raise ValueError(f"unknown extra {extra!r}; valid: {', '.join(EXTRAS)}") from None
    return [m for m in modules if importlib.util.find_spec(m) is None]


def require(extra: str, feature: str, modules: tuple[str, ...] | None = None) -> None:
    """Raise :class:`MissingDependencyError` if ``modules`` (default all of ``extra``'s) are not installed.

    ``feature`` names what needs them, e.g. ``"encoding"``: the message reads
    ``"encoding needs torch, which is not installed: pip install 'gscodec[encode]'"``.
    """
    absent = missing(extra) if modules is None else [m for m in modules if importlib.util.find_spec(m) is None]
    if absent:
        raise MissingDependencyError(
            f"{feature} needs {', '.join(absent)}, which {'is' if len(absent) == 1 else 'are'} not installed: "
            f"pip install 'gscodec[{extra}]'")


__all__ = ["EXTRAS", "MissingDependencyError", "missing", "require"]
