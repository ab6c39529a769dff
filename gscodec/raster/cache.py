"""Numba's on-disk kernel cache, keyed on every source a kernel depends on.

Numba keys a cached kernel on its own file's time and size only, so a kernel
that calls an intrinsic or reads a constant from another module (the strip
kernels of :mod:`.strips`, the footprints of :mod:`.footprint`,
``CUTOFF_SQ`` of :mod:`gscodec.limits`) would keep running stale machine code
after that other file changes. :func:`key_caches_on_sources` adds a digest of
all those files to the cache's stamp, so editing any of them recompiles every
CPU kernel once. Hashing them (67 kB) takes about half a millisecond, once per process.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path
from typing import Any

_HERE = Path(__file__).resolve().parent
SOURCES = (_HERE.parent / "limits.py", *(_HERE / f"{m}.py" for m in
                                       ("backward", "cache", "cpu", "footprint", "forward", "gradients", "strips")))
"""The files the CPU kernels are compiled from."""


@lru_cache(maxsize=1)
def sources_digest() -> str:
    """SHA-256 (hex) of :data:`SOURCES`, in order."""
    h = hashlib.sha256()
    for path in SOURCES:
        h.update(path.read_bytes())
    return h.hexdigest()


def key_caches_on_sources(namespace: dict[str, Any]) -> int:
    """Make every ``cache=True`` numba dispatcher in ``namespace`` (a module's ``globals()``) stamp its cache
    index with :func:`sources_digest` besides its own file's stamp; returns how many. Call it at the end of the
    module, before any kernel runs (numba reads the index on the first call)."""
    keyed = 0
    for obj in list(namespace.values()):
        cache_file = getattr(getattr(obj, "_cache", None), "_cache_file", None)
        stamp = getattr(cache_file, "_source_stamp", None)
        if stamp is None or (isinstance(stamp, tuple) and len(stamp) == 2 and stamp[1] == sources_digest()):
            continue
        cache_file._source_stamp = (stamp, sources_digest())
        keyed += 1
    return keyed


__all__ = ["SOURCES", "key_caches_on_sources", "sources_digest"]
