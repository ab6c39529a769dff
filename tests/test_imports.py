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


_LIGHT = """
import json, sys
from pathlib import Path
vectors = Path(sys.argv[1])
seen = {}
import gscodec
seen["import gscodec"] = sorted(m for m in ("torch", "numba", "PIL") if m in sys.modules)
gscodec.peek(vectors / "small-v2.gsi")
seen["peek"] = sorted(m for m in ("torch", "numba") if m in sys.modules)
f = gscodec.read(vectors / "small-v2.gsi")
gscodec.render(f.gaussians, scale=0.5)
gscodec.write(f, Path(sys.argv[2]) / "copy.gsi")
gscodec.register_pillow()
from PIL import Image
Image.open(vectors / "small-quantized.gsi").load()
gscodec.gsi_decoder(".gsi", (vectors / "small-float16.gsi").read_bytes())
seen["read, render, write, Pillow, wds"] = sorted(m for m in ("torch", "numba") if m in sys.modules)
from gscodec_cli.main import cli
view = ["view", str(vectors / "small-v2.gsi"), "-o", sys.argv[2] + "/v.png"]
for args in (["info", str(vectors / "small-v2.gsi")], view + ["--device", "cpu"]) + ((view,) if sys.argv[3] == "auto" else ()):
    try:
        cli(args, prog_name="gsi")
    except SystemExit as exc:
        assert exc.code in (0, None), (args, exc.code)
seen["gsi info, gsi view"] = sorted(m for m in ("torch",) if m in sys.modules)
print(json.dumps(seen))
"""


@pytest.mark.slow
def test_the_core_paths_never_import_torch(tmp_path: Path) -> None:
    """Reading, peeking, rendering, writing, the Pillow plugin, the webdataset handler, ``gsi info`` and ``gsi
    view`` in a fresh interpreter leave torch unimported (and ``import gscodec`` and ``peek`` leave numba too).
    ``gsi view --device auto`` asks torch for CUDA only where an NVIDIA driver is there."""
    from gscodec_cli.device import NVIDIA_NODES

    auto = "no" if any(Path(p).exists() for p in NVIDIA_NODES) else "auto"  # with a driver, auto may need torch
    proc = subprocess.run([sys.executable, "-c", _LIGHT, str(ROOT / "spec" / "vectors"), str(tmp_path), auto], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    assert seen == {"import gscodec": [], "peek": [], "read, render, write, Pillow, wds": ["numba"],
                    "gsi info, gsi view": []}, seen
    assert (tmp_path / "v.png").stat().st_size > 0


_NO_TORCH = """
import json, sys
sys.modules["torch"] = None  # as if torch were not installed: `import torch` raises ImportError
import numpy as np
import gscodec
from gscodec.extras import MissingDependencyError
out = {}
f = gscodec.read(sys.argv[1])
out["render"] = list(gscodec.render(f.gaussians).shape)
for name, call in (("encode_image", lambda: gscodec.encode_image(np.zeros((8, 8, 3), np.uint8))),
                   ("datasets", lambda: __import__("gscodec.datasets")),
                   ("clip", lambda: __import__("gscodec.clip"))):
    try:
        call()
        out[name] = "ran"
    except MissingDependencyError as exc:
        out[name] = str(exc)
from click.testing import CliRunner
from gscodec_cli.main import main
sys.argv = ["gsi", "encode", sys.argv[2], "-o", sys.argv[3]]
try:
    main()
except SystemExit as exc:
    out["gsi encode"] = exc.code
print(json.dumps(out))
"""


@pytest.mark.slow
def test_without_torch_the_extras_fail_with_the_pip_command(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-c", _NO_TORCH, str(ROOT / "spec" / "vectors" / "small-v2.gsi"),
                           str(ROOT / "tests" / "data" / "coffee.png"), str(tmp_path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["render"] == [32, 48, 3]
    assert "pip install 'gscodec[encode]'" in out["encode_image"] and "torch" in out["encode_image"]
    assert "pip install 'gscodec[encode]'" in out["datasets"]
    assert "pip install 'gscodec[clip]'" in out["clip"]
    assert out["gsi encode"] == 1
    assert "pip install 'gscodec[encode]'" in " ".join(proc.stderr.split()) and "Traceback" not in proc.stderr
    assert not list(tmp_path.iterdir())  # nothing written
