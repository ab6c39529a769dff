"""Throughput of the sharded pipeline: encoding tar shards, and loading `.gsi` shards against JPEG shards.

From the photos in PHOTOS the benchmark builds (into --work, rebuilt every
run) webdataset-style JPEG shards: --crops random square crops per photo at
--size (bicubic, random flip; JPEG quality 90) as ``KEY.jpg`` with a caption
``KEY.txt``, spread over --shards tar files. Then, timed:

* encoding: ``gsi encode JPEG-SHARDS -o OUT --points P --iterations I`` in one
  process, and under ``torchrun --nproc-per-node 2``; reported both as the
  whole command (wall clock, including Python/torch start-up) and as the
  shard loop alone (from the manifests: the slowest process's summed shard
  times);
* loading, --repeat passes over all shards in a row after a warm-up pass:
  the `.gsi` shards through ``GsiTarDataset`` + ``collate_splats``
  (what the head's stem consumes) against the JPEG shards through JPEG
  decoding + open_clip's validation preprocessing + stacking (what an RGB
  ViT consumes), in batches of --batch-size. With 2 processes each one
  takes every other shard (a multiprocessing pool); images/s is all images
  over the slower process's time.

Every process uses one thread for torch (torchrun's default; set here for the
other rows too), so the rows compare like with like. First, a CPU check
prints how much faster two busy processes get through pure-Python work than
one: on a machine shared with other jobs that bounds what 2 processes can gain.

    python benchmarks/bench_shards.py /work/shared/photos --crops 4 --points 64 --iterations 50
"""

from __future__ import annotations

import argparse
import io
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_clip_common import list_photos, load_rgb, random_crop  # noqa: E402


def _spin(n: int) -> float:
    start = time.perf_counter()
    x = 0
    for i in range(n):
        x += i
    return time.perf_counter() - start


def cpu_check(n: int = 10_000_000) -> float:
    """Throughput of 2 processes over 1 on the same pure-Python loop (2.0: two free cores)."""
    one = _spin(n)
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        pool.map(_spin, [1, 1])  # both workers started and imported
        start = time.perf_counter()
        pool.map(_spin, [n, n])
        two = time.perf_counter() - start
    return 2 * one / two


def build_jpeg_shards(photos: list[Path], folder: Path, crops: int, size: int, shards: int, seed: int) -> int:
    """Write the JPEG shards; returns the number of images."""
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    samples = []
    for p in photos:
        im = load_rgb(p)
        for c in range(crops):
            buf = io.BytesIO()
            Image.fromarray(random_crop(im, size, rng)).save(buf, format="JPEG", quality=90)
            samples.append((buf.getvalue(), f"a photo: {p.stem}, crop {c}".encode()))
    per = -(-len(samples) // shards)
    for s in range(shards):
        with tarfile.open(folder / f"{s:03d}.tar", "w") as tf:
            for i, (jpg, txt) in enumerate(samples[s * per:(s + 1) * per], start=s * per):
                for name, data in ((f"{i:06d}.jpg", jpg), (f"{i:06d}.txt", txt)):
                    info = tarfile.TarInfo(name)
                    info.size = len(data)
                    tf.addfile(info, io.BytesIO(data))
    return len(samples)


def run_encode(jpeg: Path, out: Path, processes: int, points: int, iterations: int) -> tuple[float, float, int]:
    """``(wall seconds, shard-loop seconds, images encoded)`` of one ``gsi encode`` command."""
    if out.exists():
        shutil.rmtree(out)
    gsi = ["-m", "gscodec_cli.main", "encode", str(jpeg), "-o", str(out), "--points", str(points),
           "--iterations", str(iterations)]
    if processes == 1:
        cmd = [sys.executable, *gsi]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(processes), *gsi]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1"}
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, env=env)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"gsi encode failed:\n{done.stderr.decode()[-3000:]}")
    per_rank: dict[int, float] = {}
    images = 0
    for m in out.glob("*.manifest.json"):
        d = json.loads(m.read_text())
        per_rank[d["rank"]] = per_rank.get(d["rank"], 0.0) + d["seconds"]
        images += len(d["samples"])
    return wall, max(per_rank.values()), images


def _gsi_pass(shards: list[str], batch_size: int) -> int:
    from gscodec.clip.data import GsiTarDataset, collate_splats

    n, batch = 0, []
    for sample in GsiTarDataset(shards):
        batch.append(sample)
        if len(batch) == batch_size:
            n += len(collate_splats(batch))
            batch = []
    return n + (len(collate_splats(batch)) if batch else 0)


_PREPROCESS = None


