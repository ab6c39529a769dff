"""Fidelity of a distilled head on photos never trained on: does the head, reading `.gsi`, embed like its teacher?

Two folders of photos: training photos and held-out photos (a third,
``--val-photos``, picks the recipe's best step; default: two of the training
photos, left out of training). Every folder becomes a distillation split
(:mod:`gscodec.clip.distill_set`: random square crops at several scales, flips,
colour jitter, fitted to ``--points`` Gaussians; tar shards, resumable), the
teachers' targets are cached beside the shards (training crops with
``--views`` Gaussian-domain views each), and heads are trained on growing
numbers of training crops (the learning curve, ``--curve``).

Teachers (``--teachers``):

* ``random``: the head config's open_clip ViT, randomly initialised (seeded);
* ``simclr``: the same ViT trained here with SimCLR on the training photos
  (:mod:`gscodec.clip.ssl_teacher`; ``--ssl-teacher PATH`` reuses a checkpoint,
  otherwise one is trained for ``--ssl-seconds``).

Recipe per run: for a cell-pooling head (``--head-config gsi-small-cells``)
first ``--footprint-steps`` of footprint pretraining and the output layer set
from the teacher's patch embedding (``TrainConfig.footprint_steps``); phase 1
token-level (the resampled tokens against the
teacher's patch embedding; no trunk in the loop), phase 2 joint (tokens, the
embedding and an InfoNCE term through the frozen trunk); held-out-free model
selection on the validation crops (``eval_every``). Metrics on the held-out
crops against the teacher on the original pixels: cosine, retrieval@1 (gallery
= all held-out crops, and galleries of 48 as in the earlier benchmark),
zero-shot agreement (1000 ImageNet classes, simple templates, the teacher's
text tower), next to the render path (the teacher on the decoded `.gsi`
pixels, ``gsi classify --rgb``).

    python benchmarks/bench_clip_fidelity.py /work/clipdata/pool/train /work/clipdata/pool/held \\
        --val-photos /work/clipdata/pool/val --work /work/clipdata/set64
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

import gscodec
from gscodec.clip import create_head, embed_rendered, load_clip
from gscodec.clip.distill_set import DistillDataset, build_split, cache_targets, list_photos, read_shard
from gscodec.clip.fidelity import embed_dataset, evaluator, fidelity_metrics
from gscodec.clip.train import TrainConfig, Trainer, trainable_summary
from gscodec.clip.zeroshot import get_templates, imagenet_classnames, text_classifier

RESULTS = Path(__file__).resolve().parent / "results" / "clip-fidelity"


def log(msg: str) -> None:
    print(msg, flush=True)


def teacher_bundle(name: str, args: argparse.Namespace, train_photos: list[Path], val_photos: list[Path]):
    """``(head, clip, note)`` for teacher ``name`` (a fresh head of ``args.head_config`` on it)."""
    if name == "random":
        torch.manual_seed(args.seed)
        head, clip = create_head(args.head_config, pretrained="none")
        return head, clip, f"{clip.model_name}, randomly initialised (seed {args.seed})"
    if name == "simclr":
        path = args.ssl_teacher or (args.work / "teachers" / "simclr.pt")
        if not Path(path).is_file():
            from gscodec.clip.ssl_teacher import save_teacher, train_ssl_teacher

            log(f"training the SimCLR teacher on {len(train_photos)} photos for up to {args.ssl_seconds:.0f} s")
            clip, info = train_ssl_teacher(train_photos, "gsi-small-vit", steps=args.ssl_steps,
                                           max_seconds=args.ssl_seconds, seed=args.seed, val_photos=val_photos,
                                           log=log)
            save_teacher(clip, path)
            Path(path).with_suffix(".json").write_text(json.dumps(info, indent=1))
        info = json.loads(Path(path).with_suffix(".json").read_text()) if Path(path).with_suffix(".json").is_file() \
            else {}
        torch.manual_seed(args.seed)
        head, clip = create_head(args.head_config, pretrained=str(path))
        acc = info.get("view_accuracy_after", {})
        note = f"{clip.model_name} trained with SimCLR here ({path}; {info.get('steps', '?')} steps of " \
               f"{info.get('batch_size', '?')}, {info.get('seconds', 0) / 60:.0f} min" + \
               "".join(f"; {k} view accuracy {100 * v:.1f}%" for k, v in acc.items()) + ")"
        return head, clip, note
    raise SystemExit(f"unknown teacher {name!r} (random, simclr)")


def train_head(head, clip, train_ds: DistillDataset, val_ds: DistillDataset, args: argparse.Namespace,
               classifier: torch.Tensor) -> tuple[object, dict]:
    """The two-phase recipe on ``train_ds``; returns the head (best on validation) and a summary."""
    head = copy.deepcopy(head)
    evaluate = evaluator(val_ds, classifier)
    summary = {"phases": []}
    start = time.perf_counter()
    best = None  # (validation retrieval@1, phase, step, state): the best head over all phases
    phases = [("token", TrainConfig(stage="distill", steps=args.token_steps or None, epochs=args.token_epochs, batch_size=args.batch_size,
                                    lr=args.token_lr, token_weight=1.0, embed_weight=0.0, weight_decay=0.05,
                                    gaussian_dropout=args.gaussian_dropout, seed=args.seed, cache_targets=False,
                                    eval_every=0, select_metric="", footprint_steps=args.footprint_steps)),
              ("joint", TrainConfig(stage="distill", steps=args.joint_steps or None, epochs=args.joint_epochs, batch_size=args.batch_size,
                                    lr=args.joint_lr, token_weight=args.joint_token_weight, embed_weight=1.0,
                                    contrast_weight=args.contrast_weight, weight_decay=0.05,
                                    gaussian_dropout=args.gaussian_dropout, seed=args.seed + 1,
                                    cache_targets=False, calibrate=False, eval_every=0,
                                    select_metric="retrieval@1"))]
    for name, cfg in phases:
        if (cfg.steps or 0) <= 0 and cfg.epochs <= 0:
            continue
        trainer = Trainer(head, clip, train_ds, cfg, device="cpu")
        cfg.eval_every = args.eval_every or max(1, trainer.total_steps // 4)
        if name == "token":
            cfg.select_metric = "retrieval@1"

        def progress(info: dict, name=name, trainer=trainer) -> None:
            if "eval" in info:
                e = info["eval"]
                log(f"    {name} step {info['step']:5d}/{info['total']}  val cos {e['cosine']:.4f}  "
                    f"R@1 {100 * e['retrieval@1']:5.1f}%  agree {100 * e['zero_shot_agreement']:5.1f}%  "
                    f"{time.perf_counter() - start:6.0f} s")

        out = trainer.run(progress=progress, evaluate=evaluate)
        if trainer.best is not None and (best is None or trainer.best[0] > best[0]):
            best = (trainer.best[0], name, trainer.best[1], {k: v.clone() for k, v in trainer.best[2].items()})
        if trainer.footprint_error is not None:
            log(f"    footprints: relative error {trainer.footprint_error:.5f} after {cfg.footprint_steps} steps")
            summary["footprint_error"] = trainer.footprint_error
        summary["phases"].append({"phase": name, "steps": out["steps"], "seconds": out["seconds"],
                                  "best_step": out.get("best_step"), "history": trainer.history,
                                  "config": {k: v for k, v in vars(cfg).items() if not k.startswith("_")}})
        if time.perf_counter() - start > args.time_limit:
            log(f"    time limit of {args.time_limit:.0f} s reached after phase {name}")
            break
    if best is not None:
        head.load_state_dict(best[3])
        summary["selected"] = {"phase": best[1], "step": best[2], "val_retrieval@1": best[0]}
    summary["seconds"] = time.perf_counter() - start
    return head, summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("train_photos", type=Path, help="folder of training photos")
    ap.add_argument("held_photos", type=Path, help="folder of held-out photos (never trained on)")
    ap.add_argument("--val-photos", type=Path, help="folder of validation photos (default: 2 training photos)")
    ap.add_argument("--work", type=Path, default=Path("/tmp/gsi-clip-fidelity"), help="shards, targets, teachers")
    ap.add_argument("--head-config", default="gsi-small-spatial")
    ap.add_argument("--teachers", default="random,simclr")
    ap.add_argument("--ssl-teacher", type=Path, help="SimCLR teacher checkpoint (trained when missing)")
    ap.add_argument("--ssl-seconds", type=float, default=840, help="SimCLR training time limit (its schedule "
                    "decays by then)")
    ap.add_argument("--ssl-steps", type=int, default=400, help="SimCLR steps at most")
    ap.add_argument("--size", type=int, default=64, help="crop size (the teacher's input size)")
    ap.add_argument("--points", type=int, default=150, help="Gaussians per crop")
    ap.add_argument("--effort", type=int, default=1, help="fitter effort")
    ap.add_argument("--train-per-photo", type=int, default=40)
    ap.add_argument("--train-shards", type=int, default=0,
                    help="use only the first N training shards of 256 crops (0: all)")
    ap.add_argument("--eval-per-photo", type=int, default=32, help="crops per held-out photo")
    ap.add_argument("--val-per-photo", type=int, default=16, help="crops per validation photo")
    ap.add_argument("--views", type=int, default=4, help="cached views per training crop (1: no augmentation)")
    ap.add_argument("--curve", default="310x1,620x1,1240x1,1240x4",
                    help="learning-curve points CROPSxVIEWS (training items = crops x views)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--token-epochs", type=float, default=30)
    ap.add_argument("--token-lr", type=float, default=2e-3)
    ap.add_argument("--token-steps", type=int, default=0, help="fixed token-phase steps (0: --token-epochs)")
    ap.add_argument("--joint-epochs", type=float, default=3)
    ap.add_argument("--joint-steps", type=int, default=0, help="fixed joint-phase steps (0: --joint-epochs)")
    ap.add_argument("--joint-lr", type=float, default=5e-4)
    ap.add_argument("--joint-token-weight", type=float, default=0.5)
    ap.add_argument("--contrast-weight", type=float, default=0.1)
    ap.add_argument("--gaussian-dropout", type=float, default=0.0)
    ap.add_argument("--footprint-steps", type=int, default=0,
                    help="cell-pooling heads: footprint pretraining steps before the token phase")
    ap.add_argument("--eval-every", type=int, default=0,
                    help="validation metrics every N steps, logged (0: four times per phase)")
    ap.add_argument("--time-limit", type=float, default=3600, help="seconds per run (checked between phases)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json-out", type=Path, help="default: benchmarks/results/clip-fidelity/<teachers>.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    train_photos = list_photos(args.train_photos)
    if args.val_photos is not None:
        val_photos = list_photos(args.val_photos)
    else:
        train_photos, val_photos = train_photos[:-2], train_photos[-2:]
    held_photos = list_photos(args.held_photos)
    sets = args.work
    common = dict(size=args.size, points=args.points, effort=args.effort, log=log)
    t0 = time.perf_counter()
    shards = {"train": build_split(train_photos, sets, "train", args.train_per_photo, seed=0,
                                   max_shards=args.train_shards or None, **common),
              "val": build_split(val_photos, sets, "val", args.val_per_photo, seed=2, **common),
              "held": build_split(held_photos, sets, "held", args.eval_per_photo, seed=1, **common)}
    log(f"sets ready in {time.perf_counter() - t0:.0f} s")
    held_samples = [s for sh in shards["held"] for s in read_shard(sh)]
    from gscodec.fit import psnr as psnr_fn

    held_psnr = float(np.mean([psnr_fn(gscodec.render(s.gaussians), s.pixels) for s in held_samples]))
    curve = [tuple(int(v) for v in p.split("x")) for p in args.curve.split(",")]
    results: dict = {"args": {k: str(v) for k, v in vars(args).items()}, "teachers": {},
                     "photos": {"train": [p.name for p in train_photos], "val": [p.name for p in val_photos],
                                "held": [p.name for p in held_photos]},
                     "held_psnr": held_psnr}
    for teacher_name in args.teachers.split(","):
        head0, clip, note = teacher_bundle(teacher_name, args, train_photos, val_photos)
        tid = f"{teacher_name}-s{args.seed}"
        log(f"\n== teacher {teacher_name}: {note}")
        t0 = time.perf_counter()
        cache_targets(shards["train"], clip, tid, views=args.views, log=log)
        cache_targets(shards["val"] + shards["held"], clip, tid, views=1, log=log)
        target_seconds = time.perf_counter() - t0
        classifier = text_classifier(clip, imagenet_classnames(), get_templates("simple"))
        val_ds = DistillDataset(shards["val"], tid, views=1, clip=clip)
        held_ds = DistillDataset(shards["held"], tid, views=1, clip=clip)
        _, held_targets = embed_dataset(head0, held_ds)
        render_emb = embed_rendered(clip, [s.gaussians for s in held_samples])
        keyed = dict(zip(held_ds.keys, range(len(held_ds.keys))))
        order = [keyed[s.key] for s in held_samples]
        render_m = fidelity_metrics(render_emb, held_targets[order], classifier, gallery=48)
        untrained_m = fidelity_metrics(*embed_dataset(head0, held_ds), classifier, gallery=48)
        summary = trainable_summary(head0, clip)
        log(f"head {args.head_config} (K={head0.num_tokens}), trainable {summary['trainable']:,} parameters; "
            f"held-out: {held_ds.crops} crops of {len(held_photos)} photos, PSNR {held_psnr:.2f} dB; "
            f"targets cached in {target_seconds:.0f} s")
        rows = []
        for crops, views in curve:
            train_ds = DistillDataset(shards["train"], tid, views=views, limit=crops, clip=clip,
                                      image_transform=clip.preprocess)
            log(f"  -- {train_ds.crops} crops x {train_ds.views} view(s) = {len(train_ds)} training items")
            head, info = train_head(head0, clip, train_ds, val_ds, args, classifier)
            held_m = fidelity_metrics(*embed_dataset(head, held_ds), classifier, gallery=48)
            idx = list(range(0, len(train_ds), train_ds.views))[:len(held_ds)]
            train_m = fidelity_metrics(*embed_dataset(head, train_ds, idx), classifier, gallery=48)
            rows.append({"crops": train_ds.crops, "views": train_ds.views, "items": len(train_ds),
                         "seconds": info["seconds"], "held": held_m, "train": train_m, "training": info})
            log(f"  => held-out cos {held_m['cosine']:.4f}  R@1 {100 * held_m['retrieval@1']:.1f}% "
                f"(48: {100 * held_m['retrieval@1_g48']:.1f}%)  agree {100 * held_m['zero_shot_agreement']:.1f}%"
                f"  | train R@1 {100 * train_m['retrieval@1']:.1f}%  | {info['seconds'] / 60:.1f} min")
        results["teachers"][teacher_name] = {"note": note, "render_path": render_m, "untrained": untrained_m,
                                             "curve": rows, "target_seconds": target_seconds}
        out = args.json_out or RESULTS / f"fidelity-{args.teachers.replace(',', '-')}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=1, default=float))

    gallery = len(held_samples)
    print(f"\nheld-out: {gallery} crops of {', '.join(p.stem for p in held_photos)} (chance R@1 "
          f"{100 / gallery:.2f}%; galleries of 48: {100 / 48:.1f}%)")
    print(f"{'teacher':8s} {'path':22s} {'crops':>6s} {'items':>6s} {'min':>6s} {'cosine':>8s} {'R@1':>7s} "
          f"{'R@1/48':>7s} {'agree':>7s}")
    for name, r in results["teachers"].items():
        def row(label: str, m: dict, crops="", items="", minutes="") -> None:
            print(f"{name:8s} {label:22s} {crops:>6} {items:>6} {minutes:>6} {m['cosine']:8.4f} "
                  f"{100 * m['retrieval@1']:6.1f}% {100 * m['retrieval@1_g48']:6.1f}% "
                  f"{100 * m['zero_shot_agreement']:6.1f}%")
        row("render path (pixels)", r["render_path"])
        row("untrained head", r["untrained"])
        for c in r["curve"]:
            row("trained head", c["held"], c["crops"], c["items"], f"{c['seconds'] / 60:.1f}")
    out = args.json_out or RESULTS / f"fidelity-{args.teachers.replace(',', '-')}.json"
    out.write_text(json.dumps(results, indent=1, default=float))
    plot(results, out.with_suffix(".png"))
    print(f"\nwrote {out} and {out.with_suffix('.png')}")


def plot(results: dict, path: Path) -> None:
    """Held-out retrieval@1 and cosine against training items, one line per teacher."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # pragma: no cover
        return
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for name, r in results["teachers"].items():
        items = [c["items"] for c in r["curve"]]
        for ax, key, scale in zip(axes, ("cosine", "retrieval@1", "zero_shot_agreement"), (1, 100, 100)):
            ax.plot(items, [scale * c["held"][key] for c in r["curve"]], "o-", label=f"head, {name} teacher")
            ax.axhline(scale * r["render_path"][key], ls="--", lw=0.8, color=ax.lines[-1].get_color(),
                       label=f"render path, {name}")
    for ax, title in zip(axes, ("cosine", "retrieval@1 (%)", "zero-shot agreement (%)")):
        ax.set_xscale("log")
        ax.set_xlabel("training items (crops x views)")
        ax.set_title(f"held-out {title}")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    sys.exit(main())
