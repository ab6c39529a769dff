"""``torch.distributed`` from the environment ``torchrun`` sets: ranks, the process group and a few collectives.

``torchrun --nproc-per-node N ...`` starts ``N`` processes with ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``LOCAL_WORLD_SIZE``, ``MASTER_ADDR`` and
``MASTER_PORT`` set. Everything here also works in a single plain process
(rank 0 of 1), where the collectives do nothing.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Mapping

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistEnv:
    """This process's place in a ``torchrun`` job (``0, 1, 0, 1`` in a plain process)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1
    launched: bool = False
    """True when a rendezvous address is set (``MASTER_ADDR``/``MASTER_PORT``), so a process group can be made."""


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    text = env.get(name, "")
    if not text.strip():
        return default
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"environment variable {name}={text!r} is not a whole number") from None


def env_info(env: Mapping[str, str] | None = None) -> DistEnv:
    """Read ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``/``LOCAL_WORLD_SIZE``; raises ``ValueError`` for bad values."""
    env = os.environ if env is None else env
    world = _int(env, "WORLD_SIZE", 1)
    rank = _int(env, "RANK", 0)
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"RANK={rank} and WORLD_SIZE={world} do not describe a process (0 <= RANK < WORLD_SIZE)")
    local_world = _int(env, "LOCAL_WORLD_SIZE", 1 if world == 1 else world)
    return DistEnv(rank, world, _int(env, "LOCAL_RANK", 0), max(1, local_world),
                   bool(env.get("MASTER_ADDR") and env.get("MASTER_PORT")))


def init_from_env(backend: str | None = None, timeout: timedelta | None = None) -> DistEnv:
    """Join the process group of a ``torchrun`` job when ``WORLD_SIZE > 1``; returns the environment.

    ``backend`` defaults to NCCL when CUDA is available, else gloo. Nothing is
    done in a single process, or when the group already exists.
    """
    info = env_info()
    if info.world_size > 1 and not dist.is_initialized():
        if not info.launched:
            raise ValueError("WORLD_SIZE > 1 but MASTER_ADDR/MASTER_PORT are not set: start the processes with "
                             "torchrun (python -m torch.distributed.run)")
        backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
        kwargs: dict[str, Any] = {"timeout": timeout} if timeout is not None else {}
        dist.init_process_group(backend, **kwargs)
    return info


def active() -> bool:
    """True inside a process group of more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's rank in the group (0 without one)."""
    return dist.get_rank() if active() else 0


def world_size() -> int:
    """The number of processes in the group (1 without one)."""
    return dist.get_world_size() if active() else 1


def is_main() -> bool:
    """True on rank 0 (and in a single process): the one that writes shared files and prints results."""
    return rank() == 0


def barrier() -> None:
    """Wait for every process of the group."""
    if active():
        dist.barrier()


def all_gather_object(obj: Any) -> list[Any]:
    """Every rank's ``obj`` (picklable), in rank order; ``[obj]`` without a group."""
    if not active():
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_tensors(tensors: list[torch.Tensor], src: int = 0) -> None:
    """Overwrite ``tensors`` in place with rank ``src``'s values."""
    if active():
        for t in tensors:
            dist.broadcast(t.data, src)


def gather_rows(x: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Every rank's rows of ``x`` ``(n_r, ...)`` concatenated in rank order, and this rank's first row.

    Ranks may hold different row counts. Rows from other ranks carry no
    gradient; this rank's own rows keep theirs (the local-gradient gather of
    contrastive training). Without a group: ``(x, 0)``.
    """
    if not active():
        return x, 0
    n = torch.tensor([x.shape[0]], device=x.device, dtype=torch.long)
    counts = [torch.zeros_like(n) for _ in range(dist.get_world_size())]
    dist.all_gather(counts, n)
    sizes = [int(c) for c in counts]
    padded = x.detach().new_zeros((max(sizes), *x.shape[1:]))
    padded[:x.shape[0]] = x.detach()
    parts = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(parts, padded.contiguous())
    me = dist.get_rank()
    rows = [x if r == me else part[:size] for r, (part, size) in enumerate(zip(parts, sizes))]
    return torch.cat(rows), sum(sizes[:me])


def shutdown() -> None:
    """Leave the process group, if there is one."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


__all__ = ["DistEnv", "active", "all_gather_object", "barrier", "broadcast_tensors", "env_info", "gather_rows", "init_from_env",
           "is_main", "rank", "shutdown", "world_size"]
