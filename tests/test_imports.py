"""Every module imports on its own, first, in a fresh interpreter state: no import cycle, no hidden order."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _modules() -> list[str]:
    names = []
    for package, folder in (("gscodec", ROOT / "gscodec"), ("gscodec_cli", ROOT / "cli")):
        for path in sorted(folder.rglob("*.py")):
            parts = path.relative_to(folder).with_suffix("").parts
            if parts[-1] == "__main__":
                continue
            names.append(".".join((package, *parts[:-1])) if parts[-1] == "__init__" else
                         ".".join((package, *parts)))
    return names


_CHECK = """
import importlib, json, sys, traceback
failures = {}
for name in json.loads(sys.argv[1]):
    for loaded in [m for m in sys.modules if m.split(".")[0] in ("gscodec", "gscodec_cli")]:
        del sys.modules[loaded]
    try:
        importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name is None or exc.name.split(".")[0] in ("gscodec", "gscodec_cli"):
            failures[name] = traceback.format_exc()
    except Exception:
        failures[name] = traceback.format_exc()
print(json.dumps(failures))
"""


@pytest.mark.slow
def test_every_module_imports_first() -> None:
    """Each module is imported with no gscodec module loaded before it (third-party ones stay, for speed); a
    cycle fails as an ImportError of a partly initialized module. An optional third-party package that is
    missing here (e.g. triton) is not a failure."""
    modules = _modules()
    assert len(modules) > 60 and "gscodec.encoder" in modules and "gscodec.raster.triton.kernels" in modules
    proc = subprocess.run([sys.executable, "-c", _CHECK, json.dumps(modules)], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    failures = json.loads(proc.stdout.strip().splitlines()[-1])
    assert not failures, "\n".join(f"{k}:\n{v}" for k, v in failures.items())
