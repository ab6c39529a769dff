"""Decode speed: a `.gsi` file to RGB pixels against Pillow decoding a JPEG of the same photo, in one run.

    python benchmarks/bench_decode.py --photo /work/shared/photos/china.png --size 768x512 --points 10000

Fits the photo (resized to the given size) once, or takes ``--gsi`` of it, and
writes a JPEG (quality 75) of the same pixels. Then, round after round and
interleaved, it times from bytes in memory: the full `.gsi` decode
(``gscodec.decode`` + ``gscodec.render``: parse, dequantize, render, 8 bits),
its two stages alone (and, for a quantized file, the parse of the same codes
written as the other format version: version 1's zstd tokens against
version 2's range coder), the previous render path (the autograd numba kernel
through torch, then ``to_uint8``) and Pillow's JPEG decode. The ratio of each
round is its .gsi time over its JPEG time; median and min are printed. Beside
the wall time, each call's CPU time (the process's, all threads) and its ratio
to JPEG's: on a shared machine, other processes' load stretches the two-thread
render's wall time far more than the one-thread JPEG decode's, the CPU time
much less. The cold start (a fresh process importing gscodec, reading,
rendering) is timed with the numba cache and with an empty one (compilation
from scratch).
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch: numba and torch share the cores

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

import gscodec  # noqa: E402
from bench_entropy import read_codes  # noqa: E402
from gscodec.metrics import psnr_u8  # noqa: E402
from gscodec.raster import rasterize_sum  # noqa: E402
from gscodec.render import to_uint8  # noqa: E402

_COLD = """
import time, sys
t = time.perf_counter()
import gscodec
pixels = gscodec.render(gscodec.read(sys.argv[1]).gaussians)
print(time.perf_counter() - t)
"""


def cold_start(path: Path, cache_dir: str | None) -> float:
    """Seconds for a fresh Python process to import gscodec, read ``path`` and render it."""
    env = dict(os.environ)
    if cache_dir is not None:
        env["NUMBA_CACHE_DIR"] = cache_dir
    out = subprocess.run([sys.executable, "-c", _COLD, str(path)], env=env, check=True, capture_output=True, text=True)
    return float(out.stdout.split()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photo", required=True)
    parser.add_argument("--gsi", type=Path, help="an existing .gsi of the photo (skips the fit)")
    parser.add_argument("--size", default="768x512", help="WxH the photo is resized to")
    parser.add_argument("--points", type=int, default=10000)
    parser.add_argument("--iterations", type=int, default=None,
                        help="fitter iterations (quality does not change decode time)")
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--jpeg-quality", type=int, default=75)
    parser.add_argument("--no-cold", action="store_true", help="skip the cold-start measurements")
    args = parser.parse_args()

    w, h = (int(v) for v in args.size.lower().split("x"))
    with Image.open(args.photo) as im:
        pixels = np.asarray(im.convert("RGB").resize((w, h), Image.LANCZOS))
    if args.gsi:
        gsi_bytes = args.gsi.read_bytes()
    else:
        from gscodec.fit import FitConfig, fit

        config = FitConfig(points=args.points)
        if args.iterations is not None:
            config = replace(config, iterations=args.iterations)
        gsi_bytes = gscodec.encode(fit(pixels, config).gaussians)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "JPEG", quality=args.jpeg_quality)
    jpeg_bytes = buf.getvalue()
    g = gscodec.decode(gsi_bytes).gaussians
    psnr = psnr_u8(gscodec.render(g), pixels)

    def decode_gsi() -> np.ndarray:
        return gscodec.render(gscodec.decode(gsi_bytes).gaussians)

    def previous() -> np.ndarray:
        return to_uint8(rasterize_sum(*g.tensors(), g.width, g.height, backend="cpu"))

    def decode_jpeg() -> np.ndarray:
        with Image.open(io.BytesIO(jpeg_bytes)) as im:
            return np.asarray(im.convert("RGB"))

    header = gscodec.decode(gsi_bytes).header
    fns: dict[str, Callable[[], object]] = {
        ".gsi total (parse + dequantize + render + 8 bit)": decode_gsi,
        f"  parse + dequantize (gscodec.decode), version {header.version}": lambda: gscodec.decode(gsi_bytes),
        "  render + 8 bit (gscodec.render)": lambda: gscodec.render(g),
        "previous render path (autograd kernel + to_uint8)": previous,
        "Pillow JPEG": decode_jpeg,
    }
    if header.mode == gscodec.Mode.QUANTIZED:
        other = 3 - header.version
        other_bytes = gscodec.encode(read_codes(gsi_bytes), version=other)
        fns[f"  parse + dequantize, the same codes as version {other}"] = lambda: gscodec.decode(other_bytes)
    assert np.abs(decode_gsi().astype(int) - previous().astype(int)).max() <= 1
    for fn in fns.values():
        fn()  # warm-up: numba cache load, allocator
    times: dict[str, list[float]] = {k: [] for k in fns}
    cpu: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(args.repeats):
        for name, fn in fns.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            fn()
            cpu[name].append(1e3 * (time.process_time() - start_cpu))
            times[name].append(1e3 * (time.perf_counter() - start))
    jpeg, jpeg_cpu = times["Pillow JPEG"], cpu["Pillow JPEG"]
    print(f"photo {args.photo} at {w}x{h}; .gsi: {g.count} Gaussians, {len(gsi_bytes)} bytes, {psnr:.2f} dB; "
          f"JPEG q{args.jpeg_quality}: {len(jpeg_bytes)} bytes; {args.repeats} interleaved rounds; "
          f"numba threads {__import__('numba').get_num_threads()}; load average {os.getloadavg()[0]:.1f}")
    print("| decoder | median ms | min ms | ratio to JPEG, median (min) of rounds | CPU ms, all threads, median | "
          "CPU ratio to JPEG, median |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, ts in times.items():
        ratios = [a / b for a, b in zip(ts, jpeg)]
        cpu_ratios = [a / b for a, b in zip(cpu[name], jpeg_cpu)]
        print(f"| {name} | {statistics.median(ts):.2f} | {min(ts):.2f} | "
              f"{statistics.median(ratios):.2f}x ({min(ratios):.2f}x) | {statistics.median(cpu[name]):.2f} | "
              f"{statistics.median(cpu_ratios):.2f}x |")
    if not args.no_cold:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "image.gsi"
            path.write_bytes(gsi_bytes)
            cached = cold_start(path, None)
            empty = cold_start(path, os.path.join(tmp, "numba-cache"))
        print(f"cold start (fresh process: import gscodec, read, render): {cached:.2f} s with the numba cache, "
              f"{empty:.2f} s compiling from scratch")


if __name__ == "__main__":
    main()
