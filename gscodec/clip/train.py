"""Training the head: stage 1 distillation, stage 2 contrastive; exact resume from checkpoints.

Stage 1 (``"distill"``): the RGB model (teacher) embeds the original image,
the head embeds its `.gsi`; the loss is the squared distance between the
L2-normalized embeddings (``sum_e (a_e - b_e)^2 = 2 - 2 cos``, averaged over
the batch). Only the stem and the resampler train.

Stage 2 (``"contrastive"``): image-caption pairs, the text tower frozen; the
symmetric InfoNCE loss with the model's (frozen) ``logit_scale`` (the sigmoid
loss for SigLIP-style models with a ``logit_bias``). The stem, the resampler,
the first ``trainable_blocks`` trunk blocks, the final norm and the projection
train.

Mixed precision (autocast; bf16, or fp16 with a gradient scaler) is used only
on CUDA. Checkpoints hold the head, optimizer, scheduler, step, data position
and RNG states, so a resumed run continues exactly as an uninterrupted one.

Distributed (data parallel): when a ``torch.distributed`` group of more than
one process exists (``torchrun``; see :mod:`gscodec.distributed`), the head is
wrapped in ``DistributedDataParallel``, each process reads its own part of the
data (tar shards split by rank, map-style datasets by a per-rank slice of each
epoch's permutation), ``batch_size`` is per process, and the contrastive loss
takes its negatives from every process's batch (:func:`contrastive_loss`). Checkpoints are written by
rank 0 with every rank's data position and RNG states, and every rank resumes
from the same file.
"""

from __future__ import annotations

import math
import os
import random
import time
from dataclasses import asdict, dataclass, fields
from functools import partial
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, IterableDataset, Sampler

from .. import distributed
from ..atomic import atomic_path
from ..processes import loader_worker_init
from .cells import CHUNK_PAIRS, CellPooling, cell_pairs, pair_footprints
from .config import ClipHeadError
from .data import DataError, SplatBatch, collate_splats
from .model import GaussianCLIPHead
from .teacher import ClipBundle

CHECKPOINT_FORMAT = "gscodec-clip-train"
STAGES = ("distill", "contrastive")


class CheckpointError(ClipHeadError):
    """A training checkpoint cannot be read or does not match the run it should resume."""


