"""Embedding speed: the splat head on `.gsi` files against rendering them and running the RGB ViT.

Both paths start from the same `.gsi` files and use the same open_clip ViT
(ViT-B-16 by default, randomly initialised: speed does not depend on the
weights, and none are downloaded) with the same batch size:

* head: read + decode, collate, stem + perceiver resampler + the ViT's
  transformer on K tokens (196 and 98);
* RGB: read + decode, render to pixels (``gscodec.render``), open_clip
  preprocessing, the ViT with its patch embedding on 196 patches.

Reported per image (median of --repeat timed batches after a warm-up batch):
milliseconds per stage, the ratio, and the bytes each path reads and feeds.

    python benchmarks/bench_clip_speed.py /work/shared/photos --batch-size 16
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_clip_common import center_square, encode, list_photos, load_rgb  # noqa: E402

import gscodec  # noqa: E402
from gscodec.clip import create_head, load_clip  # noqa: E402
from gscodec.clip.data import collate_splats, sample_from_gaussians  # noqa: E402


def timed(fn) -> tuple[float, object]:
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("photos", type=Path, help="folder of photos (e.g. /work/shared/photos)")
    ap.add_argument("--work", type=Path, default=Path("/tmp/gsi-clip-bench"), help="cache of derived files")
    ap.add_argument("--model", default="ViT-B-16", help="open_clip ViT (random weights)")
    ap.add_argument("--heads", default="gsi-vit-b-16-k196,gsi-vit-b-16-k98", help="head configs to time")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--points", type=int, default=900)
    ap.add_argument("--iterations", type=int, default=300)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    photos = list_photos(args.photos)
    work = args.work / f"square{args.size}"
    work.mkdir(parents=True, exist_ok=True)
    squares = [center_square(load_rgb(p), args.size) for p in photos]
    gsi_paths = [work / f"{p.stem}.gsi" for p in photos]
    method = encode(squares, gsi_paths, args.points, args.iterations)
    bs = args.batch_size
    batch_paths = [gsi_paths[i % len(gsi_paths)] for i in range(bs)]

    torch.manual_seed(0)
    clip = load_clip(args.model, "none")
    heads = {name: create_head(name, clip=clip)[0].eval() for name in args.heads.split(",")}
    from gscodec.render import render

    def read_all():
        return [gscodec.read(p).gaussians for p in batch_paths]

    def head_path(head):
        def run():
            t_read, gs = timed(read_all)
            t_coll, batch = timed(lambda: collate_splats([sample_from_gaussians(g) for g in gs]))
            with torch.inference_mode():
                t_model, _ = timed(lambda: head(batch.params, batch.mask, batch.sizes, normalize=True))
            return {"read + decode": t_read, "collate": t_coll, "head (stem+resampler+ViT)": t_model}
        return run

    def rgb_path():
        t_read, gs = timed(read_all)
        t_render, pix = timed(lambda: [render(g) for g in gs])
        t_pre, x = timed(lambda: torch.stack([clip.preprocess_array(p) for p in pix]))
        with torch.inference_mode():
            t_model, _ = timed(lambda: clip.model.encode_image(x, normalize=True))
        return {"read + decode": t_read, "render": t_render, "preprocess": t_pre, "ViT (patchify+ViT)": t_model}

    def measure(fn) -> dict[str, float]:
        fn()  # warm-up (numba compilation, allocator)
        runs = [fn() for _ in range(args.repeat)]
        return {k: statistics.median(r[k] for r in runs) / bs for k in runs[0]}

    results = {f"head {name}": measure(head_path(h)) for name, h in heads.items()}
    results[f"render + RGB {args.model}"] = measure(rgb_path)

    gsi_bytes = sum(os.path.getsize(p) for p in batch_paths) / bs
    n_gauss = np.mean([gscodec.read(p).gaussians.count for p in gsi_paths])
    print(f"{len(photos)} photos -> .gsi at {args.size}x{args.size} ({method}, mean {n_gauss:.0f} Gaussians); "
          f"{args.model} with random weights, batch {bs}, torch threads {torch.get_num_threads()}, "
          f"median of {args.repeat} batches\n")
    rgb = sum(results[f"render + RGB {args.model}"].values())
    for name, stages in results.items():
        total = sum(stages.values())
        parts = ", ".join(f"{k} {1000 * v:.2f}" for k, v in stages.items())
        ratio = f"{rgb / total:.2f}x faster than render + RGB" if not name.startswith("render") else "baseline"
        print(f"{name:30s} {1000 * total:8.2f} ms/image  ({parts})  {ratio}")
    print(f"\nbytes read per image: {gsi_bytes:,.0f} (the same .gsi file for both paths)")
    print(f"bytes fed to the model per image: head {n_gauss * 8 * 4:,.0f} (N x 8 float32 parameters), "
          f"RGB {3 * args.size * args.size * 4:,} (3 x {args.size} x {args.size} float32 pixels)")
    jpg = [work / f"{p.stem}.jpg" for p in photos]
    if all(p.is_file() for p in jpg):
        print(f"for reference, the same squares as JPEG q90: {np.mean([os.path.getsize(p) for p in jpg]):,.0f} "
              f"bytes per image")


if __name__ == "__main__":
    main()
