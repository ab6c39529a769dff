"""How well a head embeds like its teacher: cosine, retrieval@1 and zero-shot agreement on held-out crops.

* cosine: mean cosine similarity between the head's embedding of a `.gsi` and
  the teacher's embedding of the original pixels;
* retrieval@1: for each crop, is the teacher embedding nearest to its head
  embedding (among all crops of the set, the gallery) its own? Chance is
  ``1 / gallery``;
* zero-shot agreement: the class chosen from the head's embedding by a text
  classifier (``(C, E)`` normalized class embeddings) equals the one chosen
  from the teacher's.
"""

from __future__ import annotations

from typing import Callable, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset, IterableDataset

from .data import SplatBatch, collate_splats
from .model import GaussianCLIPHead
from .teacher import ClipBundle


@torch.no_grad()
def fidelity_metrics(emb: torch.Tensor, teacher: torch.Tensor, classifier: torch.Tensor | None = None,
                     gallery: int | None = None, seed: int = 0) -> dict[str, float]:
    """Metrics of ``emb`` against ``teacher`` (both ``(B, E)``; normalized here).

    ``gallery``: also report ``retrieval@1_gN``, the mean retrieval@1 over random galleries of ``N`` crops
    (every crop in one gallery per round, 20 rounds), comparable across sets of different sizes; the
    whole set's when it is smaller.
    """
    emb, teacher = F.normalize(emb.float(), dim=-1), F.normalize(teacher.float(), dim=-1)
    n = len(emb)
    cos = (emb * teacher).sum(-1)
    sims = emb @ teacher.T
    own = torch.arange(n)
    out = {"cosine": float(cos.mean()), "cosine_min": float(cos.min()),
           "retrieval@1": float((sims.argmax(1) == own).float().mean()), "gallery": float(n)}
    if classifier is not None:
        c = F.normalize(classifier.float(), dim=-1)
        out["zero_shot_agreement"] = float(((emb @ c.T).argmax(1) == (teacher @ c.T).argmax(1)).float().mean())
    if gallery is not None and gallery >= n:
        out[f"retrieval@1_g{gallery}"] = out["retrieval@1"]  # the whole set is smaller than one gallery
    elif gallery is not None and gallery > 1:
        gen = torch.Generator().manual_seed(seed)
        hits, total = 0.0, 0
        for _ in range(20):
            perm = torch.randperm(n, generator=gen)
            for i in range(0, n - gallery + 1, gallery):
                idx = perm[i:i + gallery]
                sub = sims[idx][:, idx]
                hits += float((sub.argmax(1) == torch.arange(gallery)).float().sum())
                total += gallery
        out[f"retrieval@1_g{gallery}"] = hits / max(1, total)
    off = teacher @ teacher.T
    out["teacher_pairwise_cosine"] = float((off.sum() - off.diag().sum()) / max(1, n * (n - 1)))
    return out


def _batches(dataset: Dataset, indices: Sequence[int] | None, batch_size: int) -> Iterator[SplatBatch]:
    """Collated batches of ``dataset``: ``indices`` (default: all) of a map-style one; an iterable one (tar
    shards) read through in its order. Unreadable samples are dropped by the collate."""
    if isinstance(dataset, IterableDataset):
        if indices is not None:
            raise ValueError("indices need a map-style dataset")
        chunk: list = []
        for sample in dataset:
            chunk.append(sample)
            if len(chunk) == batch_size:
                batch = collate_splats(chunk)
                chunk = []
                if batch is not None:
                    yield batch
        batch = collate_splats(chunk)
        if batch is not None:
            yield batch
        return
    idx = list(range(len(dataset))) if indices is None else list(indices)  # type: ignore[arg-type]
    for i in range(0, len(idx), batch_size):
        batch = collate_splats([dataset[j] for j in idx[i:i + batch_size]])
        if batch is not None:
            yield batch


@torch.no_grad()
def embed_dataset(head: GaussianCLIPHead, dataset: Dataset, indices: Sequence[int] | None = None,
                  batch_size: int = 128, clip: ClipBundle | None = None,
                  cache: dict[str, torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(head embeddings (B, E), teacher targets (B, E))`` of ``dataset`` (``indices``: default all).

    The targets are the samples' cached ``"target"`` (e.g. a
    :class:`~gscodec.clip.distill_set.DistillDataset`), else, with ``clip``, the teacher's normalized
    embedding of their ``"image"`` (its preprocessed pixels). ``cache`` (sample key -> target) keeps the
    teacher's embeddings across calls, so that it runs once per sample.
    """
    was_training = head.training
    head.eval()
    embs, targets = [], []
    for batch in _batches(dataset, indices, batch_size):
        embs.append(head.encode(batch, normalize=True).float().cpu())
        targets.append(_targets(batch, clip, {} if cache is None else cache))
    head.train(was_training)
    if not embs:
        raise ValueError("the evaluation data has no readable samples")
    return torch.cat(embs), torch.cat(targets)


def _targets(batch: SplatBatch, clip: ClipBundle | None, cache: dict[str, torch.Tensor]) -> torch.Tensor:
    """``(B, E)`` teacher targets of one batch (see :func:`embed_dataset`)."""
    if batch.targets is not None:
        return batch.targets.float().cpu()
    if clip is None or batch.images is None:
        raise ValueError("the samples have neither cached targets nor teacher inputs (images) with a teacher")
    todo = [i for i, k in enumerate(batch.keys) if k not in cache]
    if todo:
        device = next(clip.model.parameters()).device
        emb = clip.model.encode_image(batch.images[todo].to(device), normalize=True).float().cpu()
        cache.update(zip((batch.keys[i] for i in todo), emb))
    return torch.stack([cache[k] for k in batch.keys])


def evaluator(dataset: Dataset, classifier: torch.Tensor | None = None, indices: Sequence[int] | None = None,
              gallery: int | None = None, clip: ClipBundle | None = None,
              batch_size: int = 128) -> Callable[[GaussianCLIPHead], dict[str, float]]:
    """An ``evaluate(head) -> metrics`` function (:func:`fidelity_metrics`) for
    :meth:`gscodec.clip.train.Trainer.run` over ``dataset``; with ``clip`` the teacher embeds the samples'
    images at the first call only (see :func:`embed_dataset`)."""
    cache: dict[str, torch.Tensor] = {}

    def evaluate(head: GaussianCLIPHead) -> dict[str, float]:
        emb, target = embed_dataset(head, dataset, indices, batch_size, clip, cache)
        return fidelity_metrics(emb, target, classifier, gallery)
    return evaluate


__all__ = ["embed_dataset", "evaluator", "fidelity_metrics"]
