"""Benchmark of the fitter: PSNR and time per image at the paper's budgets, grid vs adaptive init.

Every photo in ``--photos`` is resized (shorter side to ``--size``, Lanczos) and
centre-cropped to ``size x size``; all are fitted together with ``fit_batch``
for each budget and initialization. The table reports mean PSNR of the
quantized result (what the file decodes to) and of the float fit, mean Adam
steps, and wall and CPU seconds per image.

Example::

    python benchmarks/bench_fit.py --photos /work/shared/photos
    python benchmarks/bench_fit.py --photos DIR --points 900 --inits adaptive --set iterations=400 lr_means=0.5

``OMP_WAIT_POLICY`` is set to ``PASSIVE`` before torch is imported unless it is
already set (``--omp-active`` leaves it unset): torch and the numba kernels
share one OpenMP runtime, whose spinning idle threads cost far more than they
save when the machine is busy.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".ppm"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--photos", required=True, type=Path, help="folder of photos")
    ap.add_argument("--size", type=int, default=224, help="side of the square crop (default 224)")
    ap.add_argument("--points", type=int, nargs="+", default=[400, 900, 1600, 3136], help="Gaussian budgets")
    ap.add_argument("--inits", nargs="+", default=["grid", "adaptive"], choices=["grid", "adaptive"])
    ap.add_argument("--limit", type=int, default=None, help="use only the first N photos (sorted by name)")
    ap.add_argument("--batch", type=int, default=0, help="images per fit_batch call (0: all at once)")
    ap.add_argument("--no-quant", action="store_true", help="fit without quantization")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="override FitConfig fields")
    ap.add_argument("--per-image", action="store_true", help="also print every image's PSNR")
    ap.add_argument("--omp-active", action="store_true", help="do not set OMP_WAIT_POLICY=PASSIVE")
    return ap.parse_args(argv)


def load_photos(folder: Path, size: int, limit: int | None):
    import numpy as np
    from PIL import Image

    from gscodec.fit.targets import resize_center_crop

    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if limit:
        paths = paths[:limit]
    if not paths:
        raise SystemExit(f"no photos in {folder}")
    images = []
    for p in paths:
        with Image.open(p) as im:
            images.append(resize_center_crop(np.asarray(im.convert("RGB")), size))
    return [p.name for p in paths], images


def parse_value(text: str):
    import ast

    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if not args.omp_active:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import numpy as np
    import torch

    from gscodec.fit import FitConfig, fit_batch

    names, images = load_photos(args.photos, args.size, args.limit)
    overrides = dict(kv.split("=", 1) for kv in args.set)
    overrides = {k: parse_value(v) for k, v in overrides.items()}
    if args.no_quant:
        overrides["quantization"] = None
    print(f"{len(images)} photos at {args.size}x{args.size}; torch threads {torch.get_num_threads()}; "
          f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '(unset)')}; overrides {overrides or 'none'}",
          flush=True)
    # warm the numba kernels (compilation or cache load) outside the timings
    fit_batch(images[:1], FitConfig(points=16, iterations=2, **{k: v for k, v in overrides.items()
                                                                if k in ("backend",)}))
    rows = []
    for points in args.points:
        for init in args.inits:
            cfg = FitConfig(points=points, init=init, **overrides)
            step = args.batch or len(images)
            results = []
            wall0, cpu0 = time.perf_counter(), time.process_time()
            for i in range(0, len(images), step):
                results += fit_batch(images[i : i + step], cfg)
            wall = (time.perf_counter() - wall0) / len(images)
            cpu = (time.process_time() - cpu0) / len(images)
            row = {
                "points": points,
                "init": init,
                "psnr_q": float(np.mean([r.psnr for r in results])),
                "psnr_f": float(np.mean([r.psnr_unquantized for r in results])),
                "min_q": float(np.min([r.psnr for r in results])),
                "iters": float(np.mean([r.iterations for r in results])),
                "count": float(np.mean([r.gaussians.count for r in results])),
                "wall": wall,
                "cpu": cpu,
            }
            rows.append(row)
            print(f"  {points:5d} {init:9s} quantized {row['psnr_q']:6.2f} dB  float {row['psnr_f']:6.2f} dB  "
                  f"{row['wall']:5.2f} s/img (cpu {row['cpu']:5.2f})", flush=True)
            if args.per_image:
                for name, r in zip(names, results):
                    print(f"      {name:28s} {r.psnr:6.2f} {r.psnr_unquantized:6.2f} it={r.iterations}")
    print()
    header = (f"| points | init     | PSNR quantized | PSNR float | worst quantized | Gaussians | iterations "
              f"| s/img wall | s/img CPU |")
    print(header)
    print("|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|")
    for r in rows:
        print(f"| {r['points']:6d} | {r['init']:8s} | {r['psnr_q']:14.2f} | {r['psnr_f']:10.2f} | {r['min_q']:15.2f} "
              f"| {r['count']:9.0f} | {r['iters']:10.0f} | {r['wall']:10.2f} | {r['cpu']:9.2f} |")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
