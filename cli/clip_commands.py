"""``gsi train-head`` and ``gsi classify``: the compressed-domain CLIP head on the command line.

Both are plain click commands; ``cli/main.py`` registers them on the ``gsi``
group. Library errors become :class:`click.ClickException` here (exit 1);
progress and diagnostics go to stderr, results to stdout.
"""

from __future__ import annotations

import os
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import click

from .common import (STDIO, binary_stdin, echo_json, echo_tsv, err_console, error_text, human_bytes, info_console,
                     out_console, printable, safe, same_file, shows_bars, stdout_is_terminal, verbosity_options)

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
DEFAULT_HEAD = "gsi-vit-b-16-k196"
_STAGE_LR = {"distill": 5e-4, "contrastive": 5e-5}


@contextmanager
def _library_errors(prefix: str = "") -> Iterator[None]:
    """Turn the library's errors into one-line ClickExceptions (no stack traces)."""
    from gscodec.clip import ClipHeadError
    from gscodec.format import GsiError

    try:
        yield
    except (ClipHeadError, GsiError, OSError, ValueError) as exc:
        raise click.ClickException(printable(f"{prefix}{error_text(exc)}")) from None


@contextmanager
def _warnings_to_stderr() -> Iterator[None]:
    """Show Python warnings (skipped files, ...) as one-line messages on stderr."""
    err = err_console()
    old = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):  # noqa: ANN001
        err.print(f"[yellow]warning:[/] {safe(str(message))}")

    warnings.showwarning = show
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("default")
            warnings.filterwarnings("ignore", category=UserWarning, module="torch")
            warnings.filterwarnings("ignore", category=FutureWarning)
            yield
    finally:
        warnings.showwarning = old


