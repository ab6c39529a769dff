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

from typing import Sequence

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from .data import collate_splats
from .model import GaussianCLIPHead


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


@torch.no_grad()
def embed_dataset(head: GaussianCLIPHead, dataset: Dataset, indices: Sequence[int] | None = None,
                  batch_size: int = 128) -> tuple[torch.Tensor, torch.Tensor]:
    """``(head embeddings (B, E), cached targets (B, E))`` of a dataset whose samples carry ``"target"``
    (e.g. :class:`~gscodec.clip.distill_set.DistillDataset`), for ``indices`` (default: all)."""
    idx = list(range(len(dataset))) if indices is None else list(indices)  # type: ignore[arg-type]
    was_training = head.training
    head.eval()
    embs, targets = [], []
    for i in range(0, len(idx), batch_size):
        batch = collate_splats([dataset[j] for j in idx[i:i + batch_size]])
        if batch is None or batch.targets is None:
            raise ValueError("the dataset's samples have no cached targets")
        embs.append(head.encode(batch, normalize=True).float().cpu())
        targets.append(batch.targets.float())
    head.train(was_training)
    return torch.cat(embs), torch.cat(targets)


def evaluator(dataset: Dataset, classifier: torch.Tensor | None = None, indices: Sequence[int] | None = None,
              gallery: int | None = None):
    """A ``evaluate(head) -> metrics`` function for :meth:`gscodec.clip.train.Trainer.run` over ``dataset``."""
    def evaluate(head: GaussianCLIPHead) -> dict[str, float]:
        emb, target = embed_dataset(head, dataset, indices)
        return fidelity_metrics(emb, target, classifier, gallery)
    return evaluate


__all__ = ["embed_dataset", "evaluator", "fidelity_metrics"]
