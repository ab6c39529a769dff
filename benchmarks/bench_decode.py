"""Decode speed: rendering a `.gsi` file against Pillow decoding a JPEG of the same photo, in one run.

    python benchmarks/bench_decode.py --photo ../shared/photos/china.png --size 768x512 --points 10000

Fits the photo (resized to the given size) once, writes the `.gsi` file and a
JPEG (quality 75) of the same pixels, then times full decodes of each from
bytes in memory, interleaved, and prints medians and their ratio.
"""

from __future__ import annotations

import argparse
import io
import statistics
import time

import numpy as np
from PIL import Image

import gscodec
from gscodec.fit import FitConfig, fit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photo", required=True)
    parser.add_argument("--size", default="768x512", help="WxH the photo is resized to")
    parser.add_argument("--points", type=int, default=10000)
    parser.add_argument("--iterations", type=int, default=None, help="fitter iterations (quality does not change decode time)")
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--jpeg-quality", type=int, default=75)
    args = parser.parse_args()

    w, h = (int(v) for v in args.size.lower().split("x"))
    with Image.open(args.photo) as im:
        pixels = np.asarray(im.convert("RGB").resize((w, h), Image.LANCZOS))
    config = FitConfig(points=args.points)
    if args.iterations is not None:
        from dataclasses import replace

        config = replace(config, iterations=args.iterations)
    result = fit(pixels, config)
    gsi_bytes = gscodec.encode(result.gaussians)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "JPEG", quality=args.jpeg_quality)
    jpeg_bytes = buf.getvalue()

    def decode_gsi() -> np.ndarray:
        return gscodec.render(gscodec.decode(gsi_bytes).gaussians)

    def decode_jpeg() -> np.ndarray:
        with Image.open(io.BytesIO(jpeg_bytes)) as im:
            return np.asarray(im.convert("RGB"))

    decode_gsi(), decode_jpeg()  # warm-up: numba compilation and caches
    times: dict[str, list[float]] = {"gsi": [], "jpeg": []}
    for _ in range(args.repeats):
        for name, fn in (("gsi", decode_gsi), ("jpeg", decode_jpeg)):
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    g_ms, j_ms = (1000 * statistics.median(times[k]) for k in ("gsi", "jpeg"))
    print(f"photo {args.photo} at {w}x{h}; .gsi: {result.gaussians.count} Gaussians, {len(gsi_bytes)} bytes, "
          f"{result.psnr:.2f} dB; JPEG q{args.jpeg_quality}: {len(jpeg_bytes)} bytes")
    print("| decoder | median ms | bytes |")
    print("| --- | --- | --- |")
    print(f"| .gsi (parse + render) | {g_ms:.2f} | {len(gsi_bytes)} |")
    print(f"| Pillow JPEG | {j_ms:.2f} | {len(jpeg_bytes)} |")
    print(f"ratio .gsi / JPEG: {g_ms / j_ms:.2f}x")


if __name__ == "__main__":
    main()
