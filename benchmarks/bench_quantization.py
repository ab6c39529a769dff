"""Bytes per Gaussian and PSNR loss of quantized `.gsi` files, per Gaussian budget and quality level.

    python benchmarks/bench_quantization.py --photos ../shared/photos
    python benchmarks/bench_quantization.py --photos ../shared/photos --size 0 --density 0.004 0.016 0.03 \
        --levels medium rate --limit 4

Fits every photo (CLIP crop, 224x224 by default; ``--size 0``: native) without
quantization, then for each quantization level writes the file the encoder
would write (its quantization-aware end: positions snapped, shapes and colours
fine-tuned and snapped, colours refitted and their codes refined), decodes it,
and reports the file's bytes per Gaussian, its PSNR against the photo and the
8-bit PSNR lost against the unquantized fit. Level ``rate`` is
:func:`gscodec.presets.preset_for_density` of each image's density and float
PSNR (the encoder's ``auto``).
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import gscodec  # noqa: E402
from common import list_photos, load_rgb, write_results  # noqa: E402
from gscodec.fit import FitConfig, fit  # noqa: E402
from gscodec.fit.refit import quantize_refit  # noqa: E402
from gscodec.metrics import psnr_u8  # noqa: E402
from gscodec.presets import PRESETS, preset_for_density  # noqa: E402
from gscodec.quantize import COLOR_RGB, Quantization  # noqa: E402

LEVELS = {
    **PRESETS,
    "medium-rgb": Quantization(color_transform=COLOR_RGB),
    "medium-luma7": Quantization(color_bits=7),
    "medium-shear6": Quantization(shear_bits=6),
    "medium-pos3": Quantization(position_bits=3),
    "medium-chroma7": Quantization(chroma_bits=7),
    "medium-scale6": Quantization(scale_bits=6),
    "medium-shear4": Quantization(shear_bits=4),
    "rate": None,
}
"""Quantization per level; ``None``: chosen per image by :func:`preset_for_density` (density, float PSNR)."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", required=True, help="folder of photos")
    parser.add_argument("--points", type=int, nargs="+", default=[400, 900, 1600, 3136])
    parser.add_argument("--density", type=float, nargs="+", default=None,
                        help="Gaussians per pixel of each image instead of --points")
    parser.add_argument("--size", type=int, default=224, help="CLIP crop size (0 = native)")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N photos")
    parser.add_argument("--iterations", type=int, default=None, help="override the fitter's iterations")
    parser.add_argument("--levels", nargs="+", default=list(LEVELS), choices=list(LEVELS))
    parser.add_argument("--out", default="results/quantization.json")
    args = parser.parse_args()

    photos = list_photos(args.photos, args.limit)
    images = [load_rgb(p, args.size or None) for p in photos]
    rows = []
    start = time.perf_counter()
    for budget in args.density or args.points:
        cfg = FitConfig(quantization=None)
        if args.iterations:
            cfg = replace(cfg, iterations=args.iterations)
        counts = [round(img.shape[0] * img.shape[1] * budget) if args.density else int(budget) for img in images]
        fits = [fit(img, replace(cfg, points=n)).gaussians for img, n in zip(images, counts)]
        base = [psnr_u8(gscodec.render(g), img) for g, img in zip(fits, images)]
        targets = [torch.from_numpy(img).float() / 255 for img in images]
        for level in args.levels:
            sizes, losses, psnrs = [], [], []
            for g, img, target, p0 in zip(fits, images, targets, base):
                q = LEVELS[level] or preset_for_density(g.count / (g.width * g.height), p0)
                snapped, _ = quantize_refit([g], target[None], q, cfg.refit_iters,
                                            shape_iters=cfg.refit_shape_iters)
                data = gscodec.encode(snapped[0], quantization=q)
                decoded = gscodec.decode(data).gaussians
                sizes.append(len(data) / g.count)
                psnrs.append(psnr_u8(gscodec.render(decoded), img))
                losses.append(p0 - psnrs[-1])
            rows.append({"points": budget, "level": level, "bytes_per_gaussian": float(np.mean(sizes)),
                         "psnr_unquantized": float(np.mean(base)), "psnr_file": float(np.mean(psnrs)),
                         "psnr_loss": float(np.mean(losses)), "psnr_loss_max": float(np.max(losses))})
            r = rows[-1]
            print(f"{budget:>6} {level:<14} {r['bytes_per_gaussian']:6.3f} B/G  PSNR {r['psnr_unquantized']:6.2f} dB  "
                  f"file {r['psnr_file']:6.3f} dB  loss {r['psnr_loss']:+.3f} dB (max {r['psnr_loss_max']:+.3f})",
                  flush=True)
    print(f"\n{len(images)} photos at {args.size or 'native'} px, {time.perf_counter() - start:.0f} s")
    budget = "Gaussians/px" if args.density else "Gaussians"
    print(f"\n| {budget} | level | bytes/Gaussian | PSNR unquantized (dB) | PSNR file (dB) | mean loss (dB) "
          "| max loss (dB) |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['points']} | {r['level']} | {r['bytes_per_gaussian']:.3f} | {r['psnr_unquantized']:.2f} "
              f"| {r['psnr_file']:.3f} | {r['psnr_loss']:.3f} | {r['psnr_loss_max']:.3f} |")
    write_results(args.out, "gsi-quantization", f"{len(images)} photos at {args.size or 'native'} px",
                  {"rows": rows})


if __name__ == "__main__":
    main()
