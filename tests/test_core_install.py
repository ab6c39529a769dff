"""The light core installs and works without torch: a fresh venv gets ``pip install .`` (the core dependencies
only, resolved by pip from pyproject.toml), then reads, renders, re-writes and inspects committed vectors.

Slow (a venv and a pip install, about a minute with a warm pip cache); CI runs it. It needs the package index
that ``pip install -e ".[dev]"`` used; without one it fails rather than skips, so that it cannot pass unseen.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
VECTORS = ROOT / "spec" / "vectors"
CASES = ("small-v2", "small-quantized", "small-float16")  # version 2, version 1 quantized, a float mode

SCRIPT = r"""
import importlib.util, json, sys
from pathlib import Path

import numpy as np
from PIL import Image

assert importlib.util.find_spec("torch") is None, "torch is installed in the core venv"
import gscodec

vectors, out = Path(sys.argv[1]), Path(sys.argv[2])
for name in json.loads(sys.argv[3]):
    f = gscodec.read(vectors / f"{name}.gsi")
    expected = np.asarray(Image.open(vectors / f"{name}.png").convert("RGB")).astype(int)
    pixels = gscodec.render(f.gaussians)
    assert pixels.shape == expected.shape and pixels.dtype == np.uint8, (pixels.shape, pixels.dtype)
    assert np.abs(pixels.astype(int) - expected).max() <= 1, name  # spec section 9: within 1 of the vector
    gscodec.write(f, out / f"{name}.gsi")
    again = gscodec.read(out / f"{name}.gsi")
    assert again.gaussians.equal(f.gaussians) and again.metadata == f.metadata, name
    assert (again.header.mode, again.header.version) == (f.header.mode, f.header.version), name
    gscodec.register_pillow()
    with Image.open(vectors / f"{name}.gsi") as im:
        assert np.array_equal(np.asarray(im.convert("RGB")), pixels), name
    print("rendered", name, pixels.shape)
try:
    gscodec.encode_image(np.zeros((8, 8, 3), np.uint8))
except ImportError as exc:
    assert "gscodec[encode]" in str(exc), exc
    print("encode refused:", exc)
else:
    raise AssertionError("encode_image ran without torch")
print("modules:", sorted(m for m in ("torch", "numba", "zstandard", "PIL") if m in sys.modules))
print("CORE-OK")
"""


@pytest.mark.slow
def test_core_installs_reads_and_renders_without_torch(tmp_path: Path) -> None:
    source = tmp_path / "src"  # a copy: the build writes build/ and *.egg-info beside the sources
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(ROOT / name, source / name)
    for folder in ("gscodec", "cli"):
        shutil.copytree(ROOT / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__", "*.nb[ci]"))
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True, clear=True).create(env_dir)
    python = env_dir / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env["PATH"] = f"{env_dir / 'bin'}{os.pathsep}{env.get('PATH', '')}"

    install = subprocess.run([str(python), "-m", "pip", "install", "-q", str(source)], capture_output=True,
                             text=True, timeout=900, env=env)
    assert install.returncode == 0, f"pip install of the core failed:\n{install.stdout}\n{install.stderr}"
    listed = subprocess.run([str(python), "-m", "pip", "list", "--format=json"], capture_output=True, text=True,
                            env=env, check=True)
    installed = {p["name"].lower() for p in json.loads(listed.stdout)}
    assert {"gscodec", "numpy", "numba", "zstandard", "pillow"} <= installed, installed
    assert not installed & {"torch", "open-clip-torch", "gsplat", "matplotlib"}, installed & {"torch"}

    out = tmp_path / "out"
    out.mkdir()
    proc = subprocess.run([str(python), "-c", SCRIPT, str(VECTORS), str(out), json.dumps(CASES)],
                          capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert proc.returncode == 0 and proc.stdout.rstrip().endswith("CORE-OK"), proc.stdout + proc.stderr
    assert sum(line.startswith("rendered ") for line in proc.stdout.splitlines()) == len(CASES)
    assert "'torch'" not in proc.stdout.split("modules:")[1]

    gsi = env_dir / "bin" / "gsi"
    info = subprocess.run([str(gsi), "info", "--json", str(VECTORS / "small-v2.gsi")], capture_output=True,
                          text=True, timeout=300, env=env, cwd=tmp_path)
    assert info.returncode == 0, info.stdout + info.stderr
    assert json.loads(info.stdout)["records"][0]["gaussians"] == 64
    view = subprocess.run([str(gsi), "view", str(VECTORS / "small-v2.gsi"), "-o", str(out / "v.png")],
                          capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert view.returncode == 0, view.stdout + view.stderr
    encode = subprocess.run([str(gsi), "encode", str(ROOT / "tests" / "data" / "coffee.png"), "-o", str(out)],
                            capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert encode.returncode == 1 and "gscodec[encode]" in encode.stdout + encode.stderr, encode.stderr
    assert "Traceback" not in encode.stderr, encode.stderr
    # the view's PNG is the vector's render
    check = subprocess.run([str(python), "-c", "import sys, numpy as np; from PIL import Image; "
                            "a, b = (np.asarray(Image.open(p).convert('RGB')).astype(int) for p in sys.argv[1:]); "
                            "sys.exit(0 if a.shape == b.shape and np.abs(a - b).max() <= 1 else 1)",
                            str(out / "v.png"), str(VECTORS / "small-v2.png")], env=env, timeout=120)
    assert check.returncode == 0
