"""Embedding speed: the splat head on `.gsi` files against rendering them and running the RGB ViT.

Both paths start from the same `.gsi` files and use the same open_clip ViT
(ViT-B-16 by default, randomly initialised: speed does not depend on the
weights, and none are downloaded) with the same batch size:

* head (one per ``--heads`` config, e.g. K = 196 and K = 98): read + decode,
  collate, stem + perceiver resampler (``head.tokens``), trunk (class token,
  ``ln_pre``, the ViT's transformer on K + 1 tokens, pooling, projection);
* RGB: read + decode, render to pixels (``gscodec.render``), open_clip
  preprocessing, patch embedding (``conv1``, class token, positions,
  ``ln_pre``), trunk (the same transformer on 197 tokens, pooling, projection).

The paths are interleaved: every repeat times one batch of each path, in a
rotating order, so a change in machine load hits all of them alike. Reported
per image: the median over repeats of every stage and of the total, the
stem + resampler cost as a share of the trunk, and the speed-up of each head
over the RGB path (median of the per-repeat ratios), plus the bytes each path
reads and feeds.

    python benchmarks/bench_clip_speed.py /work/shared/photos --batch-size 16 --repeat 7

``--heads`` also takes head config JSON paths (e.g. an older design, for an A/B run).

``OMP_WAIT_POLICY`` is set to ``PASSIVE`` before torch is imported unless it is
already set (``--omp-active`` leaves it unset), as in ``bench_fit.py``: on a
shared, busy machine the spinning idle OpenMP threads of torch (and of the
numba renderer, which shares the runtime) steal the cores from the thread
doing the work, and the penalty grows with the number of small operations, so
it distorts the comparison. ``--threads`` is re-applied after every render
(the numba renderer resets torch's thread count).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

COLUMNS = ("read + decode", "collate", "render", "preprocess", "patch embed", "stem + resampler", "trunk")


def timed(fn) -> tuple[float, object]:
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("photos", type=Path, help="folder of photos (e.g. /work/shared/photos)")
    ap.add_argument("--work", type=Path, default=Path("/tmp/gsi-clip-bench"), help="cache of derived files")
    ap.add_argument("--model", default="ViT-B-16", help="open_clip ViT (random weights)")
    ap.add_argument("--heads", default="gsi-vit-b-16-k196,gsi-vit-b-16-k98",
                    help="head configs to time (names or JSON paths), comma-separated")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--points", type=int, default=900)
    ap.add_argument("--iterations", type=int, default=300)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--repeat", type=int, default=7, help="timed batches per path (interleaved)")
    ap.add_argument("--threads", type=int, default=0, help="torch (and numba) threads (0: the defaults)")
    ap.add_argument("--omp-active", action="store_true", help="do not set OMP_WAIT_POLICY=PASSIVE")
    args = ap.parse_args()
    if not args.omp_active:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

    import numpy as np
    import torch
    import torch.nn.functional as F
    from bench_clip_common import center_square, encode, list_photos, load_rgb

    import gscodec
    from gscodec.clip import create_head, load_clip
    from gscodec.clip.data import collate_splats, sample_from_gaussians

    threads = args.threads or torch.get_num_threads()
    torch.set_num_threads(threads)
    if args.threads:
        try:  # the renderer's threads too, so both paths get the same cores
            import numba

            numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
        except ImportError:
            pass

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
    clip.model.eval()
    visual = clip.model.visual
    heads = {}
    for name in args.heads.split(","):
        head = create_head(name, clip=clip)[0].eval()
        heads[f"head K={head.num_tokens} {Path(name).stem}"] = head
    from gscodec.render import render

    def read_all():
        return [gscodec.read(p).gaussians for p in batch_paths]

    def rgb_trunk(x):
        x = visual.transformer(x)
        pooled, _ = visual._pool(x)
        if visual.proj is not None:
            pooled = pooled @ visual.proj
        return F.normalize(pooled, dim=-1)

    def head_path(head):
        def run():
            t_read, gs = timed(read_all)
            t_coll, batch = timed(lambda: collate_splats([sample_from_gaussians(g) for g in gs]))
            with torch.inference_mode():
                t_res, tok = timed(lambda: head.tokens(batch.params, batch.mask, batch.sizes))
                t_trunk, _ = timed(lambda: head.encode_tokens(tok, normalize=True))
            return {"read + decode": t_read, "collate": t_coll, "stem + resampler": t_res, "trunk": t_trunk}
        return run

    def rgb_path():
        t_read, gs = timed(read_all)
        t_render, pix = timed(lambda: [render(g) for g in gs])
        torch.set_num_threads(threads)  # the numba renderer resets it
        t_pre, x = timed(lambda: torch.stack([clip.preprocess_array(p) for p in pix]))
        with torch.inference_mode():
            t_patch, tok = timed(lambda: visual._embeds(x))
            t_trunk, _ = timed(lambda: rgb_trunk(tok))
        return {"read + decode": t_read, "render": t_render, "preprocess": t_pre, "patch embed": t_patch,
                "trunk": t_trunk}

    rgb_name = f"render + RGB {args.model}"
    paths = {name: head_path(h) for name, h in heads.items()}
    paths[rgb_name] = rgb_path

    # The split RGB path is exactly encode_image; the split head path exactly the head's forward.
    with torch.inference_mode():
        x = torch.stack([clip.preprocess_array(render(g)) for g in read_all()[:2]])
        assert torch.allclose(rgb_trunk(visual._embeds(x)), clip.model.encode_image(x, normalize=True), atol=1e-5)
    for fn in paths.values():
        fn()  # warm-up (numba compilation, allocator)

    runs: dict[str, list[dict[str, float]]] = {name: [] for name in paths}
    order = list(paths)
    for r in range(args.repeat):
        for name in order[r % len(order):] + order[:r % len(order)]:
            stages = paths[name]()
            stages["total"] = sum(stages.values())
            runs[name].append(stages)

    def med(name: str, key: str) -> float:
        return 1000 * statistics.median(r[key] for r in runs[name]) / bs

    gsi_bytes = sum(os.path.getsize(p) for p in batch_paths) / bs
    n_gauss = np.mean([gscodec.read(p).gaussians.count for p in gsi_paths])
    print(f"{len(photos)} photos -> .gsi at {args.size}x{args.size} ({method}, mean {n_gauss:.0f} Gaussians); "
          f"{args.model} with random weights, batch {bs}, torch threads {torch.get_num_threads()}, "
          f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '(unset)')}; "
          f"ms per image, median of {args.repeat} interleaved batches per path\n")
    for name, h in heads.items():
        c = h.parameter_counts()
        if h.cells is not None:
            cc = h.config.cells
            print(f"{name}: cell pooling, pair MLP {cc.layers} x {cc.hidden}, footprint "
                  f"{h.cells.footprint[0]}x{h.cells.footprint[1]}; {c['cells']:,} parameters")
            continue
        rc = h.config.resampler
        print(f"{name}: attn_dim {rc.attn_dim or h.width} ({h.resampler.layers[0].heads} heads), depth {rc.depth}, "
              f"mlp_ratio {rc.mlp_ratio}; stem {c['stem']:,} + resampler {c['resampler']:,} parameters")
    print()
    head_w = max(len(n) for n in paths)
    print(f"{'path':{head_w}s} " + " ".join(f"{c:>16s}" for c in COLUMNS)
          + f" {'total':>9s} {'res/trunk':>9s} {'speed-up':>9s}")
    for name in paths:
        cells = [f"{med(name, c):16.2f}" if c in runs[name][0] else f"{'-':>16s}" for c in COLUMNS]
        if name == rgb_name:
            share, ratio = "-", "1.00x"
        else:
            share = f"{100 * statistics.median(r['stem + resampler'] / r['trunk'] for r in runs[name]):8.1f}%"
            ratio = f"{statistics.median(a['total'] / b['total'] for a, b in zip(runs[rgb_name], runs[name])):.2f}x"
        print(f"{name:{head_w}s} " + " ".join(cells) + f" {med(name, 'total'):9.2f} {share:>9s} {ratio:>9s}")
    print("\nspeed-up: median over repeats of (render + RGB total) / (head total) in the same repeat; "
          "res/trunk: stem + resampler time over trunk time")
    print(f"\nbytes read per image: {gsi_bytes:,.0f} (the same .gsi file for both paths)")
    side = x.shape[-1]
    print(f"bytes fed to the model per image: head {n_gauss * 8 * 4:,.0f} (N x 8 float32 parameters), "
          f"RGB {3 * side * side * 4:,} (3 x {side} x {side} float32 pixels, preprocessed from "
          f"{args.size} x {args.size} x 3 rendered bytes)")
    jpg = [work / f"{p.stem}.jpg" for p in photos]
    if all(p.is_file() for p in jpg):
        print(f"for reference, the same squares as JPEG q90: {np.mean([os.path.getsize(p) for p in jpg]):,.0f} "
              f"bytes per image")


if __name__ == "__main__":
    main()
