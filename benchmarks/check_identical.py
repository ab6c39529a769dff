"""Show that a refactor changed no byte: SHA-256 of encoded `.gsi` bytes and of decoded pixels, written or compared.

    python benchmarks/check_identical.py --photos ../shared/photos --write before.json   # on the old commit
    python benchmarks/check_identical.py --photos ../shared/photos --compare before.json # on the new one

Cases: every valid spec vector (its decode at the stored size, and the bytes
the writer makes of its Gaussians again); and a fixed set of fits of the
photos through ``gsi encode`` (``--resize``-cropped, effort 1: two densities,
one ``--bpp`` and one ``--psnr`` target, and a float16 file; levels 3 and 5) and through the
bench codec (``gscodec.bench.codecs.GsiCodec``, no metadata). Each case hashes
the file bytes and the pixels it decodes to. Only the public paths that both
commits have are used (the ``gsi`` command, ``gscodec.decode/encode/render``,
``make_codec``). Exit status 1 when ``--compare`` finds a difference.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
VECTORS = ROOT / "spec" / "vectors"

ENCODE_CASES: dict[str, list[str]] = {
    "density-0.02": ["--density", "0.02"],
    "density-0.06": ["--density", "0.06"],
    "bpp-0.8": ["--bpp", "0.8"],
    "psnr-24": ["--psnr", "24", "--density", "0.05"],
    "float16": ["--points", "300", "--quantization", "float16"],
    "effort-3": ["--effort", "3", "--points", "300"],
    "effort-5": ["--effort", "5"],
}
"""``gsi encode`` options per case (after ``--effort 1 --resize SIZE``; a later ``--effort`` wins). Levels 3
and 5 run the quantization-aware shape fine-tune, which level 1 skips."""


def sha(data: bytes | np.ndarray) -> str:
    """SHA-256 hex of bytes, or of an array's shape, dtype and C-order bytes."""
    if isinstance(data, np.ndarray):
        data = repr((data.shape, str(data.dtype))).encode() + np.ascontiguousarray(data).tobytes()
    return hashlib.sha256(data).hexdigest()


def vector_cases() -> dict[str, dict[str, str]]:
    """Per valid spec vector: the decoded pixels and the writer's bytes for its Gaussians."""
    import gscodec

    out = {}
    for path in sorted(VECTORS.glob("*.gsi")):
        f = gscodec.decode(path.read_bytes())
        again = gscodec.encode(f.gaussians, mode=f.header.mode, metadata=dict(f.metadata))
        out[f"vector/{path.stem}"] = {"pixels": sha(gscodec.render(f.gaussians)), "rewritten": sha(again)}
    return out


def encode_cases(photos: list[Path], size: int) -> dict[str, dict[str, str]]:
    """Per photo and :data:`ENCODE_CASES` entry: the `.gsi` bytes ``gsi encode`` writes and their pixels."""
    from click.testing import CliRunner

    import gscodec
    from gscodec_cli.main import cli

    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, options in ENCODE_CASES.items():
            dest = Path(tmp) / name
            args = ["encode", *map(str, photos), "-o", f"{dest}/", "--effort", "1", "--resize", str(size), *options]
            result = CliRunner().invoke(cli, args, catch_exceptions=False)
            if result.exit_code != 0:
                raise SystemExit(f"gsi {' '.join(args)} failed:\n{result.output}")
            for photo in photos:
                data = (dest / f"{photo.stem}.gsi").read_bytes()
                out[f"encode/{name}/{photo.stem}"] = {"gsi": sha(data),
                                                      "pixels": sha(gscodec.render(gscodec.decode(data).gaussians))}
    return out


def bench_cases(photos: list[Path], size: int) -> dict[str, dict[str, str]]:
    """Per photo: the bench codec's bytes at one density, and its decode."""
    from PIL import Image

    from gscodec.bench.codecs import make_codec

    codec = make_codec("gsi", (0.03,), effort=1)
    out = {}
    for photo in photos:
        with Image.open(photo) as im:
            image = np.asarray(im.convert("RGB").resize((size, size), Image.Resampling.LANCZOS))
        data = codec.encode(image, 0.03)
        out[f"bench/{photo.stem}"] = {"gsi": sha(data), "pixels": sha(codec.decode(data))}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=Path, required=True, help="folder of development photos")
    parser.add_argument("--names", default="coffee,chelsea,camera_gray", help="photo stems, comma-separated")
    parser.add_argument("--size", type=int, default=128, help="--resize of the fits (pixels)")
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--write", type=Path, help="write the manifest here")
    group.add_argument("--compare", type=Path, help="compare with this manifest")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    photos = [args.photos / f"{n}.png" for n in args.names.split(",")]
    manifest = {"size": args.size, "photos": [p.name for p in photos],
                "cases": vector_cases() | encode_cases(photos, args.size) | bench_cases(photos, args.size)}
    if args.write is not None:
        args.write.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
        print(f"{len(manifest['cases'])} cases written to {args.write}")
        return 0
    before = json.loads(args.compare.read_text())
    if (before["size"], before["photos"]) != (manifest["size"], manifest["photos"]):
        print("the manifests were made from other photos or sizes")
        return 1
    cases, old = manifest["cases"], before["cases"]
    differ = sorted(k for k in cases.keys() | old.keys() if cases.get(k) != old.get(k))
    for key in differ:
        print(f"DIFFERENT {key}: {old.get(key)} -> {cases.get(key)}")
    hashes = sum(len(v) for v in cases.values())
    print(f"{len(cases)} cases ({hashes} hashes): {'all identical' if not differ else f'{len(differ)} differ'}")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
