"""Zero-shot classification and embedding helpers.

Prompt templates are data: ``templates.json`` next to this module holds the
sets (``openai``: the 80 OpenAI ImageNet templates, ``simple``: their 7-prompt
subset, ``short``: one prompt), with ``{c}`` standing for the class name. The
ImageNet-1k class names come from ``open_clip.zero_shot_metadata``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F

from ..gaussians import GaussianImage
from .config import ConfigError
from .data import batch_from_gaussians
from .model import GaussianCLIPHead
from .teacher import ClipBundle

TEMPLATES_PATH = Path(__file__).parent / "templates.json"


@lru_cache(maxsize=1)
def _template_file() -> dict[str, list[str]]:
    data = json.loads(TEMPLATES_PATH.read_text(encoding="utf-8"))
    return {k: list(v) for k, v in data.items() if not k.startswith("_")}


def template_sets() -> dict[str, list[str]]:
    """All built-in template sets by name."""
    return {k: list(v) for k, v in _template_file().items()}


def get_templates(name: str | os.PathLike) -> list[str]:
    """A built-in template set by name, or templates from a file.

    A file is a JSON list of strings or a text file with one template per
    line; every template must contain ``{c}``. Raises :class:`ConfigError`.
    """
    sets = _template_file()
    key = str(name)
    if key in sets:
        return list(sets[key])
    path = Path(key)
    if not path.is_file():
        raise ConfigError(f"unknown template set {key!r}; built-in sets: {', '.join(sorted(sets))} "
                          "(or give a .json/.txt file of templates with {c})")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read templates {path}: {exc}") from None
    if path.suffix.lower() == ".json":
        try:
            templates = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"templates {path} are not valid JSON: {exc}") from None
        if not isinstance(templates, list) or not all(isinstance(t, str) for t in templates):
            raise ConfigError(f"templates {path} must be a JSON list of strings")
    else:
        templates = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
    bad = [t for t in templates if "{c}" not in t]
    if not templates or bad:
        raise ConfigError(f"templates {path}: every template needs the {{c}} placeholder"
                          + (f" (not: {bad[0]!r})" if bad else " (file is empty)"))
    return templates


def fill(template: str, classname: str) -> str:
    """``template`` with ``{c}`` replaced by ``classname`` (no other brace handling)."""
    return template.replace("{c}", classname)


def imagenet_classnames() -> list[str]:
    """The 1000 ImageNet-1k class names used by CLIP's zero-shot evaluation."""
    from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES

    return list(IMAGENET_CLASSNAMES)


def parse_labels(text: str) -> list[str]:
    """``"cat, dog,car"`` -> ``["cat", "dog", "car"]``; raises :class:`ConfigError` if empty or duplicated."""
    labels = [t.strip() for t in text.split(",") if t.strip()]
    return _check_labels(labels, "--labels")


def read_labels_file(path: str | os.PathLike) -> list[str]:
    """One label per line (blank lines and ``#`` comments ignored)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read labels file {path}: {getattr(exc, 'strerror', None) or exc}") from None
    labels = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return _check_labels(labels, str(path))


def _check_labels(labels: list[str], where: str) -> list[str]:
    if not labels:
        raise ConfigError(f"{where}: no labels")
    seen: set[str] = set()
    dups = [x for x in labels if x in seen or seen.add(x)]  # type: ignore[func-returns-value]
    if dups:
        raise ConfigError(f"{where}: duplicate label {dups[0]!r}")
    return labels


@torch.no_grad()
def text_classifier(clip: ClipBundle, classnames: Sequence[str], templates: Sequence[str],
                    batch_size: int = 256) -> torch.Tensor:
    """``(C, E)`` L2-normalized class embeddings: the mean over templates of the text embeddings."""
    rows = []
    per_batch = max(1, batch_size // max(1, len(templates)))
    for i in range(0, len(classnames), per_batch):
        names = classnames[i:i + per_batch]
        texts = [fill(t, c) for c in names for t in templates]
        emb = clip.encode_texts(texts, normalize=True).view(len(names), len(templates), -1).mean(1)
        rows.append(F.normalize(emb, dim=-1))
    return torch.cat(rows)


@dataclass(frozen=True)
class Prediction:
    """One ranked label: softmax probability over the labels and cosine similarity."""

    label: str
    probability: float
    similarity: float


def predict(embeddings: torch.Tensor, classifier: torch.Tensor, classnames: Sequence[str], top_k: int = 5,
            logit_scale: float = 100.0) -> list[list[Prediction]]:
    """Top-k labels per image.

    Args:
        embeddings: ``(B, E)`` L2-normalized image embeddings.
        classifier: ``(C, E)`` from :func:`text_classifier`.
        logit_scale: softmax temperature (CLIP's learned ``logit_scale.exp()``, 100 for trained models).
    """
    sims = embeddings.float() @ classifier.float().T  # (B, C)
    probs = (logit_scale * sims).softmax(-1)
    k = min(top_k, len(classnames))
    top = probs.topk(k, dim=-1)
    return [[Prediction(classnames[j], float(p), float(sims[i, j])) for p, j in zip(top.values[i], top.indices[i])]
            for i in range(sims.shape[0])]


def logit_scale_of(clip: ClipBundle) -> float:
    """The model's softmax scale ``exp(logit_scale)``, capped at 100 as in CLIP training."""
    scale = getattr(clip.model, "logit_scale", None)
    return 100.0 if scale is None else float(min(100.0, float(scale.detach().exp().reshape(-1)[0])))


@torch.no_grad()
def embed_gaussians(head: GaussianCLIPHead, images: Sequence[GaussianImage], batch_size: int = 32) -> torch.Tensor:
    """``(B, E)`` L2-normalized head embeddings of in-memory Gaussian images."""
    head.eval()
    out = [head.encode(batch_from_gaussians(images[i:i + batch_size]), normalize=True).float().cpu()
           for i in range(0, len(images), batch_size)]
    return torch.cat(out) if out else torch.zeros(0, head.embed_dim)


def embed_files(head: GaussianCLIPHead, paths: Sequence[str | os.PathLike], batch_size: int = 32) -> torch.Tensor:
    """``(B, E)`` head embeddings of `.gsi` files (raises on unreadable files)."""
    from ..format import read

    return embed_gaussians(head, [read(p).gaussians for p in paths], batch_size)


@torch.no_grad()
def embed_rendered(clip: ClipBundle, images: Sequence[GaussianImage], batch_size: int = 32) -> torch.Tensor:
    """``(B, E)`` embeddings of the RGB model on the decoded pixels (the comparison path)."""
    from ..render import render

    out = []
    for i in range(0, len(images), batch_size):
        pix = torch.stack([clip.preprocess_array(render(g)) for g in images[i:i + batch_size]])
        out.append(clip.encode_images(pix, normalize=True).cpu())
    return torch.cat(out) if out else torch.zeros(0, clip.embed_dim)


__all__ = ["Prediction", "TEMPLATES_PATH", "embed_files", "embed_gaussians", "embed_rendered", "fill",
           "get_templates", "imagenet_classnames", "logit_scale_of", "parse_labels", "predict", "read_labels_file",
           "template_sets", "text_classifier"]
