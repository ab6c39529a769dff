"""The ``--device auto|cpu|cuda`` switch of ``gsi encode``, ``view`` and ``classify``, resolved once here."""

from __future__ import annotations

from typing import Any

import click

DEVICE_HELP = "auto (CUDA when usable, else the CPU), cpu, cuda or cuda:N."


def device_option(**overrides: Any) -> Any:
    """The shared ``--device`` click option (default ``auto``)."""
    return click.option("--device", default="auto", show_default=True, metavar="auto|cpu|cuda",
                        help=overrides.pop("help", DEVICE_HELP), **overrides)


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


__all__ = ["DEVICE_HELP", "cli_device", "device_option"]