def _list_heads(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    from gscodec.clip import get_head_config, list_heads

    for name in list_heads():
        cfg = get_head_config(name)
        click.echo(f"{name:22s} {cfg.clip_model:16s} K={cfg.num_tokens:<4d} pretrained={cfg.pretrained}  "
                   f"{cfg.description}")
    ctx.exit(0)


def _device(device: str) -> str:
    """``--device`` resolved by :func:`gscodec.raster.triton.availability.resolve_device` (CLIP needs no triton)."""
    from .device import cli_device

    return str(cli_device(device, need_triton=False))


FOOTPRINT_STEPS = 8000
"""Footprint pretraining steps of a new cell-pooling head (``--footprint-steps``)."""

# --- train-head -------------------------------------------------------------------------------------------


@click.command("train-head", context_settings=CONTEXT)
@click.argument("data", nargs=-1, required=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Head file to write (.safetensors).")
@click.option("--stage", type=click.Choice(["distill", "contrastive"]), default="distill", show_default=True,
              help="distill: match the RGB model's embeddings of the original images (stem + resampler train). "
                   "contrastive: image-caption pairs, text tower frozen (also the first trunk blocks, final norm "
                   "and projection train).")
@click.option("--head-config", default=DEFAULT_HEAD, show_default=True, metavar="NAME|JSON",
              help="Head config name (see --list-heads) or a head config .json file.")
@click.option("--init-head", type=click.Path(dir_okay=False, path_type=Path),
              help="Start from this head file (e.g. the distilled head for the contrastive stage).")
@click.option("--model", help="open_clip model of the teacher/trunk (any ViT); default: the head config's.")
@click.option("--pretrained", help="Teacher weights: an open_clip tag (e.g. openai), a checkpoint file, or 'none' "
                                   "for random weights. Default: the head config's tag. (OpenAI weights given as a "
                                   "file need a -quickgelu model, e.g. --model ViT-B-16-quickgelu.)")
@click.option("--num-tokens", type=click.IntRange(1, 4096), help="Tokens K fed to the trunk (e.g. 98 or 196).")
@click.option("--images", type=click.Path(file_okay=False, path_type=Path),
              help="distill: folder with the original images, mirroring the folders of DATA. "
                   "Default: NAME.png/.jpg/... next to each NAME.gsi.")
@click.option("--steps", type=click.IntRange(1), help="Optimizer steps (required for tar shards).")
@click.option("--epochs", type=click.FloatRange(0, min_open=True), default=1.0, show_default=True,
              help="Passes over the data when --steps is not given.")
@click.option("--batch-size", type=click.IntRange(1), default=32, show_default=True,
              help="Images per step (per process under torchrun).")
@click.option("--lr", type=click.FloatRange(0, min_open=True),
              help="Peak learning rate.  [default: 5e-4 distill, 5e-5 contrastive]")
@click.option("--weight-decay", type=click.FloatRange(0), default=0.05, show_default=True)
@click.option("--warmup", type=click.IntRange(0), help="Warm-up steps.  [default: 5% of the steps]")
@click.option("--trainable-blocks", type=click.IntRange(0),
              help="contrastive: leading trunk blocks to train.  [default: the head config's, 2]")
@click.option("--workers", type=click.IntRange(0, 64), default=0, show_default=True,
              help="Data loading worker processes (per process under torchrun).")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--precision", type=click.Choice(["auto", "fp32", "bf16", "fp16"]), default="auto", show_default=True,
              help="auto: mixed precision on CUDA (bf16 if supported), fp32 on CPU.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--checkpoint-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Write resumable checkpoints (last.pt) here.")
@click.option("--checkpoint-every", type=click.IntRange(1), default=500, show_default=True,
              help="Steps between checkpoints (with --checkpoint-dir).")
@click.option("--resume", type=click.Path(dir_okay=False, path_type=Path),
              help="Continue from this checkpoint (same data, options and number of processes; --steps may be "
                   "raised to train on). Under torchrun every process loads it.")
@click.option("--eval-data", multiple=True, metavar="DATA",
              help="Held-out data (repeatable; .gsi files or folders with their original images next to them, a "
                   "CSV path,image, or tar shards of KEY.gsi + KEY.png/.jpg): the head against the teacher on the "
                   "original images, every --eval-every steps and at the end.")
@click.option("--eval-every", type=click.IntRange(1), metavar="N",
              help="Held-out metrics (cosine, retrieval@1, zero-shot agreement on the ImageNet-1k classes with "
                   "the simple templates) every N steps, on stderr and in the --json record; needs --eval-data.")
@click.option("--footprint-steps", type=click.IntRange(0), metavar="N",
              help="Cell-pooling heads (e.g. --head-config gsi-small-cells): before training, N steps regressing "
                   "each (Gaussian, cell) pair's pixel footprint, then the output layer set from the teacher's "
                   "patch embedding.  [default: 8000 for a new cell-pooling head, else 0]")
@click.option("--cache-dir", type=click.Path(file_okay=False), help="Download cache for open_clip weights.")
@click.option("--json", "as_json", is_flag=True,
              help="Print one JSON document on stdout (docs/json.md): one record, the head written.")
@verbosity_options(verbose=False)
@click.option("--list-heads", is_flag=True, expose_value=False, is_eager=True, callback=_list_heads,
              help="List the head configs and exit.")
def train_head(data: tuple[str, ...], output: Path, stage: str, head_config: str, init_head: Path | None,
               model: str | None, pretrained: str | None, num_tokens: int | None, images: Path | None,
               steps: int | None, epochs: float, batch_size: int, lr: float | None, weight_decay: float,
               warmup: int | None, trainable_blocks: int | None, workers: int, device: str, precision: str,
               seed: int, checkpoint_dir: Path | None, checkpoint_every: int, resume: Path | None,
               eval_data: tuple[str, ...], eval_every: int | None, footprint_steps: int | None, cache_dir: str | None,
               as_json: bool) -> None:
    """Train a CLIP head that embeds .gsi files straight from their Gaussians.

    DATA is .gsi files or folders (searched recursively), a CSV, or tar shards.

    \b
    distill       the teacher (the RGB model) sees each original image,
                  the head its .gsi: NAME.png/.jpg next to NAME.gsi, under
                  --images, a CSV with columns path,image, or KEY.gsi +
                  KEY.jpg members of webdataset-style tar shards.
    contrastive   image-caption pairs: NAME.txt next to NAME.gsi, a CSV
                  path,caption, or KEY.gsi + KEY.txt tar members.

    Teacher weights come from open_clip's registry (--pretrained TAG), a file
    (--pretrained /path/to/checkpoint) or nothing (--pretrained none). Offline
    without the weights the command stops and says which file is missing and
    how to provide it. The head is written as safetensors with its config and
    the teacher's name and weights tag in the metadata. With --checkpoint-dir,
    an interrupted run continues exactly with --resume DIR/last.pt.

    --eval-data with --eval-every N measures the head on held-out data every
    N steps and at the end (the teacher embeds each original image once):
    the mean cosine between the head's and the teacher's embeddings,
    retrieval@1 (is the nearest teacher embedding the image's own?) and
    zero-shot agreement (the same ImageNet-1k class chosen from both).

    Under torchrun (WORLD_SIZE > 1) the head trains data-parallel with
    DistributedDataParallel (gloo on CPU, NCCL with one GPU per process):
    each process reads its own tar shards (give at least one per process) or
    its slice of a file set, --batch-size is per process, and the
    contrastive loss uses each process's batch for negatives. Rank 0 alone
    prints progress and writes checkpoints and the head; every process
    resumes from the same --resume file; at the end the processes check that
    their parameters are identical.

    \b
    Examples:
      gsi train-head splats/ --images photos/ -o head-s1.safetensors --epochs 2
      gsi train-head pairs.csv --stage contrastive --init-head head-s1.safetensors \\
          -o head.safetensors --steps 20000 --checkpoint-dir ckpt/
      gsi train-head 'shards/*.tar' --stage contrastive --steps 5000 -o head.safetensors
      gsi train-head splats/ -o tiny.safetensors --head-config gsi-tiny --pretrained none
      gsi train-head 'train-*.tar' --eval-data 'val-*.tar' --eval-every 100 --steps 1000 -o head.safetensors
      torchrun --nproc-per-node 4 -m gscodec_cli.main train-head 'gsi-shards/*.tar' --stage contrastive \\
          --init-head head-s1.safetensors --steps 5000 --checkpoint-dir ckpt/ -o head.safetensors
    """
    import torch

    from gscodec import distributed

    try:
        env = distributed.env_info()
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    if eval_every is not None and not eval_data:
        raise click.UsageError("--eval-every needs --eval-data (the held-out .gsi files and their original images)")
    dev = _device(device)
    if env.world_size > 1:
        if dev == "cuda":  # one GPU per process
            dev = f"cuda:{env.local_rank}"
        if dev.startswith("cuda"):
            torch.cuda.set_device(torch.device(dev))
        try:
            distributed.init_from_env(backend="nccl" if dev.startswith("cuda") else "gloo")
        except (ValueError, RuntimeError) as exc:
            raise click.ClickException(f"cannot join the torchrun process group: {error_text(exc)}") from None
    try:
        _train_head(data, output, stage, head_config, init_head, model, pretrained, num_tokens, images, steps,
                    epochs, batch_size, lr, weight_decay, warmup, trainable_blocks, workers, dev, precision, seed,
                    checkpoint_dir, checkpoint_every, resume, eval_data, eval_every, footprint_steps, cache_dir,
                    as_json)
        distributed.barrier()  # no rank tears the group down while a peer still uses it (gloo aborts that peer)
    finally:
        distributed.shutdown()


def _train_head(data: tuple[str, ...], output: Path, stage: str, head_config: str, init_head: Path | None,
                model: str | None, pretrained: str | None, num_tokens: int | None, images: Path | None,
                steps: int | None, epochs: float, batch_size: int, lr: float | None, weight_decay: float,
                warmup: int | None, trainable_blocks: int | None, workers: int, dev: str, precision: str,
                seed: int, checkpoint_dir: Path | None, checkpoint_every: int, resume: Path | None,
                eval_data: tuple[str, ...], eval_every: int | None, footprint_steps: int | None, cache_dir: str | None,
                as_json: bool) -> None:
    """The body of ``train-head`` in one process (of one or of a torchrun job: only rank 0 prints and writes)."""
    import torch
    from rich.console import Console

    from gscodec import distributed
    from gscodec.clip import create_head, load_head, open_dataset, save_head
    from gscodec.clip.train import FOOTPRINT_IMAGES, TrainConfig, Trainer, trainable_summary

    main = distributed.is_main()
    world = distributed.world_size()
    for option, given in (("--init-head", init_head), ("--resume", resume)):
        if given is not None and same_file(output, given):
            raise click.UsageError(f"-o {printable(output)} is the {option} file; the new head would replace it")
    err = err_console() if main else Console(stderr=True, quiet=True)  # warnings
    info = info_console() if main else err  # progress and the summary
    if init_head is not None and (model or num_tokens or head_config != DEFAULT_HEAD):
        err.print("[yellow]warning:[/] --init-head given: --head-config, --model and --num-tokens are taken from "
                  "the head file")
    if stage == "contrastive" and init_head is None and resume is None:
        err.print("[yellow]warning:[/] contrastive stage without --init-head: the paper found that training the "
                  "stem from scratch this way does not converge; distil first (--stage distill)")
    with _warnings_to_stderr(), _library_errors():
        torch.manual_seed(seed)  # a random-weights teacher must be the same on --resume (and on every rank)
        with info.status("loading the teacher model...", spinner="dots"):
            if init_head is not None:
                head, clip = load_head(init_head, pretrained=pretrained, device=dev, cache_dir=cache_dir)
            else:
                head, clip = create_head(head_config, clip_model=model, pretrained=pretrained,
                                         num_tokens=num_tokens, device=dev, cache_dir=cache_dir)
        transform = clip.preprocess if stage == "distill" else None
        dataset = open_dataset(list(data), need_caption=stage == "contrastive", image_transform=transform,
                               images_dir=images, seed=seed)
        cfg = TrainConfig(stage=stage, steps=steps, epochs=epochs, batch_size=batch_size,
                          lr=lr or _STAGE_LR[stage], weight_decay=weight_decay, warmup_steps=warmup,
                          seed=seed, workers=workers, precision=precision, trainable_blocks=trainable_blocks,
                          calibrate=init_head is None, checkpoint_every=checkpoint_every if checkpoint_dir else 0,
                          checkpoint_dir=str(checkpoint_dir) if checkpoint_dir else None,
                          eval_every=eval_every or 0,
                          footprint_steps=(footprint_steps if footprint_steps is not None else
                                           FOOTPRINT_STEPS if head.cells is not None and init_head is None else 0))
        evaluate = _held_out_evaluator(eval_data, clip, seed, info) if eval_data and main else None
        trainer = Trainer(head, clip, dataset, cfg, device=dev)
        if resume is not None:
            trainer.resume(resume)
        summary = trainable_summary(head, clip)
        n_data = "streamed" if trainer.iterable else f"{len(dataset)} image(s)"  # type: ignore[arg-type]
        procs = f" x {world} processes ({'nccl' if dev.startswith('cuda') else 'gloo'})" if world > 1 else ""
        resumed = ""
        if trainer.step:
            resumed = f", resuming at step {trainer.step}"
            if trainer.resumed_total_steps is not None:
                resumed += f" (the run had {trainer.resumed_total_steps} steps)"
        info.print(f"{stage}: {clip.model_name} (weights: {safe(clip.pretrained)}), head "
                   f"{safe(head.config.name or 'custom')} K={head.num_tokens}, {n_data}, {trainer.total_steps} "
                   f"steps of {batch_size}{procs} on {dev}{resumed}")
        info.print(f"trainable: {summary['trainable']:,} of {summary['model_total']:,} parameters "
                   f"({100 * summary['fraction_of_model']:.1f}% of head + text tower, "
                   f"{100 * summary['fraction_of_head']:.1f}% of the head)")
        if cfg.footprint_steps and head.cells is not None and not trainer.step:
            info.print(f"cell pooling: {cfg.footprint_steps} footprint pretraining steps first (the pairs of up to "
                       f"{FOOTPRINT_IMAGES} training images), then the output layer from the teacher's patch embedding")
        result = _run_with_progress(trainer, info, show=main, evaluate=evaluate)
        if trainer.footprint_error is not None:
            info.print(f"footprints: relative squared error {trainer.footprint_error:.5f}")
        digests = trainer.rank_digests()
        images_seen = sum(distributed.all_gather_object(result["images"]))
        if len(set(digests)) > 1:
            raise click.ClickException(f"the {world} processes ended with different parameters (digests "
                                       f"{', '.join(d[:12] for d in digests)}): the run is not usable")
        if not main:
            return
        meta = {"stage": stage, "steps": str(trainer.step), "final_loss": f"{result['loss']:.6g}",
                "trainable_fraction": f"{summary['fraction_of_model']:.4f}",
                "train_data": ", ".join(data)[:500]}
        if init_head is not None:
            from gscodec.clip import read_head_metadata

            prev = read_head_metadata(init_head)
            meta["previous_stages"] = ",".join(x for x in (prev.get("previous_stages", ""), prev.get("stage", ""))
                                               if x)
        size = save_head(head, output, clip, metadata=meta)
    row = {"output": str(output), "status": "ok", "error": None, "bytes": size, "stage": stage,
           "clip_model": clip.model_name,
           "pretrained": clip.pretrained, "head_config": head.config.name, "num_tokens": head.num_tokens,
           "steps": trainer.step, "final_loss": result["loss"], "mean_loss": result["mean_loss"],
           "seconds": round(result["seconds"], 2),
           "images_per_s": round(images_seen / max(result["seconds"], 1e-9), 2),
           "trainable": summary["trainable"], "trainable_fraction_model": round(summary["fraction_of_model"], 4),
           "trainable_fraction_head": round(summary["fraction_of_head"], 4),
           "world_size": world, "parameter_digests": digests, "footprint_error": trainer.footprint_error,
           "evaluations": [_eval_record(e) for e in trainer.history]}
    if as_json:
        echo_json("train-head", [row], {"heads": 1, "steps": trainer.step, "seconds": row["seconds"],
                                        "world_size": world}, ok=True)
    speed = f", {row['images_per_s']} images/s" if images_seen else ""
    sync = f", {world} processes in sync" if world > 1 else ""
    info.print(f"wrote {safe(str(output))} ({human_bytes(size)}): {trainer.step} steps, final loss "
               f"{result['loss']:.4f}{speed}{sync}")


def _held_out_evaluator(eval_data: tuple[str, ...], clip: Any, seed: int, info: Any) -> Any:
    """``evaluate(head) -> metrics`` over ``--eval-data`` (:func:`gscodec.clip.fidelity.evaluator`), with the
    ImageNet-1k zero-shot classifier of the teacher's text tower (simple templates)."""
    from gscodec.clip import open_dataset
    from gscodec.clip.fidelity import evaluator
    from gscodec.clip.zeroshot import get_templates, imagenet_classnames, text_classifier

    data = open_dataset(list(eval_data), image_transform=clip.preprocess, shuffle_buffer=0, seed=seed)
    with info.status("embedding the ImageNet-1k class prompts for the held-out agreement...", spinner="dots"):
        classifier = text_classifier(clip, imagenet_classnames(), get_templates("simple")).cpu()
    return evaluator(data, classifier, clip=clip)


def _eval_record(result: dict) -> dict:
    """One held-out evaluation of :attr:`Trainer.history` as a --json object (docs/json.md)."""
    return {"step": result["step"], "seconds": round(result["seconds"], 2), "images": int(result["gallery"]),
            "cosine": result["cosine"], "retrieval_at_1": result["retrieval@1"],
            "zero_shot_agreement": result["zero_shot_agreement"]}


def _eval_line(info: dict) -> str:
    """The stderr line of one held-out evaluation (a ``progress`` dict with ``"eval"``)."""
    e = info["eval"]
    return (f"step {info['step']}/{info['total']}: held-out cosine {e['cosine']:.4f}, retrieval@1 "
            f"{100 * e['retrieval@1']:.1f}%, zero-shot agreement {100 * e['zero_shot_agreement']:.1f}% "
            f"({int(e['gallery'])} images)")


def _run_with_progress(trainer: Any, err: Any, show: bool = True, evaluate: Any = None) -> dict:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, \
        TimeRemainingColumn

    if not show:  # the other ranks of a torchrun job: rank 0 shows the progress and evaluates
        try:
            return trainer.run()
        except KeyboardInterrupt:
            raise click.Abort() from None

    columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("loss {task.fields[loss]}"), TextColumn("{task.fields[speed]} img/s"),
               TimeElapsedColumn(), TimeRemainingColumn()]
    with Progress(*columns, console=err, transient=False, disable=not shows_bars(err)) as progress:
        task = progress.add_task(trainer.config.stage, total=trainer.total_steps, completed=trainer.step,
                                 loss="-", speed="-")
        smooth: dict[str, float] = {}

        def update(info: dict) -> None:
            if "eval" in info:
                progress.console.print(_eval_line(info))
                return
            for key in ("loss", "images_per_s"):
                smooth[key] = info[key] if key not in smooth else 0.9 * smooth[key] + 0.1 * info[key]
            progress.update(task, completed=info["step"], loss=f"{smooth['loss']:.4f}",
                            speed=f"{smooth['images_per_s']:.1f}")

        try:
            return trainer.run(progress=update, evaluate=evaluate)
        except KeyboardInterrupt:
            if trainer.world_size > 1:  # the other processes may be gone: no collective checkpoint now
                if trainer.config.checkpoint_dir:
                    err.print(f"interrupted at step {trainer.step}; resume from the last periodic checkpoint with "
                              f"--resume {safe(str(Path(trainer.config.checkpoint_dir) / 'last.pt'))}")
                raise click.Abort() from None
            if trainer.config.checkpoint_dir:
                trainer.save_checkpoint(Path(trainer.config.checkpoint_dir) / "last.pt")
                err.print(f"interrupted at step {trainer.step}; resume with --resume "
                          f"{safe(str(Path(trainer.config.checkpoint_dir) / 'last.pt'))}")
            raise click.Abort() from None


