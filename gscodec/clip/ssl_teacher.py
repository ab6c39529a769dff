"""A teacher trained here: the vision tower of a small open_clip ViT trained self-supervised (SimCLR) on photos.

A randomly initialised ViT's embedding mostly follows pixel-level detail; real
CLIP embeddings follow content. With no pretrained weights available, this
trains the image tower of an open_clip model (e.g. ``gsi-small-vit``) with the
SimCLR objective (NT-Xent over two augmented views of each crop: random
resized crop, flip, colour jitter, random greyscale), so that its normalized
embedding is invariant to those augmentations and reflects what the crop shows.
The text tower stays random. :func:`save_teacher` writes an open_clip
checkpoint that :func:`gscodec.clip.load_clip` (``pretrained=PATH``) and
``create_head(..., pretrained=PATH)`` load like any other weights.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .augment import apply_pixels, color_matrix, View
from .teacher import ClipBundle, load_clip


def _random_box(width: int, height: int, rng: np.random.Generator, scales: tuple[float, float]) -> tuple:
    side = min(width, height) * float(rng.uniform(*scales))
    return (float(rng.uniform(0, width - side)), float(rng.uniform(0, height - side)), side, side)


def simclr_views(photo: np.ndarray, size: int, rng: np.random.Generator,
                 scales: tuple[float, float] = (0.15, 1.0)) -> tuple[np.ndarray, np.ndarray]:
    """Two augmented ``(size, size, 3)`` uint8 views of one random square crop of ``photo`` (``(H, W, 3)``).

    The crop's side is ``scales`` of the photo's shorter side; each view is a random resized crop of 35-100%
    of the crop's area (aspect 3/4-4/3), flipped with probability 1/2, colour-jittered (gain 0.6-1.2,
    saturation 0.3-1.5, channel gains +-15%) and made grey with probability 0.2.
    """
    h, w = photo.shape[:2]
    x0, y0, side, _ = _random_box(w, h, rng, scales)
    out = []
    for _ in range(2):
        area = side * side * float(rng.uniform(0.35, 1.0))
        aspect = math.exp(float(rng.uniform(math.log(3 / 4), math.log(4 / 3))))
        bw, bh = min(side, math.sqrt(area * aspect)), min(side, math.sqrt(area / aspect))
        bx, by = x0 + float(rng.uniform(0, side - bw)), y0 + float(rng.uniform(0, side - bh))
        sat = 0.0 if rng.random() < 0.2 else float(rng.uniform(0.3, 1.5))
        col = color_matrix(float(rng.uniform(0.6, 1.2)), sat,
                           tuple(float(g) for g in rng.uniform(0.85, 1.15, 3)))  # type: ignore[arg-type]
        out.append(apply_pixels(photo, View((bx, by, bw, bh), bool(rng.random() < 0.5), col), (size, size)))
    return out[0], out[1]


def nt_xent(a: torch.Tensor, b: torch.Tensor, temperature: float) -> torch.Tensor:
    """SimCLR's loss of two ``(B, E)`` normalized view embeddings: each view must pick its partner among the
    other ``2B - 1``."""
    z = torch.cat([a, b])
    n = len(a)
    logits = z @ z.T / temperature
    logits.fill_diagonal_(float("-inf"))
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return F.cross_entropy(logits, target)


def train_ssl_teacher(photos: Sequence[str | os.PathLike], model_name: str = "gsi-small-vit", *, steps: int = 400,
                      batch_size: int = 64, lr: float = 1e-3, weight_decay: float = 0.05, temperature: float = 0.2,
                      seed: int = 0, max_seconds: float | None = None,
                      log: Callable[[str], None] = print) -> tuple[ClipBundle, dict]:
    """Train ``model_name``'s image tower with SimCLR on random crops of ``photos``.

    ``steps`` AdamW steps of ``batch_size`` crops (two views each), linear warm-up over 5% then cosine decay;
    stops early after ``max_seconds``. Returns the bundle (eval mode) and a summary (steps, seconds, losses).
    """
    from ..imageio import load_image

    torch.manual_seed(seed)
    clip = load_clip(model_name, "none")
    model = clip.model
    size = clip.image_size[0]
    pool = [load_image(p) for p in photos]
    if not pool:
        raise ValueError("no photos to train the teacher on")
    params = [p for p in model.visual.parameters()]
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay}, {"params": no_decay,
                                                                             "weight_decay": 0.0}], lr=lr)
    warm = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / warm if s < warm else 0.5 * (1 + math.cos(math.pi * min(1.0, (s - warm) /
                                                                                          max(1, steps - warm)))))
    rng = np.random.default_rng(seed)
    model.train()
    start = time.perf_counter()
    losses = []
    step = 0
    for step in range(1, steps + 1):
        a, b = [], []
        for k in rng.integers(0, len(pool), batch_size):
            va, vb = simclr_views(pool[int(k)], size, rng)
            a.append(clip.preprocess_array(va))
            b.append(clip.preprocess_array(vb))
        za = model.encode_image(torch.stack(a), normalize=True)
        zb = model.encode_image(torch.stack(b), normalize=True)
        loss = nt_xent(za, zb, temperature)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
        elapsed = time.perf_counter() - start
        if step % max(1, steps // 20) == 0 or step == steps:
            log(f"  ssl step {step}/{steps}  loss {np.mean(losses[-20:]):.3f}  {elapsed:.0f} s")
        if max_seconds is not None and elapsed > max_seconds:
            log(f"  ssl: stopped at step {step} after {elapsed:.0f} s (time limit)")
            break
    model.eval()
    model.requires_grad_(False)
    return clip, {"steps": step, "seconds": time.perf_counter() - start, "batch_size": batch_size,
                  "loss_first": float(np.mean(losses[:10])), "loss_last": float(np.mean(losses[-10:]))}


def save_teacher(clip: ClipBundle, path: str | os.PathLike) -> Path:
    """Write the whole open_clip model's state dict (a checkpoint ``load_clip(name, pretrained=path)`` reads)."""
    from ..atomic import atomic_path

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        torch.save({k: v.detach().cpu() for k, v in clip.model.state_dict().items()}, tmp)
    return path


__all__ = ["nt_xent", "save_teacher", "simclr_views", "train_ssl_teacher"]


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m gscodec.clip.ssl_teacher PHOTOS OUT.pt``: train and save a SimCLR teacher."""
    import argparse
    import json

    ap = argparse.ArgumentParser(description="Train a small open_clip ViT image tower with SimCLR on photos.")
    ap.add_argument("photos", type=Path, help="folder of (training) photos")
    ap.add_argument("out", type=Path, help="checkpoint to write (.pt)")
    ap.add_argument("--model", default="gsi-small-vit")
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--max-seconds", type=float)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    from .distill_set import list_photos

    clip, info = train_ssl_teacher(list_photos(args.photos), args.model, steps=args.steps,
                                   batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                                   max_seconds=args.max_seconds, log=lambda m: print(m, flush=True))
    save_teacher(clip, args.out)
    args.out.with_suffix(".json").write_text(json.dumps({"model": args.model, "photos": str(args.photos), **info},
                                                        indent=1))
    print(f"wrote {args.out}: {info}")


if __name__ == "__main__":
    main()
