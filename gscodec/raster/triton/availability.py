"""Device selection for the GPU backend: ``"auto"``, ``"cpu"`` or ``"cuda"``, with one clear error.

Nothing here imports triton or initializes CUDA beyond ``torch.cuda.is_available()``.
"""

from __future__ import annotations

import importlib.util

import torch

from .. import BackendUnavailableError

DEVICES = ("auto", "cpu", "cuda")


def _triton_installed() -> bool:
    return importlib.util.find_spec("triton") is not None


def cuda_problem(need_triton: bool = True) -> str | None:
    """Why the GPU cannot be used here (the Triton backend, or plain CUDA torch without ``need_triton``), or ``None``."""
    if not torch.backends.cuda.is_built():
        return f"torch {torch.__version__} was built without CUDA; install a CUDA build of torch"
    if not torch.cuda.is_available():
        return "no CUDA device is available (torch.cuda.is_available() is False)"
    if need_triton and not _triton_installed():
        return "triton is not installed; pip install triton"
    return None


def resolve_device(name: str, need_triton: bool = True) -> torch.device:
    """Map ``"auto"`` | ``"cpu"`` | ``"cuda"`` (or ``"cuda:<index>"``) to a :class:`torch.device`.

    ``"auto"`` picks CUDA when it can be used (a device and, with
    ``need_triton``, an installed triton), else the CPU. ``need_triton=False``
    suits callers that run only PyTorch on the device (e.g. CLIP models).

    Raises:
        BackendUnavailableError: ``"cuda"`` was asked for and no CUDA device,
            no CUDA build of torch or (with ``need_triton``) no triton is there
            (the message says which).
        ValueError: an unknown name.
    """
    if name == "auto":
        return torch.device("cpu" if cuda_problem(need_triton) else "cuda")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or name.startswith("cuda:"):
        try:
            device = torch.device(name)
        except RuntimeError as exc:
            raise ValueError(f"unknown device {name!r}; valid: {', '.join(DEVICES)}") from exc
        problem = cuda_problem(need_triton)
        if problem is not None:
            raise BackendUnavailableError(f"device {name!r} requested but {problem}")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise BackendUnavailableError(
                f"device {name!r} requested but only {torch.cuda.device_count()} CUDA device(s) exist"
            )
        return device
    raise ValueError(f"unknown device {name!r}; valid: {', '.join(DEVICES)}")


__all__ = ["DEVICES", "cuda_problem", "resolve_device"]