# --- classify ---------------------------------------------------------------------------------------------


@click.command("classify", context_settings=CONTEXT)
@click.argument("files", nargs=-1, required=True, type=click.Path(readable=False, path_type=Path))
@click.option("--head", "head_path", type=click.Path(dir_okay=False, readable=False, path_type=Path),
              metavar="HEAD.safetensors",
              help="Head file from gsi train-head.")
@click.option("--labels", help="Comma-separated labels, e.g. \"cat,dog,car\".")
@click.option("--labels-file", type=click.Path(dir_okay=False, readable=False, path_type=Path),
              help="Labels, one per line.  [default without --labels: the 1000 ImageNet-1k classes]")
@click.option("--templates", default="simple", show_default=True,
              help="Prompt template set: openai (80 prompts), simple (7), short (1), or a .json/.txt file "
                   "of templates with {c}.")
@click.option("--top-k", type=click.IntRange(1), default=5, show_default=True)
@click.option("--json", "as_json", is_flag=True,
              help="Print one JSON document on stdout (docs/json.md) instead of a table: a record per file.")
@click.option("--rgb", is_flag=True,
              help="Run the RGB model on the decoded pixels instead of the head (for comparison).")
@click.option("--model", help="open_clip model for --rgb without --head.  [default: ViT-B-16]")
@click.option("--pretrained", help="Teacher weights (tag, checkpoint file or none), overriding the head file's.")
@click.option("--batch-size", type=click.IntRange(1), default=32, show_default=True)
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--cache-dir", type=click.Path(file_okay=False), help="Download cache for open_clip weights.")
@verbosity_options(verbose=False)
def classify(files: tuple[Path, ...], head_path: Path | None, labels: str | None, labels_file: Path | None,
             templates: str, top_k: int, as_json: bool, rgb: bool, model: str | None, pretrained: str | None,
             batch_size: int, device: str, cache_dir: str | None) -> None:
    """Zero-shot classify .gsi FILES (- for standard input) with a CLIP head, without rendering them.

    Each label becomes prompts from the template set ("a photo of a {c}.",
    ...); their mean text embedding is compared with each file's embedding.
    Prints the top-k labels with their softmax probabilities and cosine
    similarities (a table; one tab-separated line per file when stdout is
    not a terminal). Files that cannot be read are reported on stderr and
    skipped; the exit status is then 1. --rgb renders the files and runs the
    head's RGB model (or --model) on the pixels instead.

    \b
    Examples:
      gsi classify cat.gsi --head head.safetensors --labels "cat,dog,car"
      gsi classify splats/*.gsi --head head.safetensors --top-k 3 --json
      gsi classify splats/*.gsi --head head.safetensors --labels-file labels.txt --templates openai
      gsi classify cat.gsi --rgb --model ViT-B-16 --pretrained openai --labels "cat,dog"
    """
    from gscodec.clip import embed_gaussians, embed_rendered, load_clip, load_head, predict, text_classifier
    from gscodec.clip.zeroshot import get_templates, imagenet_classnames, logit_scale_of, parse_labels, \
        read_labels_file
    from gscodec.format import GsiError, read
    from gscodec.render import RenderBudgetError, check_render_budget

    if labels is not None and labels_file:
        raise click.UsageError("give either --labels or --labels-file, not both")
    if labels is not None and not labels.replace(",", "").strip():
        raise click.UsageError("--labels has no labels; give comma-separated labels such as \"cat,dog,car\" "
                               "(without --labels the 1000 ImageNet-1k classes are used)")
    if head_path is None and not rgb:
        raise click.UsageError("give --head HEAD.safetensors (a head from gsi train-head), or --rgb to run an RGB "
                               "CLIP model on the decoded pixels")
    if model and head_path is not None:
        raise click.UsageError("--model applies to --rgb without --head (a head file names its own model)")
    err = err_console()
    dev = _device(device)
    with _library_errors():
        classnames = parse_labels(labels) if labels is not None else read_labels_file(labels_file) if labels_file \
            else imagenet_classnames()
        prompts = get_templates(templates)
    info = info_console()
    gaussians, names, failed = [], [], []
    failures: dict[str, str] = {}
    for path in files:
        try:
            g = read(binary_stdin() if str(path) == STDIO else path).gaussians
            if rgb:
                check_render_budget(g)  # a decompression bomb is reported and skipped, not rendered for hours
            gaussians.append(g)
            names.append(str(path))
        except (GsiError, OSError, RenderBudgetError, MemoryError) as exc:
            failed.append(path)
            failures[str(path)] = error_text(exc)
            err.print(f"[red]error:[/] {safe(str(path))}: {safe(error_text(exc))}")
    mode = "rgb" if rgb else "head"
    rows: list[dict] = []
    model_name = None
    if gaussians:
        with _warnings_to_stderr(), _library_errors():
            with info.status("loading the model...", spinner="dots"):
                if head_path is not None:
                    head, clip = load_head(head_path, pretrained=pretrained, device=dev, cache_dir=cache_dir)
                else:
                    name = model or "ViT-B-16"
                    weights = pretrained or _default_tag(name)
                    head, clip = None, load_clip(name, weights, device=dev, cache_dir=cache_dir)
            with info.status(f"embedding {len(classnames)} label(s) x {len(prompts)} prompt(s)...", spinner="dots"):
                classifier = text_classifier(clip, classnames, prompts)
            with info.status(f"embedding {len(gaussians)} file(s)...", spinner="dots"):
                if rgb:
                    emb = embed_rendered(clip, gaussians, batch_size)
                else:
                    emb = embed_gaussians(head, gaussians, batch_size)
            results = predict(emb, classifier.to(emb.device), classnames, top_k, logit_scale_of(clip))
        model_name = clip.model_name
        rows = [{"file": n, "status": "ok", "error": None, "mode": mode, "predictions": [
            {"label": p.label, "probability": round(p.probability, 6), "similarity": round(p.similarity, 6)}
            for p in preds]} for n, preds in zip(names, results)]
    if as_json:
        everything = rows + [{"file": f, "status": "failed", "error": e, "mode": mode, "predictions": []}
                             for f, e in failures.items()]
        order = {str(f): i for i, f in enumerate(files)}
        everything.sort(key=lambda r: order.get(r["file"], len(order)))
        echo_json("classify", everything, {"files": len(everything), "ok": len(rows), "failed": len(failed),
                                           "model": model_name, "labels": len(classnames)}, ok=not failed)
    elif rows and stdout_is_terminal():
        out_console().print(_classify_table(rows, model_name or "", mode))
    elif rows:
        echo_tsv(["file", "label", "probability", "similarity", "next"],
                 [[r["file"], r["predictions"][0]["label"], r["predictions"][0]["probability"],
                   r["predictions"][0]["similarity"],
                   ", ".join(f"{p['label']} {p['probability']}" for p in r["predictions"][1:])] for r in rows])
    if failed:
        raise click.ClickException(f"{len(failed)} of {len(files)} file(s) could not be read")


