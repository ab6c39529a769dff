"""The CPU kernels' numba cache is keyed on every source they are compiled from (gscodec.raster.cache)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from gscodec.raster import cache


def _load(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def test_every_cached_cpu_kernel_is_keyed_on_the_sources() -> None:
    from gscodec.raster import backward, footprint, forward, strips

    keyed = 0
    for module in (backward, footprint, forward, strips):
        for obj in vars(module).values():
            cache_file = getattr(getattr(obj, "_cache", None), "_cache_file", None)
            if cache_file is not None:
                assert cache_file._source_stamp[1] == cache.sources_digest(), obj
                keyed += 1
    assert keyed >= 8
    assert {p.name for p in cache.SOURCES} >= {"strips.py", "footprint.py", "limits.py", "gradients.py"}


def test_a_changed_dependency_recompiles_a_cached_kernel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = tmp_path / "kernel_mod.py"
    source.write_text("from numba import njit\n\n@njit(cache=True)\ndef f(x):\n    return x + 1\n")

    def run(digest: str, name: str) -> tuple[int, int]:
        monkeypatch.setattr(cache, "sources_digest", lambda: digest)
        module = _load(source, name)
        assert cache.key_caches_on_sources(vars(module)) == 1
        assert module.f(1) == 2
        stats = module.f.stats
        return sum(stats.cache_hits.values()), sum(stats.cache_misses.values())

    assert run("one", "kernel_mod_a") == (0, 1)  # compiled and saved
    assert run("one", "kernel_mod_b") == (1, 0)  # same sources: loaded from the cache
    assert run("two", "kernel_mod_c") == (0, 1)  # a dependency changed: compiled again, not the stale code
