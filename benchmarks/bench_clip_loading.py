"""Loading speed for CLIP training: `.gsi` files (GsiDataset + collate) against JPEG/PNG decoding.

For every photo the benchmark writes (once, into --work): the CLIP-size
square (shorter side resized to --size, centre crop) as PNG and JPEG
(quality 90), the full-resolution photo as JPEG (quality 90) next to the
original PNG, and the square's `.gsi` (``gscodec.fit``, or random Gaussians
of the same count when the fitter is not importable; the output says which).

Timed, single process, per image, over --repeat passes:

* ``.gsi``: ``GsiDataset`` (read + decode to an ``(N, 8)`` tensor) and the
  padding collate: what the head's stem consumes;
* JPEG/PNG with Pillow at full resolution and at the CLIP size, each followed
  by open_clip's validation preprocessing (resize, centre crop, to tensor,
  normalize): what the RGB ViT consumes.

The paper reports up to 31x faster loading for `.gsi`.

    python benchmarks/bench_clip_loading.py /work/shared/photos --repeat 5
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_clip_common import center_square, encode, list_photos, load_rgb  # noqa: E402

from gscodec.clip.data import GsiDataset, collate_splats  # noqa: E402


def time_passes(load_all, repeat: int) -> list[float]:
    """Seconds per pass of ``load_all`` (one warm-up pass first, to take the OS file cache out of the race)."""
    load_all()
    out = []
    for _ in range(repeat):
        t = time.perf_counter()
        load_all()
        out.append(time.perf_counter() - t)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("photos", type=Path, help="folder of photos (e.g. /work/shared/photos)")
    ap.add_argument("--work", type=Path, default=Path("/tmp/gsi-clip-bench"), help="cache of derived files")
    ap.add_argument("--size", type=int, default=224, help="CLIP input size")
    ap.add_argument("--points", type=int, default=900, help="Gaussians per image")
    ap.add_argument("--iterations", type=int, default=300, help="fitter iterations")
    ap.add_argument("--repeat", type=int, default=5, help="timed passes over all photos")
    ap.add_argument("--batch-size", type=int, default=32)
    args = ap.parse_args()

    import open_clip
    from open_clip.transform import PreprocessCfg, image_transform_v2

    torch.set_num_threads(1)
    photos = list_photos(args.photos)
    work = args.work / f"square{args.size}"
    work.mkdir(parents=True, exist_ok=True)
    squares, gsi_paths = [], []
    for p in photos:
        im = load_rgb(p)
        sq = center_square(im, args.size)
        squares.append(sq)
        if not (work / f"{p.stem}.png").is_file():
            Image.fromarray(sq).save(work / f"{p.stem}.png")
            Image.fromarray(sq).save(work / f"{p.stem}.jpg", quality=90)
        if not (work / f"{p.stem}.full.jpg").is_file():
            im.save(work / f"{p.stem}.full.jpg", quality=90)
        gsi_paths.append(work / f"{p.stem}.gsi")
    method = encode(squares, gsi_paths, args.points, args.iterations)

    preprocess = image_transform_v2(PreprocessCfg(size=args.size), is_train=False)  # open_clip's CLIP preprocessing
    bs = args.batch_size

    def load_gsi() -> None:
        ds = GsiDataset(gsi_paths, on_error="raise")
        for i in range(0, len(ds), bs):
            collate_splats([ds[j] for j in range(i, min(len(ds), i + bs))])

    def pil_loader(paths: list[Path]):
        def run() -> None:
            for i in range(0, len(paths), bs):
                batch = []
                for p in paths[i:i + bs]:
                    with Image.open(p) as im:
                        batch.append(preprocess(im.convert("RGB")))
                torch.stack(batch)
        return run

    sources = {
        ".gsi (decode + collate)": (gsi_paths, load_gsi),
        f"JPEG q90 {args.size}px + CLIP preprocess": ([work / f"{p.stem}.jpg" for p in photos], None),
        f"PNG {args.size}px + CLIP preprocess": ([work / f"{p.stem}.png" for p in photos], None),
        "JPEG q90 full-size + CLIP preprocess": ([work / f"{p.stem}.full.jpg" for p in photos], None),
        "PNG full-size (original) + CLIP preprocess": (list(photos), None),
    }
    n = len(photos)
    print(f"{n} photos from {args.photos}; .gsi files: {method}, {args.points} Gaussians at "
          f"{args.size}x{args.size}" + ("" if method == "gscodec.fit" else " (random Gaussians: gscodec.fit is not "
                                        "importable; sizes and counts are realistic, pictures are not)"))
    print(f"single process, torch threads 1, batches of {bs}, median of {args.repeat} passes after a warm-up pass\n")
    rows = []
    for name, (paths, fn) in sources.items():
        secs = time_passes(fn or pil_loader(paths), args.repeat)
        per = statistics.median(secs) / n
        size = sum(os.path.getsize(p) for p in paths) / n
        rows.append((name, per, size))
    base = rows[0][1]
    print(f"{'source':46s} {'ms/image':>9s} {'images/s':>9s} {'kB/image':>9s} {'gsi speed-up':>12s}")
    for name, per, size in rows:
        print(f"{name:46s} {1000 * per:9.3f} {1 / per:9.0f} {size / 1000:9.1f} {per / base:11.1f}x")
    print(f"\nopen_clip {open_clip.__version__}, torch {torch.__version__}. The .gsi row yields padded (B, N, 8) "
          "Gaussian tensors for the head's stem; the image rows yield (B, 3, S, S) tensors for the ViT.")


if __name__ == "__main__":
    main()