def _jpeg_pass(shards: list[str], batch_size: int, size: int) -> int:
    import open_clip
    import torch

    from gscodec.shards import iter_samples

    global _PREPROCESS
    if _PREPROCESS is None:
        _PREPROCESS = open_clip.image_transform(size, is_train=False)
    n, batch = 0, []
    for shard in shards:
        for sample in iter_samples(shard):
            idx = sample.find({"jpg"})
            if idx is None:
                continue
            with Image.open(io.BytesIO(sample.members[idx][1])) as im:
                batch.append(_PREPROCESS(im.convert("RGB")))
            if len(batch) == batch_size:
                n += len(torch.stack(batch))
                batch = []
    return n + (len(torch.stack(batch)) if batch else 0)


def time_loading(kind: str, shards: list[str], batch_size: int, size: int, repeat: int) -> tuple[float, int]:
    """``(seconds, images)`` of ``repeat`` passes in a row after a warm-up pass, in the calling process."""
    import torch

    torch.set_num_threads(1)
    one_pass = (lambda: _gsi_pass(shards, batch_size)) if kind == "gsi" else (
        lambda: _jpeg_pass(shards, batch_size, size))
    one_pass()
    start = time.perf_counter()
    images = sum(one_pass() for _ in range(repeat))
    return time.perf_counter() - start, images


def _loading_worker(args: tuple) -> tuple[float, int]:
    return time_loading(*args)


def loading(kind: str, shards: list[str], processes: int, batch_size: int, size: int,
            repeat: int) -> tuple[float, int]:
    """``(seconds, images)``: one process, or ``processes`` processes each taking every ``processes``-th shard."""
    if processes == 1:
        return time_loading(kind, shards, batch_size, size, repeat)
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(processes) as pool:
        parts = pool.map(_loading_worker, [(kind, shards[r::processes], batch_size, size, repeat)
                                           for r in range(processes)])
    return max(t for t, _ in parts), sum(n for _, n in parts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("photos", type=Path, help="folder of photos (e.g. /work/shared/photos)")
    ap.add_argument("--work", type=Path, default=Path("/tmp/gsi-shard-bench"), help="scratch folder")
    ap.add_argument("--crops", type=int, default=4, help="random crops per photo")
    ap.add_argument("--size", type=int, default=224, help="crop size (CLIP input size)")
    ap.add_argument("--shards", type=int, default=4, help="JPEG input shards")
    ap.add_argument("--points", type=int, default=64, help="Gaussians per image (small, to keep encoding short)")
    ap.add_argument("--iterations", type=int, default=50, help="fitter iterations per image (small, likewise)")
    ap.add_argument("--batch-size", type=int, default=16, help="loading batch size")
    ap.add_argument("--repeat", type=int, default=20, help="timed loading passes over all shards")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    print(f"CPU check: 2 processes get {cpu_check():.2f}x the throughput of 1 on this machine now", flush=True)
    jpeg = args.work / "jpeg"
    n = build_jpeg_shards(list_photos(args.photos), jpeg, args.crops, args.size, args.shards, args.seed)
    print(f"{n} crops of {args.size}x{args.size} from {args.photos} in {args.shards} JPEG shards "
          f"({sum(p.stat().st_size for p in jpeg.glob('*.tar')) / 1e6:.2f} MB); encoding with --points "
          f"{args.points} --iterations {args.iterations}; {os.cpu_count()} CPU cores", flush=True)
    rows = []
    for procs in (1, 2):
        wall, loop, images = run_encode(jpeg, args.work / f"gsi-{procs}", procs, args.points, args.iterations)
        assert images == n, f"{images} of {n} images encoded"
        rows.append(("encode, whole command (incl. start-up)", procs, n, wall))
        rows.append(("encode, shard loop (from the manifests)", procs, n, loop))
        print(f"encoded with {procs} process(es) in {wall:.1f} s", flush=True)
    gsi_shards = sorted(str(p) for p in (args.work / "gsi-1").glob("*.tar"))
    jpeg_shards = sorted(str(p) for p in jpeg.glob("*.tar"))
    gsi_mb = sum(os.path.getsize(p) for p in gsi_shards) / 1e6
    for procs in (1, 2):
        t, m = loading("gsi", gsi_shards, procs, args.batch_size, args.size, args.repeat)
        rows.append((f"load .gsi shards ({gsi_mb:.2f} MB): GsiTarDataset + collate", procs, m, t))
        t, m = loading("jpeg", jpeg_shards, procs, args.batch_size, args.size, args.repeat)
        rows.append(("load JPEG shards: decode + CLIP preprocess + stack", procs, m, t))

    print()
    print("| task | processes | images | seconds | images/s |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for task, procs, images, seconds in rows:
        print(f"| {task} | {procs} | {images} | {seconds:.3f} | {images / seconds:.1f} |")


if __name__ == "__main__":
    main()