@dataclass
class TrainConfig:
    """Settings of one training stage.

    Attributes:
        stage: ``"distill"`` or ``"contrastive"``.
        steps: optimizer steps; ``None`` derives them from ``epochs`` (map-style data only).
        epochs: passes over the data when ``steps`` is None.
        batch_size: images per step.
        lr, weight_decay, betas: AdamW (no weight decay on biases, norms, embeddings).
        warmup_steps: linear warm-up (None: 5% of the steps), then cosine decay to ``min_lr_ratio * lr``.
        grad_clip: max gradient norm (0 disables).
        seed: seeds the data order and all RNGs.
        workers: DataLoader worker processes.
        precision: ``"auto"`` (bf16 autocast on CUDA if supported, else fp16; fp32 on CPU),
            ``"fp32"``, ``"bf16"`` or ``"fp16"`` (the last two only on CUDA).
        trainable_blocks: contrastive stage: leading trunk blocks to train (None: the head config's).
        calibrate: set the stem's feature statistics from the first batch of a fresh run.
        cache_targets: keep teacher (or text) embeddings per dataset index (map-style data).
        checkpoint_every: save a checkpoint every this many steps (0: only at the end when a directory is set).
        checkpoint_dir: folder for ``last.pt``.
        contrast_weight: distillation: weight of an added InfoNCE term that makes each head embedding closer
            to its own teacher embedding than to the batch's others (what retrieval@1 measures); 0: off.
        contrast_temperature: its temperature (cosine units).
        token_weight: distillation: weight of a token-level loss, the squared error between the resampled
            tokens (plus slot positions) and the teacher's patch embedding of the same pixels (its first,
            linear layer, resampled to the slot grid; plus positions), relative to the targets' mean square.
            Needs the teacher inputs (``images``) in the batch.
        embed_weight: distillation: weight of the embedding loss (``2 - 2 cos``); 0 with ``contrast_weight``
            0 skips the trunk altogether (token-level training only: several times cheaper).
        gaussian_dropout: fraction of real Gaussians masked out at random in each training batch (regularizer).
        eval_every: call the ``evaluate`` function given to :meth:`Trainer.run` every this many steps (and at
            the end); 0: only at the end when one is given.
        select_metric: with ``evaluate``, restore at the end the head of the evaluation where this metric (a
            key of its dict, higher is better) was best; ``""``: keep the last head.
        footprint_steps: cell-pooling heads: before the first step of a fresh run, this many steps of
            :func:`pretrain_footprints` on the Gaussians of the first batch and of up to
            ``FOOTPRINT_IMAGES`` more training images, then the output layer set from the teacher's patch
            embedding (:meth:`~gscodec.clip.cells.CellPooling.init_from_patch_embedding`); 0: neither.

    Under ``torchrun`` every process uses the same config; ``batch_size`` and
    ``workers`` are per process.
    """

    stage: str = "distill"
    steps: int | None = None
    epochs: float = 1.0
    batch_size: int = 32
    lr: float = 5e-4
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.98)
    warmup_steps: int | None = None
    min_lr_ratio: float = 0.05
    grad_clip: float = 1.0
    seed: int = 0
    workers: int = 0
    precision: str = "auto"
    trainable_blocks: int | None = None
    calibrate: bool = True
    cache_targets: bool = True
    checkpoint_every: int = 0
    checkpoint_dir: str | None = None
    contrast_weight: float = 0.0
    contrast_temperature: float = 0.05
    token_weight: float = 0.0
    embed_weight: float = 1.0
    gaussian_dropout: float = 0.0
    eval_every: int = 0
    select_metric: str = ""
    footprint_steps: int = 0

    def __post_init__(self) -> None:
        if self.stage not in STAGES:
            raise ValueError(f"stage must be one of {', '.join(STAGES)}, got {self.stage!r}")
        if self.steps is not None and self.steps < 1:
            raise ValueError(f"steps must be positive, got {self.steps}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {self.batch_size}")
        if self.precision not in ("auto", "fp32", "bf16", "fp16"):
            raise ValueError(f"precision must be auto, fp32, bf16 or fp16, got {self.precision!r}")
        if not 0.0 <= self.gaussian_dropout < 1.0:
            raise ValueError(f"gaussian_dropout must be in [0, 1), got {self.gaussian_dropout}")
        if self.token_weight < 0 or self.embed_weight < 0 or self.contrast_weight < 0:
            raise ValueError("loss weights must be non-negative")
        if self.stage == "distill" and self.token_weight == self.embed_weight == self.contrast_weight == 0:
            raise ValueError("every distillation loss weight is 0")
        if self.contrast_temperature <= 0:
            raise ValueError(f"contrast_temperature must be positive, got {self.contrast_temperature}")
        if self.eval_every < 0:
            raise ValueError(f"eval_every must be non-negative, got {self.eval_every}")
        if self.footprint_steps < 0:
            raise ValueError(f"footprint_steps must be non-negative, got {self.footprint_steps}")
        self.betas = tuple(self.betas)  # type: ignore[assignment]


FOOTPRINT_IMAGES = 1024
"""Training images whose (Gaussian, cell) pairs :func:`pretrain_footprints` regresses on (map-style data)."""


