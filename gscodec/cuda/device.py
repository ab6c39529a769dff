"""Device selection for the GPU backend: ``"auto"``, ``"cpu"`` or ``"cuda"``, with one clear error.

Nothing here imports triton or initializes CUDA beyond ``torch.cuda.is_available()``.
"""

from __future__ import annotations

import importlib.util

import torch

from ..raster import BackendUnavailableError

DEVICES = ("auto", "cpu", "cuda")


def _triton_installed() -> bool:
    return importlib.util.find_spec("triton") is not None


def cuda_problem() -> str | None:
    """Why the Triton GPU backend cannot run here, or ``None`` when it can."""
    if not torch.backends.cuda.is_built():
        return f"torch {torch.__version__} was built without CUDA; install a CUDA build of torch"
    if not torch.cuda.is_available():
        return "no CUDA device is available (torch.cuda.is_available() is False)"
    if not _triton_installed():
        return "triton is not installed; pip install triton"
    return None


def resolve_device(name: str) -> torch.device:
    """Map ``"auto"`` | ``"cpu"`` | ``"cuda"`` (or ``"cuda:<index>"``) to a :class:`torch.device`.

    ``"auto"`` picks CUDA when ``torch.cuda.is_available()``, else the CPU.

    Raises:
        BackendUnavailableError: ``"cuda"`` was asked for and no CUDA device,
            no CUDA build of torch or no triton is there (the message says which).
        ValueError: an unknown name.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or name.startswith("cuda:"):
        try:
            device = torch.device(name)
        except RuntimeError as exc:
            raise ValueError(f"unknown device {name!r}; valid: {', '.join(DEVICES)}") from exc
        problem = cuda_problem()
        if problem is not None:
            raise BackendUnavailableError(f"device {name!r} requested but {problem}")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise BackendUnavailableError(
                f"device {name!r} requested but only {torch.cuda.device_count()} CUDA device(s) exist"
            )
        return device
    raise ValueError(f"unknown device {name!r}; valid: {', '.join(DEVICES)}")


__all__ = ["DEVICES", "cuda_problem", "resolve_device"]
