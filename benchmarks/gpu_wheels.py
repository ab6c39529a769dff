"""Prepare the offline bundle for ``benchmarks/gpu_check.py``: the wheels a GPU machine without network lacks.

The machine the check is written for has Python 3.12 with PyTorch, Triton,
numba, numpy, pillow, click, rich, safetensors and matplotlib, and nothing
else of this project's dependencies. Run here (where PyPI is reachable)::

    python benchmarks/gpu_wheels.py            # -> gpu-bundle/ (ignored by git)

It downloads, without resolving dependencies, exactly :data:`RUNTIME` (what
the check's code paths import) and :data:`BUILD` (the build backend pip needs
for ``pip install -e .`` without an index), CPython 3.12 manylinux x86-64
wheels, into ``gpu-bundle/wheels/``, at the versions installed here when they
are (what the tests ran with), and removes any other wheel there (two versions
of one package stop an install). :data:`NOT_CARRIED` lists the dependencies
the check's paths do not import. With ``--photos DIR`` (default
``../shared/photos`` when it exists) the photos are copied to
``gpu-bundle/photos/`` for the fitter section. Exits 1 if the wheels exceed
``--max-mb`` (50).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUNDLE = ROOT / "gpu-bundle"

RUNTIME = ("zstandard", "open_clip_torch", "ftfy", "wcwidth")
"""Distributions the check imports that the machine lacks: zstandard (every .gsi file), open_clip_torch
(the CLIP head's trunk) and ftfy with its wcwidth (imported by open_clip's tokenizer)."""

BUILD = ("setuptools",)
"""The build backend of ``pip install -e .`` (pyproject's build-system), found offline in the same folder."""

NOT_CARRIED = {
    "gsplat": "tile binning falls back to PyTorch (gscodec.raster.triton.binning); its CUDA extension would compile for minutes",
    "pytorch_msssim": "only MS-SSIM in gsi bench",
}
"""Import names of dependencies the check's paths do not need, with the reason; its dry run blocks them."""

PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")
PHOTO_SUFFIXES = (".png", ".jpg", ".jpeg")


def _canonical(name: str) -> str:
    return name.lower().replace("-", "_").replace(".", "_")


def requirement(name: str) -> str:
    """``name==version`` as installed here, else the bare name (the newest on the index)."""
    try:
        return f"{name}=={importlib.metadata.version(name)}"
    except importlib.metadata.PackageNotFoundError:
        return name


def download(dest: Path, names: tuple[str, ...] = RUNTIME + BUILD) -> list[Path]:
    """Download ``names`` as CPython 3.12 manylinux x86-64 (or pure Python) wheels into ``dest``; drop other wheels."""
    dest.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
           "--python-version", "3.12", "--implementation", "cp", "-d", str(dest)]
    for platform in PLATFORMS:
        cmd += ["--platform", platform]
    subprocess.run(cmd + [requirement(n) for n in names], check=True)
    wanted = {requirement(n).split("==")[0]: requirement(n) for n in names}
    kept = []
    for wheel in sorted(dest.glob("*.whl")):
        dist, version = wheel.name.split("-")[:2]
        spec = wanted.get(next((n for n in wanted if _canonical(n) == _canonical(dist)), ""), None)
        if spec is None or ("==" in spec and spec.split("==")[1] != version):
            wheel.unlink()
        else:
            kept.append(wheel)
    return kept


def copy_photos(src: Path, dest: Path) -> list[Path]:
    """Copy the photos directly in ``src`` to ``dest`` (replacing what was there)."""
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    return [Path(shutil.copy2(p, dest)) for p in sorted(src.iterdir()) if p.suffix.lower() in PHOTO_SUFFIXES]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=BUNDLE, help="bundle folder (default gpu-bundle/)")
    parser.add_argument("--photos", type=Path, default=ROOT.parent / "shared" / "photos",
                        help="photos to carry for the fitter section (skipped if the folder does not exist)")
    parser.add_argument("--max-mb", type=float, default=50.0, help="largest allowed size of the wheels")
    args = parser.parse_args()
    wheels = download(args.out / "wheels")
    size = sum(w.stat().st_size for w in wheels)
    for w in wheels:
        print(f"{w.stat().st_size / 2**20:7.2f} MiB  {w.name}")
    print(f"wheels: {len(wheels)} files, {size / 2**20:.2f} MiB in {args.out / 'wheels'}")
    if args.photos.is_dir():
        photos = copy_photos(args.photos, args.out / "photos")
        psize = sum(p.stat().st_size for p in photos)
        print(f"photos: {len(photos)} files, {psize / 2**20:.2f} MiB in {args.out / 'photos'}")
    else:
        print(f"photos: {args.photos} not found; the check will use tests/data/")
    total = sum(p.stat().st_size for p in args.out.rglob("*") if p.is_file())
    print(f"bundle: {total / 2**20:.2f} MiB (carry it with the checkout: 64 MiB in all)")
    if size > args.max_mb * 2**20:
        print(f"the wheels exceed {args.max_mb} MiB", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