def pretrain_footprints(cells: CellPooling, params: torch.Tensor, mask: torch.Tensor, sizes: torch.Tensor,
                        steps: int, lr: float = 2e-3, batch_pairs: int = 4096, seed: int = 0,
                        log: Callable[[str], None] | None = None) -> float:
    """Regress the cell pooling's pair MLP on the exact footprints of the pairs of a set of images.

    Adam with a cosine decay on the mean squared error between the MLP's
    outputs and :func:`~gscodec.clip.cells.pair_footprints` for random
    batches of ``batch_pairs`` pairs (no teacher: geometry only).

    Args:
        params: ``(B, N, 8)``; mask: ``(B, N)``; sizes: ``(B, 2)``: the images' Gaussians.

    Returns:
        The relative squared error over all pairs at the end (``sum |a - f|^2 / sum |f|^2``).
    """
    g, cell, offset = cell_pairs(params, mask, sizes, cells.slots)
    if g.numel() == 0:
        return float("nan")
    dtype = cells.out.weight.dtype
    feats = cells.features(cells.gaussian_terms(params, sizes)[g], offset).to(dtype)
    target = pair_footprints(params, sizes, g, offset, cells.slots, cells.footprint).to(dtype)
    opt = torch.optim.Adam(cells.mlp.parameters(), lr=lr)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * step / steps))
        idx = torch.randint(0, g.numel(), (min(batch_pairs, g.numel()),), generator=gen).to(feats.device)
        loss = (cells.mlp(feats[idx]) - target[idx]).pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if log is not None and (step + 1) % max(1, steps // 5) == 0:
            log(f"footprints: step {step + 1}/{steps}, mse {float(loss):.3g}")
    with torch.no_grad():
        err = sum(float((cells.mlp(feats[i:i + CHUNK_PAIRS]) - target[i:i + CHUNK_PAIRS]).pow(2).sum())
                  for i in range(0, g.numel(), CHUNK_PAIRS))
    return err / max(float(target.pow(2).sum()), 1e-12)


class EpochSampler(Sampler[int]):
    """A seeded permutation per epoch, starting at ``start`` (to resume mid-epoch).

    With ``world_size > 1`` process ``rank`` takes every ``world_size``-th index
    of the permutation, from its ``rank``-th: the processes see disjoint parts.
    """

    def __init__(self, n: int, seed: int, epoch: int, start: int = 0, rank: int = 0, world_size: int = 1) -> None:
        self.n, self.seed, self.epoch, self.start = n, seed, epoch, start
        self.rank, self.world_size = rank, world_size

    def __iter__(self) -> Iterator[int]:
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return iter(torch.randperm(self.n, generator=gen)[self.rank::self.world_size][self.start:].tolist())

    def __len__(self) -> int:
        return max(0, len(range(self.rank, self.n, self.world_size)) - self.start)


def contrastive_loss(images: torch.Tensor, texts: torch.Tensor, scale: torch.Tensor,
                     bias: torch.Tensor | None = None) -> torch.Tensor:
    """Image-text contrastive loss of this process's ``(n, E)`` normalized pairs, negatives from every process.

    Without ``bias``: symmetric InfoNCE (CLIP), each local image against every
    process's texts and each local text against every process's images; with
    a ``bias``: the pairwise sigmoid loss (SigLIP) of the local images against
    every text. Averaged over the local pairs, so the mean over equal-sized
    processes equals the loss of the whole global batch in one process.
    """
    all_texts, first = distributed.gather_rows(texts)
    target = torch.arange(len(images), device=images.device) + first
    logits = scale * images @ all_texts.T
    if bias is not None:
        labels = -torch.ones_like(logits)
        labels[torch.arange(len(images)), target] = 1
        return -F.logsigmoid(labels * (logits + bias)).sum() / len(images)
    all_images, _ = distributed.gather_rows(images)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(scale * texts @ all_images.T, target))


def trainable_summary(head: GaussianCLIPHead, clip: ClipBundle) -> dict[str, Any]:
    """Trainable parameter counts and fractions.

    ``fraction_of_model`` relates the trainable parameters to the whole
    compressed-domain CLIP model (head + text tower), as the paper's 9.7-13.8%;
    ``fraction_of_head`` to the image side only.
    """
    counts = head.parameter_counts()
    text = sum(p.numel() for n, p in clip.model.named_parameters() if not n.startswith("visual."))
    model_total = counts["total"] + text
    return {**counts, "text": text, "model_total": model_total,
            "fraction_of_head": counts["trainable"] / max(1, counts["total"]),
            "fraction_of_model": counts["trainable"] / max(1, model_total)}


def _lr_lambda(total: int, warmup: int, floor: float) -> Callable[[int], float]:
    def f(step: int) -> float:
        if warmup > 0 and step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))
    return f