def _default_tag(model: str) -> str:
    import open_clip

    from gscodec.clip import register_model_configs

    register_model_configs()
    tags = open_clip.list_pretrained_tags_by_model(model)
    if not tags:
        raise click.UsageError(f"open_clip has no pretrained tags for {model!r}; give --pretrained FILE or none")
    return "openai" if "openai" in tags else tags[0]


def _classify_table(rows: list[dict], model_name: str, mode: str):
    from rich.table import Table

    table = Table(title=f"{'RGB model on decoded pixels' if mode == 'rgb' else 'splat head'} ({model_name})")
    table.add_column("File", overflow="fold")
    table.add_column("Label", overflow="fold")
    table.add_column("Prob", justify="right", no_wrap=True)
    table.add_column("Cos", justify="right", no_wrap=True)
    table.add_column("Next", overflow="fold")
    for r in rows:
        top, rest = r["predictions"][0], r["predictions"][1:]
        table.add_row(safe(os.path.basename(r["file"]) if len(r["file"]) > 60 else r["file"]), safe(top["label"]),
                      f"{100 * top['probability']:.1f}%", f"{top['similarity']:.3f}",
                      safe(", ".join(f"{p['label']} {100 * p['probability']:.1f}%" for p in rest)) or "-")
    return table


__all__ = ["classify", "train_head"]
