"""Encoder effort levels side by side: encode time and rate-distortion per level, against JPEG, WebP and AVIF.

Two parts, both in one run so that every time is measured on the same machine state:

* native size: every photo of PHOTOS at its own resolution, at every gsi
  density (Gaussians per pixel), one image at a time with both cores
  available to the fitter; JPEG, WebP and AVIF at their ``gsi bench`` quality
  ladders on the same photos (Pillow, one thread: libavif's speed-6 encode
  time is the reference). Per level: mean encode wall seconds per image at
  each density, the mean curve, and BD-rates (pchip) against each codec.
* 224x224 (``--crop-points``): CLIP crops of the same photos fitted together
  with ``fit_batch``; PSNR of the written file (bytes decoded and rendered to
  8 bits) and seconds per image.

Results go to OUT: ``effort.json`` (every number), one CompressAI-style file
per curve (``gsi-e5.json``, ``jpeg.json``, ...), rewritten after each level;
the tables are printed.

Example::

    python benchmarks/bench_effort.py ../shared/photos -o bench-effort/ --levels 1,3,5,7,9
    python benchmarks/bench_effort.py photos/ --densities 0.004,0.008,0.016 --limit 4 --crop-points 900
    python benchmarks/bench_effort.py heldout/ --size 768x512 --levels 1,5 --densities 0.008 --crop-points ''
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from common import list_photos, load_rgb


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("photos", type=Path, help="folder of photos (used at native size and as 224x224 crops)")
    ap.add_argument("-o", "--out", type=Path, default=Path("bench-effort"), help="results folder")
    ap.add_argument("--levels", default="1,2,3,4,5,6,7,8,9", help="effort levels, comma-separated")
    ap.add_argument("--densities", default="0.002,0.004,0.008,0.016,0.03", help="gsi rate points, Gaussians/px")
    ap.add_argument("--limit", type=int, default=None, help="use only the first N photos (sorted by name)")
    ap.add_argument("--crop-points", default="400,900,3136",
                    help="224x224 budgets, comma-separated ('' skips the crop part)")
    ap.add_argument("--crop-size", type=int, default=224)
    ap.add_argument("--size", metavar="WxH", help="resize every photo to this size (Lanczos) for the native part")
    return ap.parse_args(argv)


def _csv(text: str, kind=float) -> list:
    return [kind(x) for x in text.split(",") if x.strip()]


def _measure(codec, images: list[np.ndarray], quality: float) -> tuple[list[float], list[float], list[float]]:
    """Per image: bpp of the file, PSNR (dB) of its decode and encode wall seconds, at ``quality``."""
    from gscodec.metrics import psnr_u8 as psnr

    bpp, db, secs = [], [], []
    for im in images:
        t = time.perf_counter()
        data = codec.encode(im, quality)
        secs.append(time.perf_counter() - t)
        bpp.append(8 * len(data) / (im.shape[0] * im.shape[1]))
        db.append(psnr(codec.decode(data), im))
    return bpp, db, secs


def _reference_curves(images: list[np.ndarray]) -> dict[str, dict]:
    """JPEG, WebP and AVIF over their default ladders: mean bpp, PSNR and encode seconds per quality."""
    from gscodec.bench import make_codec

    curves = {}
    for name in ("jpeg", "webp", "avif"):
        codec = make_codec(name)
        codec.encode(images[0][:16, :16].copy(), codec.qualities[0])  # load the library
        bpp, db, secs = [], [], []
        for q in codec.qualities:
            b, p, s = _measure(codec, images, q)
            bpp.append(float(np.mean(b)))
            db.append(float(np.mean(p)))
            secs.append(float(np.mean(s)))
        curves[name] = {"description": codec.description(), "bpp": bpp, "psnr-rgb": db, "encoding_time": secs,
                        "quality": [float(q) for q in codec.qualities]}
    return curves


def _gsi_curve(images: list[np.ndarray], effort: int, densities: list[float]) -> dict:
    """One level at native size: per density the mean bpp, PSNR of the written file and encode wall seconds."""
    from gscodec.bench import make_codec

    codec = make_codec("gsi", tuple(densities), effort=effort)
    bpp, db, secs, per_image = [], [], [], []
    for d in codec.qualities:
        b, p, s = _measure(codec, images, d)
        bpp.append(float(np.mean(b)))
        db.append(float(np.mean(p)))
        secs.append(float(np.mean(s)))
        per_image.append({"density": d, "bpp": b, "psnr": p, "seconds": s})
        print(f"  effort {effort} density {d}: {bpp[-1]:.3f} bpp {db[-1]:.2f} dB {secs[-1]:.2f} s/image", flush=True)
    return {"description": codec.description(), "density": list(codec.qualities), "bpp": bpp, "psnr-rgb": db,
            "encoding_time": secs, "per_image": per_image}


def _crop_rows(crops: list[np.ndarray], effort: int, budgets: list[int]) -> list[dict]:
    """224x224 batched fits at each budget: mean PSNR of the written files and seconds per image."""
    import gscodec
    from gscodec.metrics import psnr_u8 as psnr
    from gscodec.fit import FitConfig, fit_batch

    rows = []
    for n in budgets:
        t = time.perf_counter()
        results = fit_batch(crops, FitConfig(points=n, effort=effort, quantization="auto"))
        files = [gscodec.encode(r.gaussians, quantization=r.quantization) for r in results]
        seconds = (time.perf_counter() - t) / len(crops)
        db = [psnr(gscodec.render(gscodec.decode(f).gaussians), im) for f, im in zip(files, crops)]
        bpg = float(np.mean([len(f) / n for f in files]))
        rows.append({"points": n, "psnr": float(np.mean(db)), "worst": float(np.min(db)), "seconds": seconds,
                     "bytes_per_gaussian": bpg})
        print(f"  effort {effort} 224x224 {n} Gaussians: {rows[-1]['psnr']:.2f} dB (worst {rows[-1]['worst']:.2f}) "
              f"{seconds:.3f} s/image", flush=True)
    return rows


def _bd_rates(curve: dict, refs: dict[str, dict]) -> dict[str, float]:
    from gscodec.bench.bdrate import bd_rate

    out = {}
    for name, ref in refs.items():
        try:
            out[name] = bd_rate(ref["bpp"], ref["psnr-rgb"], curve["bpp"], curve["psnr-rgb"])
        except ValueError:
            out[name] = float("nan")
    return out


def _write(out: Path, report: dict) -> None:
    from gscodec.bench.store import write_results
    from gscodec.format import write_atomic

    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / "effort.json", json.dumps(report, indent=1).encode())
    for name, c in report["references"].items():
        write_results(out / f"{name}.json", name, c["description"],
                      {"bpp": c["bpp"], "psnr-rgb": c["psnr-rgb"], "encoding_time": c["encoding_time"]})
    for level, row in report["levels"].items():
        c = row["native"]
        write_results(out / f"gsi-e{level}.json", f"gsi-e{level}", c["description"],
                      {"bpp": c["bpp"], "psnr-rgb": c["psnr-rgb"], "encoding_time": c["encoding_time"]})


def _percent(value: float) -> str:
    """A BD-rate for the table; 'n/a' where the curves share too few points for one."""
    return "n/a" if np.isnan(value) else f"{value:+.1f}%"


def _tables(report: dict, densities: list[float]) -> str:
    refs = report["references"]
    avif_s = float(np.mean(refs["avif"]["encoding_time"]))
    head = " | ".join(f"s/image at {d}" for d in densities)
    lines = [f"| effort | {head} | x AVIF time | BD-rate vs JPEG | vs WebP | vs AVIF |",
             "|" + " --- |" * (len(densities) + 5)]
    for level, row in report["levels"].items():
        c, bd = row["native"], row["bd_rate"]
        lines.append(f"| {level} | " + " | ".join(f"{s:.2f}" for s in c["encoding_time"])
                     + f" | {np.mean(c['encoding_time']) / avif_s:.0f}x | "
                     + " | ".join(_percent(bd[name]) for name in ("jpeg", "webp", "avif")) + " |")
    lines.append(f"\nPillow AVIF (speed 6, one thread): {avif_s:.3f} s/image mean over its ladder; "
                 f"{len(report['photos'])} photos, native size.")
    if any(row.get("crops") for row in report["levels"].values()):
        lines += ["", "| effort | Gaussians (224x224) | PSNR of the file (dB) | worst | s/image |",
                  "| --- | --- | --- | --- | --- |"]
        for level, row in report["levels"].items():
            for r in row.get("crops", []):
                lines.append(f"| {level} | {r['points']} | {r['psnr']:.2f} | {r['worst']:.2f} | {r['seconds']:.3f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    import numba
    import torch

    from gscodec.fit.effort import effort_row

    levels = _csv(args.levels, int)
    for level in levels:
        effort_row(level)
    densities = _csv(args.densities)
    budgets = _csv(args.crop_points, int)
    paths = list_photos(args.photos, args.limit)
    images = [load_rgb(p) for p in paths]
    if args.size:
        from PIL import Image

        w, h = (int(v) for v in args.size.lower().split("x"))
        images = [np.asarray(Image.fromarray(im).resize((w, h), Image.LANCZOS)) for im in images]
    crops = [load_rgb(p, args.crop_size) for p in paths]
    print(f"{len(paths)} photos from {args.photos}; {numba.get_num_threads()} numba threads, torch "
          f"{torch.__version__}", flush=True)
    report: dict = {"photos": [p.name for p in paths], "densities": densities, "levels": {},
                    "references": _reference_curves(images)}
    for name, c in report["references"].items():
        print(f"  {name}: mean encode {np.mean(c['encoding_time']):.3f} s/image", flush=True)
    import gscodec
    from gscodec.fit import FitConfig, fit

    # compile every kernel a fit and a write use (events, grid sweeps, colour solves), so no level's first image
    # pays numba's one-off compilation
    warm = fit(images[0][:64, :96].copy(), FitConfig(points=60, effort=min(levels), quantization="auto"))
    gscodec.encode(warm.gaussians, quantization=warm.quantization)
    for level in levels:
        row = {"settings": dict(effort_row(level)), "native": _gsi_curve(images, level, densities)}
        row["bd_rate"] = _bd_rates(row["native"], report["references"])
        if budgets:
            row["crops"] = _crop_rows(crops, level, budgets)
        report["levels"][str(level)] = row
        _write(args.out, report)
        print(_tables(report, densities), flush=True)


if __name__ == "__main__":
    main()