class Trainer:
    """One training stage of a head.

    Usage::

        trainer = Trainer(head, clip, dataset, TrainConfig(stage="distill", steps=1000))
        trainer.run(progress=callback)          # or trainer.run(until=500); trainer.save_checkpoint(p)
        Trainer(head2, clip, dataset, cfg).resume(p).run()   # continues exactly

    ``progress`` is called after every step with a dict: ``step``, ``total``,
    ``loss``, ``lr``, ``images_per_s``, ``epoch``, ``seconds``.
    """

    def __init__(self, head: GaussianCLIPHead, clip: ClipBundle, dataset: Dataset, config: TrainConfig,
                 device: str | torch.device = "auto") -> None:
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        self.config = config
        self.head = head.to(self.device)
        self.clip = clip
        clip.model.to(self.device).eval()
        clip.model.requires_grad_(False)
        self.dataset = dataset
        self.iterable = isinstance(dataset, IterableDataset)
        self.rank, self.world_size = distributed.rank(), distributed.world_size()
        if self.iterable and config.steps is None:
            raise DataError("streamed (tar) data has no length: give the number of steps")
        if not self.iterable and len(dataset) == 0:  # type: ignore[arg-type]
            raise DataError("the training set is empty")
        if self.world_size > 1:
            if config.token_weight > 0:
                raise ValueError("the token-level loss runs in one process (it calls the head directly)")
            self._split_data()
        per_rank = None if self.iterable else math.ceil(len(dataset) / self.world_size)  # type: ignore[arg-type]
        self.steps_per_epoch = None if per_rank is None else math.ceil(per_rank / config.batch_size)
        self.total_steps = config.steps or max(1, math.ceil(config.epochs * self.steps_per_epoch))  # type: ignore
        self.warmup_steps = (config.warmup_steps if config.warmup_steps is not None
                             else int(0.05 * self.total_steps))
        torch.manual_seed(config.seed)
        random.seed(config.seed)
        head.set_trainable(config.stage, config.trainable_blocks)
        self.model: torch.nn.Module = head
        if self.world_size > 1:  # after set_trainable: DDP reduces the gradients of the trainable parameters
            self.model = DistributedDataParallel(head, device_ids=[self.device] if self.device.type == "cuda" else None)
        decay, no_decay = [], []
        for name, p in head.named_parameters():
            if p.requires_grad:
                (no_decay if p.ndim < 2 or "latents" in name or "embedding" in name else decay).append(p)
        self.optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=config.lr, betas=config.betas)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, _lr_lambda(self.total_steps, self.warmup_steps, config.min_lr_ratio))
        self.amp_dtype = self._amp_dtype()
        self.scaler = torch.amp.GradScaler("cuda") if self.amp_dtype == torch.float16 else None
        self.step = 0
        self.epoch = 0
        self.batch_in_epoch = 0
        self.calibrated = not config.calibrate
        self.footprints_done = False
        self.footprint_error: float | None = None
        self._cache: dict[int, torch.Tensor] = {}
        self._batches: Iterator[SplatBatch | None] | None = None
        self.last_loss = float("nan")
        self.resumed_total_steps: int | None = None
        self.history: list[dict[str, Any]] = []
        self.best: tuple[float, int, dict[str, torch.Tensor]] | None = None

    def _amp_dtype(self) -> torch.dtype | None:
        p = self.config.precision
        if self.device.type != "cuda":
            if p in ("bf16", "fp16"):
                raise ValueError(f"precision {p} needs a CUDA device; use fp32 or auto on {self.device.type}")
            return None
        if p == "fp32":
            return None
        if p == "bf16" or (p == "auto" and torch.cuda.is_bf16_supported()):
            return torch.bfloat16
        return torch.float16

    # --- data ---------------------------------------------------------------------------------------------

    def _split_data(self) -> None:
        """Give this process its part of the data (tar shards by rank); fail when a process would get none."""
        if self.iterable:
            shards = getattr(self.dataset, "shards", None)
            if shards is not None and len(shards) < self.world_size:
                raise DataError(f"{len(shards)} tar shard(s) for {self.world_size} processes: every process reads "
                                "whole shards, so give at least one shard per process")
            if not hasattr(self.dataset, "set_rank"):
                raise DataError(f"{type(self.dataset).__name__} cannot be split among processes (no set_rank)")
            self.dataset.set_rank(self.rank, self.world_size)  # type: ignore[attr-defined]
        elif len(self.dataset) < self.world_size:  # type: ignore[arg-type]
            raise DataError(f"{len(self.dataset)} image(s) for {self.world_size} processes: "  # type: ignore
                            "give at least one per process")

    def _loader(self) -> DataLoader:
        cfg = self.config
        common = dict(batch_size=cfg.batch_size, collate_fn=collate_splats, num_workers=cfg.workers,
                      pin_memory=self.device.type == "cuda",
                      worker_init_fn=partial(loader_worker_init, os.getpid()))  # workers end with this process
        if self.iterable:
            if hasattr(self.dataset, "set_epoch"):
                self.dataset.set_epoch(self.epoch)  # type: ignore[attr-defined]
            return DataLoader(self.dataset, **common)
        sampler = EpochSampler(len(self.dataset), cfg.seed, self.epoch,  # type: ignore[arg-type]
                               self.batch_in_epoch * cfg.batch_size, self.rank, self.world_size)
        return DataLoader(self.dataset, sampler=sampler, **common)

    def _batch_stream(self) -> Iterator[SplatBatch | None]:
        while True:
            skip = self.batch_in_epoch if self.iterable else 0
            produced = False
            for batch in self._loader():
                produced = True
                if skip:
                    skip -= 1
                    continue
                self.batch_in_epoch += 1
                yield batch
            if not produced and self.batch_in_epoch == 0:
                raise DataError("the training data yielded no samples")
            self.epoch += 1
            self.batch_in_epoch = 0

    def _pretrain_footprints(self, batch: SplatBatch) -> None:
        """:func:`pretrain_footprints` on ``batch`` and up to :data:`FOOTPRINT_IMAGES` more training images
        (a seeded choice), then the output layer from the teacher's patch embedding (when the cells are
        its patches). Every rank computes the same (rank 0's data is broadcast)."""
        cells = self.head.cells
        samples = [{"params": p[m], "size": s, "key": k}
                   for p, m, s, k in zip(batch.params, batch.mask, batch.sizes, batch.keys)]
        if not self.iterable:
            n = len(self.dataset)  # type: ignore[arg-type]
            gen = torch.Generator().manual_seed(self.config.seed + 9173)
            for i in torch.randperm(n, generator=gen)[:FOOTPRINT_IMAGES].tolist():
                item = self.dataset[i]
                if item is not None:
                    samples.append({"params": item["params"], "size": item["size"], "key": str(i)})
        pool = collate_splats(samples)
        if self.rank == 0:
            self.footprint_error = pretrain_footprints(cells, pool.params.to(self.device), pool.mask.to(self.device),
                                                       pool.sizes.to(self.device), self.config.footprint_steps,
                                                       seed=self.config.seed)
        distributed.broadcast_tensors(list(cells.mlp.parameters()))
        visual = self.clip.model.visual
        conv = getattr(visual, "conv1", None)
        if conv is not None and tuple(conv.weight.shape[-2:]) == cells.footprint and \
                tuple(visual.grid_size) == cells.slots:
            cfg = visual.preprocess_cfg
            cells.init_from_patch_embedding(conv.weight, cfg["mean"], cfg["std"])
        self.footprints_done = True

    # --- losses -------------------------------------------------------------------------------------------

    def _cached(self, batch: SplatBatch, compute: Callable[[list[int]], torch.Tensor]) -> torch.Tensor:
        idx = batch.indices.tolist() if batch.indices is not None else [-1] * len(batch)
        if not self.config.cache_targets or min(idx) < 0:
            return compute(list(range(len(batch))))
        todo = [i for i, k in enumerate(idx) if k not in self._cache]
        if todo:
            for i, row in zip(todo, compute(todo)):
                self._cache[idx[i]] = row.detach().to("cpu", torch.float32)
        return torch.stack([self._cache[k] for k in idx]).to(self.device)

    def _teacher_targets(self, batch: SplatBatch) -> torch.Tensor:
        if batch.targets is not None:  # cached by the distillation set: the teacher does not run
            return batch.targets.to(self.device, torch.float32)
        if batch.images is None:
            raise DataError("distillation needs the original images (teacher inputs) with every .gsi")

        def compute(rows: list[int]) -> torch.Tensor:
            with torch.no_grad(), self._autocast():
                return self.clip.model.encode_image(batch.images[rows].to(self.device), normalize=True).float()

        return self._cached(batch, compute)

    @torch.no_grad()
    def _token_targets(self, batch: SplatBatch) -> torch.Tensor:
        """``(B, K, width)``: the teacher's patch embedding of the batch's images on the slot grid, plus the
        slot positions (what :meth:`GaussianCLIPHead.tokens` should produce)."""
        if batch.images is None:
            raise DataError("token-level distillation needs the teacher inputs (images) in every batch")
        visual = self.clip.model.visual
        grid = visual.conv1(batch.images.to(self.device, visual.conv1.weight.dtype)).float()  # (B, width, gh, gw)
        rows, cols = self.head.slots
        if tuple(grid.shape[-2:]) != (rows, cols):
            grid = F.interpolate(grid, size=(rows, cols), mode="area")
        tokens = grid.flatten(2).transpose(1, 2)
        if self.head.config.resampler.add_pos_embed:
            tokens = tokens + self.head.slot_pos_embed().float()
        return tokens

    def _text_targets(self, batch: SplatBatch) -> torch.Tensor:
        if batch.captions is None:
            raise DataError("the contrastive stage needs a caption with every .gsi")

        def compute(rows: list[int]) -> torch.Tensor:
            tokens = self.clip.tokenizer([batch.captions[i] for i in rows]).to(self.device)  # type: ignore[index]
            with torch.no_grad(), self._autocast():
                return self.clip.model.encode_text(tokens, normalize=True).float()

        return self._cached(batch, compute)

    def _autocast(self):
        if self.amp_dtype is None:
            return torch.autocast(self.device.type, enabled=False)
        return torch.autocast("cuda", dtype=self.amp_dtype)

    def loss(self, batch: SplatBatch) -> torch.Tensor:
        """The stage's loss for one batch (on the trainer's device)."""
        b = batch.to(self.device, non_blocking=True)
        mask = b.mask
        p = self.config.gaussian_dropout
        if p > 0 and self.model.training:
            keep = torch.rand(mask.shape, device=mask.device) >= p
            keep[:, 0] = True  # at least one Gaussian per image
            mask = mask & keep
        cfg = self.config
        if cfg.stage == "distill":
            need_emb = cfg.embed_weight > 0 or cfg.contrast_weight > 0
            with self._autocast():
                if self.world_size > 1:  # through DistributedDataParallel (no token loss there)
                    tokens, emb = None, F.normalize(self.model(b.params, mask, b.sizes).float(), dim=-1)
                else:
                    tokens = self.head.tokens(b.params, mask, b.sizes)
                    emb = F.normalize(self.head.encode_tokens(tokens).float(), dim=-1) if need_emb else None
            loss = torch.zeros((), device=self.device)
            if cfg.token_weight > 0 and tokens is not None:
                target_tokens = self._token_targets(b)
                err = (tokens.float() - target_tokens).pow(2).sum(-1).mean()
                loss = loss + cfg.token_weight * err / target_tokens.pow(2).sum(-1).mean().clamp_min(1e-12)
            if emb is not None:
                target = self._teacher_targets(batch)
                if cfg.embed_weight > 0:
                    loss = loss + cfg.embed_weight * (emb - target).pow(2).sum(-1).mean()
                if cfg.contrast_weight > 0 and len(emb) > 1:
                    logits = emb @ target.T / cfg.contrast_temperature
                    loss = loss + cfg.contrast_weight * F.cross_entropy(
                        logits, torch.arange(len(emb), device=emb.device))
            return loss
        with self._autocast():
            emb = self.model(b.params, mask, b.sizes)
        emb = F.normalize(emb.float(), dim=-1)
        text = self._text_targets(batch)
        model = self.clip.model
        bias = getattr(model, "logit_bias", None)
        return contrastive_loss(emb, text, model.logit_scale.exp().float(), None if bias is None else bias.float())

    # --- loop ---------------------------------------------------------------------------------------------

    def train_step(self) -> float:
        """Fetch the next batch and take one optimizer step; returns the loss."""
        if self._batches is None:
            self._batches = self._batch_stream()
        batch = next(self._batches)
        while batch is None:  # every file of the batch was unreadable
            batch = next(self._batches)
        if not self.calibrated:
            self.head.calibrate(batch.params.to(self.device), batch.mask.to(self.device), batch.sizes.to(self.device))
            distributed.broadcast_tensors(self.head.calibration_buffers())  # every rank takes rank 0's statistics
            self.calibrated = True
        if self.config.footprint_steps and self.head.cells is not None and self.step == 0 and \
                not self.footprints_done:
            self._pretrain_footprints(batch)
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.loss(batch)
        if not torch.isfinite(loss):
            raise ClipHeadError(f"the loss became {float(loss)} at step {self.step + 1}; lower the learning rate")
        params = [p for p in self.head.parameters() if p.requires_grad]
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self.optimizer)
            if self.config.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(params, self.config.grad_clip)
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            loss.backward()
            if self.config.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(params, self.config.grad_clip)
            self.optimizer.step()
        self.scheduler.step()
        self.step += 1
        self.last_loss = float(loss.detach())
        self._last_batch_size = len(batch)
        return self.last_loss

    def _evaluate(self, evaluate: Callable[[GaussianCLIPHead], dict[str, float]], start: float) -> dict[str, Any]:
        self.head.eval()
        with torch.no_grad():
            result = {"step": self.step, "seconds": time.perf_counter() - start, **evaluate(self.head)}
        self.history.append(result)
        metric = self.config.select_metric
        if metric:
            if metric not in result:
                raise ClipHeadError(f"select_metric {metric!r} is not among the evaluation's keys "
                                    f"{sorted(result)}")
            if self.best is None or result[metric] > self.best[0]:
                self.best = (float(result[metric]), self.step,
                             {k: v.detach().clone() for k, v in self.head.state_dict().items()})
        return result

    def run(self, until: int | None = None, progress: Callable[[dict[str, Any]], None] | None = None,
            evaluate: Callable[[GaussianCLIPHead], dict[str, float]] | None = None) -> dict:
        """Train up to step ``until`` (default: the total), saving checkpoints as configured.

        ``evaluate(head) -> {metric: value}`` (held-out metrics) runs every
        ``eval_every`` steps and after the last; each result (with ``step`` and
        ``seconds``) goes to :attr:`history` and to ``progress`` as ``"eval"``.
        With ``select_metric`` the best evaluated head is restored at the end.

        Returns a summary: ``steps``, ``loss`` (last), ``mean_loss`` (of this
        call), ``seconds``, ``images``, and with ``evaluate`` ``eval`` (the
        last result) and ``best_step``.
        """
        end = min(self.total_steps, until if until is not None else self.total_steps)
        start = time.perf_counter()
        images, losses = 0, []
        cfg = self.config
        last_eval = None
        while self.step < end:
            t0 = time.perf_counter()
            loss = self.train_step()
            dt = time.perf_counter() - t0
            images += self._last_batch_size
            losses.append(loss)
            if progress is not None:
                progress({"step": self.step, "total": self.total_steps, "loss": loss,
                          "lr": self.scheduler.get_last_lr()[0], "images_per_s": self._last_batch_size / max(dt, 1e-9),
                          "epoch": self.epoch, "seconds": time.perf_counter() - start})
            if evaluate is not None and cfg.eval_every and self.step % cfg.eval_every == 0 and self.step < end:
                last_eval = self._evaluate(evaluate, start)
                if progress is not None:
                    progress({"step": self.step, "total": self.total_steps, "eval": last_eval})
            if cfg.checkpoint_dir and cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0:
                self.save_checkpoint(Path(cfg.checkpoint_dir) / "last.pt")
        train_seconds = time.perf_counter() - start
        out: dict[str, Any] = {}
        if cfg.checkpoint_dir and self.step >= self.total_steps:  # the last state, before any best is restored
            self.save_checkpoint(Path(cfg.checkpoint_dir) / "last.pt")
        if evaluate is not None:
            last_eval = self._evaluate(evaluate, start)
            if progress is not None:
                progress({"step": self.step, "total": self.total_steps, "eval": last_eval})
            out["eval"] = last_eval
            out["best_step"] = self.step
            if self.best is not None and self.best[1] != self.step:
                self.head.load_state_dict(self.best[2])
                out["best_step"] = self.best[1]
        self.head.eval()
        return {"steps": self.step, "loss": self.last_loss, "mean_loss": sum(losses) / max(1, len(losses)),
                "seconds": time.perf_counter() - start, "train_seconds": train_seconds, "images": images, **out}

    # --- checkpoints --------------------------------------------------------------------------------------

    def _teacher_fingerprint(self) -> float:
        model = self.clip.model
        return float(sum(p.detach().double().abs().sum() for p in (model.visual.proj, model.visual.class_embedding)
                         if p is not None))

    def _position(self) -> dict[str, Any]:
        """This process's data position, RNG states and cached targets.

        The cache goes along because a target computed in another batch can
        differ in its last bits: a resumed run must reuse the very same values.
        """
        rng: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        keys = sorted(self._cache)
        cache = {"index": torch.tensor(keys, dtype=torch.long),
                 "values": torch.stack([self._cache[k] for k in keys]) if keys else torch.empty(0)}
        return {"epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch, "rng": rng, "target_cache": cache}

    def state_dict(self, positions: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """Everything a resume needs (tensors on CPU).

        ``positions``: every rank's :meth:`_position` (gathered by
        :meth:`save_checkpoint`); default: this process's only.
        """
        positions = positions if positions is not None else [self._position()]
        rng = positions[0]["rng"]
        return {
            "format": CHECKPOINT_FORMAT,
            "version": 1,
            "stage": self.config.stage,
            "train_config": asdict(self.config),
            "head_config": self.head.config.to_json(),
            "clip_model": self.clip.model_name,
            "pretrained": self.clip.pretrained,
            "teacher_fingerprint": self._teacher_fingerprint(),
            "step": self.step,
            "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch,
            "total_steps": self.total_steps,
            "calibrated": self.calibrated,
            "last_loss": self.last_loss,
            "model": {k: v.detach().cpu() for k, v in self.head.state_dict().items()},
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "rng": rng,
            "world_size": self.world_size,
            "ranks": positions,
        }

    def save_checkpoint(self, path: str | os.PathLike) -> None:
        """Write :meth:`state_dict` to ``path`` atomically.

        Distributed, every rank must call it: the ranks' data positions are
        gathered, rank 0 writes the file and the others wait until it is written.
        """
        positions = distributed.all_gather_object(self._position())
        if self.rank == 0:
            path = Path(path)
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                with atomic_path(path) as tmp:
                    torch.save(self.state_dict(positions), tmp)
            except OSError as exc:
                raise CheckpointError(f"cannot write checkpoint {path}: {exc.strerror or exc}") from None
        distributed.barrier()

    def parameter_digest(self) -> str:
        """SHA-256 of the head's whole state (parameters and buffers): equal on ranks that are in sync."""
        import hashlib

        h = hashlib.sha256()
        for name, t in self.head.state_dict().items():
            h.update(name.encode())
            h.update(t.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
        return h.hexdigest()

    def rank_digests(self) -> list[str]:
        """Every rank's :meth:`parameter_digest`, in rank order (one in a single process); all ranks must call it."""
        return distributed.all_gather_object(self.parameter_digest())

    def resume(self, path: str | os.PathLike) -> "Trainer":
        """Restore a checkpoint written by :meth:`save_checkpoint` for this same run; returns ``self``.

        Same run: stage, batch size, seed, head, teacher and number of
        processes. ``steps`` may be raised to train on from the checkpoint (the
        learning-rate schedule then follows the new total; the old one is in
        :attr:`resumed_total_steps`). Distributed, every rank loads the same
        file and takes its own data position and RNG states from it.
        """
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except FileNotFoundError:
            raise CheckpointError(f"checkpoint {path} does not exist") from None
        except Exception as exc:
            raise CheckpointError(f"cannot read checkpoint {path}: {type(exc).__name__}: {exc}") from None
        if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
            raise CheckpointError(f"{path} is not a gscodec head-training checkpoint")
        mismatch = []
        for key in ("stage",):
            if state[key] != getattr(self.config, key):
                mismatch.append(f"{key} {state[key]!r} != {getattr(self.config, key)!r}")
        saved_cfg = state["train_config"]
        for key in ("batch_size", "seed"):
            if saved_cfg.get(key) != getattr(self.config, key):
                mismatch.append(f"{key} {saved_cfg.get(key)!r} != {getattr(self.config, key)!r}")
        if state["head_config"] != self.head.config.to_json():
            mismatch.append("head config differs")
        if state["clip_model"] != self.clip.model_name:
            mismatch.append(f"teacher {state['clip_model']!r} != {self.clip.model_name!r}")
        if state["step"] > self.total_steps:
            mismatch.append(f"the checkpoint is at step {state['step']}, beyond the {self.total_steps} steps of "
                            "this run")
        saved_world = int(state.get("world_size", 1))
        if saved_world != self.world_size:
            mismatch.append(f"{saved_world} process(es) != {self.world_size} (each process's data position is "
                            "saved; resume with the same number)")
        if not math.isclose(state["teacher_fingerprint"], self._teacher_fingerprint(), rel_tol=1e-9):
            mismatch.append("the teacher's weights differ (another --pretrained or --seed?)")
        if mismatch:
            raise CheckpointError(f"checkpoint {path} belongs to another run: {'; '.join(mismatch)} (resume with "
                                  "the options of the interrupted run; to train on, start a new run from the saved "
                                  "head with --init-head)")
        self.head.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        position = state["ranks"][self.rank] if "ranks" in state else state
        self.step = state["step"]
        self.epoch, self.batch_in_epoch = position["epoch"], position["batch_in_epoch"]
        self.calibrated = state["calibrated"]
        self.last_loss = float(state.get("last_loss", float("nan")))
        self.resumed_total_steps = state["total_steps"] if state["total_steps"] != self.total_steps else None
        rng = position["rng"]
        torch.set_rng_state(rng["torch"])
        py = rng["python"]
        random.setstate((py[0], tuple(py[1]), py[2]))
        if "cuda" in rng and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
        self._batches = None
        self._cache.clear()
        cache = position.get("target_cache")
        if cache is not None and self.config.cache_targets:
            self._cache.update(zip(cache["index"].tolist(), cache["values"]))
        return self


def train_config_fields() -> list[str]:
    """Names of the :class:`TrainConfig` fields."""
    return [f.name for f in fields(TrainConfig)]


__all__ = ["CheckpointError", "EpochSampler", "STAGES", "TrainConfig", "Trainer", "trainable_summary"]
