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


def shrink_photo(photo: np.ndarray, short_side: int) -> np.ndarray:
    """``(H, W, 3)`` uint8 downsampled (Lanczos) so that its shorter side is at most ``short_side`` pixels."""
    from PIL import Image

    h, w = photo.shape[:2]
    if min(h, w) <= short_side:
        return photo
    scale = short_side / min(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.asarray(Image.fromarray(photo).resize(size, Image.LANCZOS))


def load_pool(photos: Sequence[str | os.PathLike], short_side: int | None = 384) -> list[np.ndarray]:
    """The photos as ``(H, W, 3)`` uint8 arrays, each through :func:`shrink_photo` (``None``: full size)."""
    from ..imageio import load_image

    return [shrink_photo(load_image(p), short_side) if short_side else load_image(p) for p in photos]


def _view_batch(clip: ClipBundle, pool: Sequence[np.ndarray], n: int,
                rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Two ``(n, 3, S, S)`` preprocessed batches: the paired views of ``n`` crops of random photos of ``pool``."""
    size = clip.image_size[0]
    a, b = [], []
    for k in rng.integers(0, len(pool), n):
        va, vb = simclr_views(pool[int(k)], size, rng)
        a.append(clip.preprocess_array(va))
        b.append(clip.preprocess_array(vb))
    return torch.stack(a), torch.stack(b)


@torch.no_grad()
def view_accuracy(clip: ClipBundle, pool: Sequence[np.ndarray], n: int = 256, seed: int = 1) -> float:
    """SimCLR's own test on ``pool``: the fraction of the ``2n`` views of ``n`` crops whose nearest embedding
    (cosine, among the other ``2n - 1``) is their partner view (chance ``1 / (2n - 1)``)."""
    a, b = _view_batch(clip, pool, n, np.random.default_rng(seed))
    z = torch.cat([clip.encode_images(a), clip.encode_images(b)])
    sims = z @ z.T
    sims.fill_diagonal_(float("-inf"))
    partner = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)])
    return float((sims.argmax(1) == partner).float().mean())


def _lr_factor(progress: float, warmup: float = 0.05, floor: float = 0.02) -> float:
    """Linear warm-up over the first ``warmup`` of the run, then cosine decay to ``floor`` (``progress`` 0..1)."""
    if progress < warmup:
        return max(progress / warmup, 1e-3)
    t = min(1.0, (progress - warmup) / (1 - warmup))
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t))


def train_ssl_teacher(photos: Sequence[str | os.PathLike], model_name: str = "gsi-small-vit", *, steps: int = 400,
                      batch_size: int = 64, lr: float = 1e-3, weight_decay: float = 0.05, temperature: float = 0.2,
                      seed: int = 0, max_seconds: float | None = None, short_side: int | None = 384,
                      patch_dropout: float = 0.0, val_photos: Sequence[str | os.PathLike] = (),
                      log: Callable[[str], None] = print) -> tuple[ClipBundle, dict]:
    """Train ``model_name``'s image tower with SimCLR on random crops of ``photos``.

    AdamW steps of ``batch_size`` crops (two views each). The schedule (linear warm-up over 5%, then cosine
    decay to 2% of ``lr``) runs on the run's progress, the larger of ``step / steps`` and ``elapsed /
    max_seconds``: with a time limit the learning rate still decays to its end before the run stops.
    ``short_side``: photos are downsampled once so that their shorter side is at most this many pixels
    (views are cut from them; ``None``: full size). ``patch_dropout``: the fraction of patch tokens dropped at
    random in training (FLIP; evaluation sees every token). Returns the bundle (eval mode) and a summary:
    steps, seconds, losses, and :func:`view_accuracy` before and after on ``photos`` (``"train"``) and on
    ``val_photos`` (``"val"``).
    """
    torch.manual_seed(seed)
    clip = load_clip(model_name, "none")
    model = clip.model
    pool, val_pool = load_pool(photos, short_side), load_pool(val_photos, short_side)
    if not pool:
        raise ValueError("no photos to train the teacher on")
    pools = {"train": pool, **({"val": val_pool} if val_pool else {})}
    before = {name: view_accuracy(clip, p) for name, p in pools.items()}
    params = [p for p in model.visual.parameters()]
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay}, {"params": no_decay,
                                                                             "weight_decay": 0.0}], lr=lr)
    rng = np.random.default_rng(seed)
    kept_dropout = model.visual.patch_dropout
    if patch_dropout > 0:
        from open_clip.transformer import PatchDropout

        model.visual.patch_dropout = PatchDropout(patch_dropout)
    model.train()
    start = time.perf_counter()
    losses: list[float] = []
    step = 0

    def progress() -> float:
        return max(step / steps, (time.perf_counter() - start) / max_seconds if max_seconds else 0.0)

    while progress() < 1.0:
        for group in opt.param_groups:
            group["lr"] = lr * _lr_factor(progress())
        a, b = _view_batch(clip, pool, batch_size, rng)
        loss = nt_xent(model.encode_image(a, normalize=True), model.encode_image(b, normalize=True), temperature)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        losses.append(float(loss.detach()))
        step += 1
        if step % 10 == 0 or progress() >= 1.0:
            log(f"  ssl step {step}  loss {np.mean(losses[-10:]):.3f}  lr {opt.param_groups[0]['lr']:.2e}  "
                f"{time.perf_counter() - start:.0f} s")
    seconds = time.perf_counter() - start
    model.visual.patch_dropout = kept_dropout
    model.eval()
    model.requires_grad_(False)
    after = {name: view_accuracy(clip, p) for name, p in pools.items()}
    log(f"  ssl: {step} steps in {seconds:.0f} s; view accuracy " + ", ".join(
        f"{name} {100 * before[name]:.1f}% -> {100 * after[name]:.1f}%" for name in pools))
    return clip, {"steps": step, "seconds": seconds, "batch_size": batch_size, "lr": lr, "temperature": temperature,
                  "short_side": short_side, "patch_dropout": patch_dropout, "loss_first": float(np.mean(losses[:10])),
                  "loss_last": float(np.mean(losses[-10:])), "view_accuracy_before": before,
                  "view_accuracy_after": after}


def save_teacher(clip: ClipBundle, path: str | os.PathLike) -> Path:
    """Write the whole open_clip model's state dict (a checkpoint ``load_clip(name, pretrained=path)`` reads)."""
    from ..atomic import atomic_path

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        torch.save({k: v.detach().cpu() for k, v in clip.model.state_dict().items()}, tmp)
    return path


__all__ = ["load_pool", "nt_xent", "save_teacher", "shrink_photo", "simclr_views", "train_ssl_teacher", "view_accuracy"]


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m gscodec.clip.ssl_teacher PHOTOS OUT.pt``: train and save a SimCLR teacher; with
    ``--view-accuracy`` measure an existing one (``OUT.pt``, or ``none`` for random weights) on PHOTOS."""
    import argparse
    import json

    ap = argparse.ArgumentParser(description="Train a small open_clip ViT image tower with SimCLR on photos.")
    ap.add_argument("photos", type=Path, help="folder of (training) photos")
    ap.add_argument("out", type=Path, help="checkpoint to write (.pt); with --view-accuracy, to measure")
    ap.add_argument("--view-accuracy", action="store_true",
                    help="train nothing: print the view accuracy of OUT (none: random weights, --seed) on PHOTOS")
    ap.add_argument("--model", default="gsi-small-vit")
    ap.add_argument("--steps", type=int, default=400, help="steps at most")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--temperature", type=float, default=0.2)
    ap.add_argument("--max-seconds", type=float, help="time limit; the schedule decays by then")
    ap.add_argument("--short-side", type=int, default=384, help="photos downsampled to this shorter side (0: not)")
    ap.add_argument("--patch-dropout", type=float, default=0.0, help="fraction of patch tokens dropped in training")
    ap.add_argument("--val-photos", type=Path, help="folder of photos for the view accuracy (not trained on)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    from .distill_set import list_photos

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.view_accuracy:
        torch.manual_seed(args.seed)
        clip = load_clip(args.model, "none" if str(args.out) == "none" else str(args.out))
        pool, n = load_pool(list_photos(args.photos), args.short_side or None), 256
        print(f"{args.out}: view accuracy {100 * view_accuracy(clip, pool, n):.1f}% on the {len(pool)} photos of "
              f"{args.photos} (chance {100 / (2 * n - 1):.1f}%)")
        return
    clip, info = train_ssl_teacher(list_photos(args.photos), args.model, steps=args.steps,
                                   batch_size=args.batch_size, lr=args.lr, temperature=args.temperature,
                                   seed=args.seed, max_seconds=args.max_seconds, short_side=args.short_side or None,
                                   patch_dropout=args.patch_dropout,
                                   val_photos=list_photos(args.val_photos) if args.val_photos else (),
                                   log=lambda m: print(m, flush=True))
    save_teacher(clip, args.out)
    args.out.with_suffix(".json").write_text(json.dumps({"model": args.model, "photos": str(args.photos), **info},
                                                        indent=1))
    print(f"wrote {args.out}: {info}")


if __name__ == "__main__":
    main()
