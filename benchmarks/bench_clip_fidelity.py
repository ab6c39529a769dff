"""Fidelity of a distilled head: does the head, reading `.gsi` files, embed like the RGB teacher reads pixels?

Random square crops (with flips) of the photos make the images: crops of the
training photos train the head by distillation (stage 1: teacher on the
original crop, head on its `.gsi`); crops of other, held-out photos evaluate
it. Each crop is encoded to `.gsi` with ``gscodec.fit`` (or random Gaussians
when the fitter is not importable; the output says which).

Metrics on the held-out crops, for the trained head and for an untrained one
(same architecture, random stem and resampler; both with the stem's feature
statistics calibrated on the training data):

* cosine similarity between the head's and the teacher's embeddings;
* retrieval@1: for each crop, is the teacher embedding nearest to its head
  embedding (among all held-out crops) its own?
* zero-shot top-1 agreement: the ImageNet-1k label (simple templates) chosen
  from the head's embedding equals the one chosen from the teacher's on the
  original pixels.

The teacher on the decoded `.gsi` pixels (the ``gsi classify --rgb`` path) is
shown as a reference. Without --pretrained weights the teacher is a small
randomly initialised open_clip ViT (gsi-small-vit); the code path is the one
used with real weights (``--model ViT-B-16 --pretrained openai --size 224``
where the weights are available).

    python benchmarks/bench_clip_fidelity.py /work/shared/photos
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_clip_common import encode, list_photos, load_rgb, random_crop  # noqa: E402

import gscodec  # noqa: E402
from gscodec.clip import create_head, embed_files, embed_rendered, open_dataset  # noqa: E402
from gscodec.clip.data import load_teacher_image  # noqa: E402
from gscodec.clip.train import TrainConfig, Trainer, trainable_summary  # noqa: E402
from gscodec.clip.zeroshot import get_templates, imagenet_classnames, text_classifier  # noqa: E402


def make_crops(photos: list[Path], folder: Path, per_photo: int, size: int, seed: int) -> list[np.ndarray]:
    """Write ``per_photo`` random crops of each photo as PNG into ``folder``; return the pixel arrays."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for k, p in enumerate(photos):
        rng = np.random.default_rng([seed, k])
        im = load_rgb(p)
        for j in range(per_photo):
            crop = random_crop(im, size, rng)
            path = folder / f"{p.stem}_{j:03d}.png"
            if not path.is_file():
                Image.fromarray(crop).save(path)
            out.append(np.asarray(Image.open(path).convert("RGB")))
    return out


