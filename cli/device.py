"""The ``--device auto|cpu|cuda`` switch of ``gsi encode``, ``view`` and ``classify``, resolved once here."""

from __future__ import annotations

import importlib.util
import os
from typing import Any

import click

DEVICE_HELP = "auto (CUDA when usable, else the CPU), cpu, cuda or cuda:N."


def device_option(**overrides: Any) -> Any:
    """The shared ``--device`` click option (default ``auto``)."""
    return click.option("--device", default="auto", show_default=True, metavar="auto|cpu|cuda",
                        help=overrides.pop("help", DEVICE_HELP), **overrides)


NVIDIA_NODES = ("/dev/nvidiactl", "/proc/driver/nvidia/version")
"""Paths the NVIDIA driver creates; with none of them there is no CUDA device to find."""


def render_device(name: str) -> Any:
    """``--device name`` for rendering: ``"cpu"`` without importing torch where the CPU is the answer anyway
    (``cpu``, or ``auto`` with torch or triton not installed or no NVIDIA driver: the light core decodes
    without torch), else :func:`cli_device`'s :class:`torch.device`."""
    if name == "cpu":
        return "cpu"
    if name == "auto" and (not all(importlib.util.find_spec(m) for m in ("torch", "triton"))
                           or not any(os.path.exists(p) for p in NVIDIA_NODES)):
        return "cpu"
    return cli_device(name)


def cli_device(name: str, need_triton: bool = True) -> Any:
    """The :class:`torch.device` for ``--device name``.

    An unknown name is a usage error (exit 2); CUDA asked for where it cannot
    run is a :class:`click.ClickException` (exit 1) naming what is missing.
    """
    from gscodec.raster.triton.availability import resolve_device
    from gscodec.raster import BackendUnavailableError

    try:
        return resolve_device(name, need_triton=need_triton)
    except BackendUnavailableError as exc:
        raise click.ClickException(f"--device {name}: {exc}") from None
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="'--device'") from None


__all__ = ["DEVICE_HELP", "cli_device", "device_option", "render_device"]