@torch.no_grad()
def metrics(emb: torch.Tensor, teacher: torch.Tensor, classifier: torch.Tensor) -> dict[str, float]:
    """Cosine, retrieval@1 and zero-shot top-1 agreement of ``emb`` against ``teacher`` (both (B, E), normalized)."""
    cos = (emb * teacher).sum(-1)
    sims = emb @ teacher.T
    r1 = (sims.argmax(1) == torch.arange(len(emb))).float().mean()
    agree = ((emb @ classifier.T).argmax(1) == (teacher @ classifier.T).argmax(1)).float().mean()
    return {"cosine": float(cos.mean()), "cosine_min": float(cos.min()), "retrieval@1": float(r1),
            "zero_shot_agreement": float(agree)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("photos", type=Path, help="folder of photos (e.g. /work/shared/photos)")
    ap.add_argument("--work", type=Path, default=Path("/tmp/gsi-clip-bench"), help="cache of crops and .gsi files")
    ap.add_argument("--head-config", default="gsi-small")
    ap.add_argument("--model", help="teacher open_clip model (default: the head config's)")
    ap.add_argument("--pretrained", help="teacher weights (default: the head config's; gsi-small: none)")
    ap.add_argument("--size", type=int, default=64, help="crop size (the teacher's input size)")
    ap.add_argument("--points", type=int, default=150, help="Gaussians per crop")
    ap.add_argument("--iterations", type=int, default=200, help="fitter iterations per crop")
    ap.add_argument("--test-photos", default="chelsea,flower,rocket", help="held-out photos (names)")
    ap.add_argument("--train-crops", type=int, default=48, help="crops per training photo")
    ap.add_argument("--test-crops", type=int, default=16, help="crops per held-out photo")
    ap.add_argument("--epochs", type=float, default=30)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json-out", type=Path, help="also write the results as JSON here")
    args = ap.parse_args()

    photos = list_photos(args.photos)
    test_names = set(args.test_photos.split(","))
    test_photos = [p for p in photos if p.stem in test_names] or photos[-3:]
    train_photos = [p for p in photos if p not in test_photos]
    root = args.work / f"fidelity{args.size}-{args.points}"
    train_dir, test_dir = root / "train", root / "test"
    train_px = make_crops(train_photos, train_dir, args.train_crops, args.size, args.seed)
    test_px = make_crops(test_photos, test_dir, args.test_crops, args.size, args.seed + 1)
    train_gsi = sorted(train_dir.glob("*.png"))
    test_gsi = sorted(test_dir.glob("*.png"))
    method = encode(train_px + test_px, [p.with_suffix(".gsi") for p in train_gsi + test_gsi], args.points,
                    args.iterations)
    psnr = []
    if method == "gscodec.fit":
        from gscodec.fit import psnr as psnr_fn

        for p in test_gsi:
            psnr.append(psnr_fn(gscodec.render(gscodec.read(p.with_suffix(".gsi")).gaussians),
                                np.asarray(Image.open(p).convert("RGB"))))

    torch.manual_seed(args.seed)
    head, clip = create_head(args.head_config, clip_model=args.model, pretrained=args.pretrained)
    teacher_note = (f"{clip.model_name} with pretrained weights {clip.pretrained!r}" if clip.pretrained != "none"
                    else f"{clip.model_name}, RANDOMLY INITIALISED (no pretrained weights are available here)")
    untrained = copy.deepcopy(head)
    train_ds = open_dataset([train_dir], image_transform=clip.preprocess)
    cfg = TrainConfig(stage="distill", epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed)
    trainer = Trainer(head, clip, train_ds, cfg, device="cpu")
    summary = trainable_summary(head, clip)
    print(f"teacher: {teacher_note}")
    print(f"head: {args.head_config} (K={head.num_tokens}), trainable {summary['trainable']:,} parameters "
          f"({100 * summary['fraction_of_head']:.1f}% of the head)")
    print(f"images: {args.size}x{args.size} crops; train {len(train_gsi)} from {len(train_photos)} photos, "
          f"held-out {len(test_gsi)} from {', '.join(p.stem for p in test_photos)}; .gsi by {method}, "
          f"{args.points} Gaussians" + (f", held-out PSNR {np.mean(psnr):.2f} dB" if psnr else ""))
    print(f"training: {trainer.total_steps} steps of {args.batch_size} ({args.epochs:g} epochs), lr {args.lr}")
    t0 = time.perf_counter()

    def log(info: dict) -> None:
        if info["step"] % max(1, trainer.total_steps // 10) == 0 or info["step"] == trainer.total_steps:
            print(f"  step {info['step']:5d}/{info['total']}  loss {info['loss']:.5f}  "
                  f"{time.perf_counter() - t0:6.1f} s", flush=True)

    trainer.run(progress=log)
    # The untrained head (the initial weights) gets the same data-calibrated feature statistics,
    # so only learning differs between the two.
    untrained.stem.feature_mean.copy_(head.stem.feature_mean)
    untrained.stem.feature_std.copy_(head.stem.feature_std)

    classes = imagenet_classnames()
    classifier = text_classifier(clip, classes, get_templates("simple"))
    results = {}
    for split, pngs in (("held-out", test_gsi), ("train", train_gsi)):
        teacher = torch.cat([clip.encode_images(torch.stack([load_teacher_image(p, clip.preprocess) for p in pngs[i:i + 64]]))
                             for i in range(0, len(pngs), 64)])
        gsis = [p.with_suffix(".gsi") for p in pngs]
        rows = {"trained head (.gsi)": embed_files(head, gsis), "untrained head (.gsi)": embed_files(untrained, gsis)}
        if split == "held-out":
            rows["teacher on decoded .gsi pixels"] = embed_rendered(clip, [gscodec.read(p).gaussians for p in gsis])
        results[split] = {name: metrics(F.normalize(e, dim=-1), teacher, classifier) for name, e in rows.items()}
        off = teacher @ teacher.T
        results[split]["_teacher_mean_pairwise_cosine"] = float(
            (off.sum() - off.diag().sum()) / (len(teacher) * (len(teacher) - 1)))

    print(f"\nagainst the teacher on the original pixels (zero-shot: {len(classes)} ImageNet classes, simple "
          "templates, through the teacher's text tower)")
    for split, rows in results.items():
        n = len(test_gsi) if split == "held-out" else len(train_gsi)
        print(f"\n{split} crops ({n}); teacher embeddings of different crops have mean cosine "
              f"{rows['_teacher_mean_pairwise_cosine']:.3f}")
        print(f"  {'':34s} {'cosine':>8s} {'min cos':>8s} {'R@1':>7s} {'0-shot agree':>13s}")
        for name, m in rows.items():
            if name.startswith("_"):
                continue
            print(f"  {name:34s} {m['cosine']:8.4f} {m['cosine_min']:8.4f} {100 * m['retrieval@1']:6.1f}% "
                  f"{100 * m['zero_shot_agreement']:12.1f}%")
    if args.json_out:
        args.json_out.write_text(json.dumps({"teacher": teacher_note, "method": method, "args": vars(args) | {
            "photos": str(args.photos), "work": str(args.work), "json_out": str(args.json_out)},
            "results": results}, indent=1, default=str))


if __name__ == "__main__":
    main()
