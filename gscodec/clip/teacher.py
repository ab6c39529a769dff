"""The RGB CLIP model (teacher and text tower) through open_clip, offline-safe.

Weights are given as an open_clip pretrained tag (``ViT-B-16`` + ``openai``),
a checkpoint path, or ``"none"`` for random initialization. Tags resolve
through open_clip's registry and the Hugging Face cache; when the weights are
neither cached nor downloadable (offline, ``HF_HUB_OFFLINE=1``, no network)
:class:`WeightsUnavailableError` says which model, tag and file are missing and
how to provide them. Hub and network exceptions never escape this module.
"""

from __future__ import annotations

import difflib
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from .config import ClipHeadError, ConfigError

MODEL_CONFIG_DIR = Path(__file__).parent / "model_configs"
"""open_clip model configs shipped with gscodec (tiny/small ViTs for tests and benchmarks)."""

NO_WEIGHTS = ("none", "random", "")


class WeightsUnavailableError(ClipHeadError):
    """Pretrained weights (or a tokenizer) are neither cached locally nor downloadable."""


class WeightsLoadError(ClipHeadError):
    """A checkpoint exists but cannot be loaded into the model (corrupt or another architecture)."""


class UnknownModelError(ConfigError):
    """The open_clip model name is not in open_clip's registry, or is not a ViT."""


def register_model_configs() -> None:
    """Add ``gscodec/clip/model_configs/*.json`` to open_clip's model registry (idempotent)."""
    import open_clip

    names = {p.stem for p in MODEL_CONFIG_DIR.glob("*.json")}
    if not names.issubset(open_clip.list_models()):
        open_clip.add_model_config(MODEL_CONFIG_DIR)


def check_model_name(model_name: str) -> None:
    """Raise :class:`UnknownModelError` (with suggestions) unless open_clip knows ``model_name``."""
    import open_clip

    register_model_configs()
    if model_name.startswith(("hf-hub:", "local-dir:")):
        raise UnknownModelError(
            f"model {model_name!r}: hf-hub: and local-dir: names are not supported; give a built-in open_clip "
            "model name and the weights with --pretrained /path/to/checkpoint")
    models = open_clip.list_models()
    if model_name not in models:
        close = difflib.get_close_matches(model_name, models, n=5, cutoff=0.5)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise UnknownModelError(
            f"unknown open_clip model {model_name!r}.{hint} See open_clip.list_models() for all "
            f"{len(models)} names (e.g. ViT-B-16, ViT-B-32, ViT-L-14, gsi-tiny-vit).")


def _offline() -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "").upper() in ("1", "ON", "YES", "TRUE"):
        return True
    try:
        from huggingface_hub import constants

        return bool(constants.is_offline_mode())
    except Exception:  # pragma: no cover - hub not installed
        return False


def _looks_like_path(value: str) -> bool:
    return os.sep in value or "/" in value or Path(value).suffix.lower() in (
        ".pt", ".pth", ".bin", ".safetensors", ".npz", ".ckpt")


def _hub_file(cfg: dict[str, Any]) -> str:
    hub = cfg.get("hf_hub", "")
    if not hub:
        return ""
    from open_clip.constants import HF_WEIGHTS_NAME

    repo, filename = os.path.split(hub)
    return f"{repo}/{filename or HF_WEIGHTS_NAME}"


HUB_PROBE_TIMEOUT_S = 5.0
"""Seconds the one request that checks whether the Hub answers may wait (no retries)."""


def _hub_candidates(filename: str) -> list[str]:
    """The files open_clip's Hub download tries for ``filename``, in its order: the safetensors twin first."""
    from open_clip.constants import HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME

    names = [filename]
    if filename == HF_WEIGHTS_NAME:
        names.insert(0, HF_SAFE_WEIGHTS_NAME)
    elif filename.endswith(".bin"):
        names.insert(0, filename[: -len(".bin")] + ".safetensors")
    return names


def _cached_hub_file(repo: str, filename: str, cache_dir: str | None) -> str | None:
    """The path of ``repo``'s ``filename`` (or its safetensors twin) in the local Hugging Face cache, found
    without any network call; ``None`` if neither is there."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - open_clip's hub support needs it
        return None
    for name in _hub_candidates(filename):
        try:
            found = try_to_load_from_cache(repo, name, cache_dir=cache_dir)
        except Exception:  # a malformed repo id or cache: treat as not cached
            continue
        if isinstance(found, str) and os.path.isfile(found):
            return found
    return None


def _hub_unreachable(repo: str, filename: str) -> str | None:
    """Why the Hugging Face Hub cannot be reached (one HEAD request for ``repo``'s ``filename``, no retries,
    at most :data:`HUB_PROBE_TIMEOUT_S`), or ``None`` when it answers. Any HTTP answer (even 404) counts as
    reachable: then the download itself runs, with the hub's own retries."""
    import inspect

    try:
        from huggingface_hub import get_hf_file_metadata, hf_hub_url
        from huggingface_hub.errors import HfHubHTTPError
    except ImportError:  # pragma: no cover - an old hub: let the download find out
        return None
    no_retries = ({"retry_on_errors": False}
                  if "retry_on_errors" in inspect.signature(get_hf_file_metadata).parameters else {})
    try:
        get_hf_file_metadata(hf_hub_url(repo, filename), timeout=HUB_PROBE_TIMEOUT_S, **no_retries)
    except HfHubHTTPError:
        return None
    except Exception as exc:  # connection refused, name resolution, timeout, proxy, ...
        return f"{type(exc).__name__}: {exc}"
    return None


def _missing(model_name: str, tag: str, where: str, reason: str, hub_file: str = "") -> WeightsUnavailableError:
    hint_dl = ""
    if hub_file:
        repo, filename = hub_file.rsplit("/", 1)
        hint_dl = f" (e.g. `hf download {repo} {filename}`)"
    return WeightsUnavailableError(
        f"pretrained weights for open_clip model {model_name!r} (tag {tag!r}, {where}) are not available: "
        f"{reason}. To provide them, download the checkpoint on a machine with internet access{hint_dl} and "
        f"pass its path with --pretrained /path/to/checkpoint, or copy a Hugging Face cache that holds it to "
        f"this machine and set HF_HOME (or HF_HUB_CACHE) to it. Use --pretrained none for random weights.")


def resolve_weights(model_name: str, pretrained: str | None, cache_dir: str | None = None) -> str | None:
    """The local checkpoint file for ``pretrained``, or ``None`` for random initialization.

    ``pretrained`` is ``"none"``, an existing file, or a tag of ``model_name`` in
    open_clip's registry (downloaded into or found in the cache). Raises
    :class:`WeightsUnavailableError` when the file cannot be had and
    :class:`ConfigError` for an unknown tag.
    """
    import open_clip
    from open_clip.pretrained import download_pretrained, get_pretrained_cfg

    if pretrained is None or pretrained.strip().lower() in NO_WEIGHTS:
        return None
    if os.path.isfile(pretrained):
        return pretrained
    if os.path.isdir(pretrained):
        raise WeightsUnavailableError(f"--pretrained {pretrained!r} is a folder; give the checkpoint file in it")
    cfg = get_pretrained_cfg(model_name, pretrained)
    if not cfg:
        if _looks_like_path(pretrained):
            raise WeightsUnavailableError(
                f"checkpoint file {pretrained!r} for open_clip model {model_name!r} does not exist. Give the path "
                "of a downloaded open_clip checkpoint (.bin, .pt, .safetensors), a pretrained tag, or none.")
        tags = open_clip.list_pretrained_tags_by_model(model_name)
        known = f"known tags: {', '.join(tags)}" if tags else "open_clip has no pretrained tags for it"
        raise ConfigError(f"unknown pretrained tag {pretrained!r} for open_clip model {model_name!r} ({known}); "
                          "or give a checkpoint path, or none for random weights")
    hub_file = _hub_file(cfg)
    if "file" in cfg:
        return cfg["file"]
    from open_clip.pretrained import has_hf_hub

    if hub_file and has_hf_hub():
        where = f"Hugging Face Hub file {hub_file}"
        repo, filename = hub_file.rsplit("/", 1)
        cached = _cached_hub_file(repo, filename, cache_dir)
        if cached is not None:
            return cached
        if _offline():
            raise _missing(model_name, pretrained, where, "not in the local Hugging Face cache and downloads are "
                                                          "disabled (offline mode, HF_HUB_OFFLINE=1)", hub_file)
        problem = _hub_unreachable(repo, filename)
        if problem is not None:
            raise _missing(model_name, pretrained, where, f"not in the local Hugging Face cache and the Hub cannot "
                                                          f"be reached ({problem})", hub_file)
        try:
            return download_pretrained(cfg, cache_dir=cache_dir)
        except BaseException as exc:  # hub, HTTP and OS errors of any kind
            if isinstance(exc, KeyboardInterrupt):
                raise
            reason = "not in the local Hugging Face cache and " + (
                "downloads are disabled (offline mode, HF_HUB_OFFLINE=1)" if _offline()
                else f"the download failed ({type(exc).__name__})")
            raise _missing(model_name, pretrained, where, reason, hub_file) from None
    url = cfg.get("url", "")
    if not url:
        raise _missing(model_name, pretrained, "no download location", "open_clip lists no source for this tag")
    target = os.path.join(cache_dir or os.path.expanduser("~/.cache/clip"), os.path.basename(url))
    where = f"URL {url}"
    if _offline() and not os.path.isfile(target):
        raise _missing(model_name, pretrained, where, f"{target} does not exist and downloads are disabled "
                                                     "(offline mode, HF_HUB_OFFLINE=1)")
    try:
        return download_pretrained(cfg, prefer_hf_hub=False, cache_dir=cache_dir)
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt):
            raise
        raise _missing(model_name, pretrained, where,
                       f"not cached at {target} and the download failed ({type(exc).__name__})") from None


@dataclass
class ClipBundle:
    """An open_clip model with what the head needs around it.

    Attributes:
        model: the open_clip ``CLIP`` model (eval mode).
        model_name, pretrained: what it was built from (``pretrained`` is a tag,
            a path or ``"none"``).
        quick_gelu: whether QuickGELU was forced (tags trained with it).
        preprocess: PIL image -> ``(3, S, S)`` float tensor, the model's
            normalization with ``resize_mode`` (``"squash"`` by default, so the
            model sees the whole image as the head does).
        tokenizer: list of strings -> ``(T, context)`` token ids.
    """

    model: torch.nn.Module
    model_name: str
    pretrained: str
    quick_gelu: bool
    preprocess: Callable
    tokenizer: Callable

    @property
    def image_size(self) -> tuple[int, int]:
        """``(height, width)`` of the vision tower's input."""
        return tuple(self.model.visual.image_size)  # type: ignore[return-value]

    def preprocess_array(self, pixels: np.ndarray) -> torch.Tensor:
        """``(H, W, 3)`` uint8 -> ``(3, S, S)`` float tensor (the model's input)."""
        from PIL import Image

        return self.preprocess(Image.fromarray(np.ascontiguousarray(pixels[..., :3])))

    @torch.no_grad()
    def encode_images(self, images: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """``(B, 3, S, S)`` preprocessed images -> ``(B, E)`` embeddings."""
        device = next(self.model.parameters()).device
        return self.model.encode_image(images.to(device), normalize=normalize).float()

    @torch.no_grad()
    def encode_texts(self, texts: list[str], normalize: bool = True, batch_size: int = 256) -> torch.Tensor:
        """Strings -> ``(T, E)`` text embeddings."""
        device = next(self.model.parameters()).device
        out = []
        for i in range(0, len(texts), batch_size):
            tokens = self.tokenizer(texts[i:i + batch_size]).to(device)
            out.append(self.model.encode_text(tokens, normalize=normalize).float())
        return torch.cat(out) if out else torch.zeros(0, self.embed_dim)

    @property
    def embed_dim(self) -> int:
        """Dimension of the shared embedding space."""
        return int(self.model.visual.output_dim)


def load_clip(model_name: str, pretrained: str | None = "none", *, device: str | torch.device = "cpu",
              cache_dir: str | None = None, quick_gelu: bool | None = None,
              resize_mode: str = "squash") -> ClipBundle:
    """Build an open_clip model with weights from a tag, a file or none, plus its preprocessing and tokenizer.

    ``quick_gelu=None`` follows the tag (e.g. the OpenAI weights need QuickGELU).
    Raises :class:`UnknownModelError`, :class:`ConfigError`,
    :class:`WeightsUnavailableError` or :class:`WeightsLoadError`.
    """
    import open_clip
    from open_clip.pretrained import get_pretrained_cfg
    from open_clip.transform import PreprocessCfg, image_transform_v2
    from open_clip.transformer import VisionTransformer

    check_model_name(model_name)
    checkpoint = resolve_weights(model_name, pretrained, cache_dir)
    tag_cfg = {} if pretrained is None or checkpoint == pretrained else get_pretrained_cfg(model_name, pretrained)
    if quick_gelu is None:
        model_cfg = open_clip.get_model_config(model_name) or {}
        quick_gelu = bool(tag_cfg.get("quick_gelu", False)) and not model_cfg.get("quick_gelu", False)
    force_pp = {k: tag_cfg[k] for k in ("mean", "std", "interpolation") if k in tag_cfg}
    force_pp["resize_mode"] = resize_mode
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)  # open_clip logs "initialized randomly" etc. on the root logger
    try:
        model = open_clip.create_model(model_name, pretrained=checkpoint, device=device, force_quick_gelu=quick_gelu,
                                       force_preprocess_cfg=force_pp, pretrained_text=False)
    except (RuntimeError, KeyError, ValueError, OSError, EOFError) as exc:
        if checkpoint is None:
            raise
        raise WeightsLoadError(f"cannot load checkpoint {checkpoint!r} into open_clip model {model_name!r}: "
                               f"{str(exc).splitlines()[0][:300]}") from None
    except Exception as exc:  # pickle errors and the like from torch.load
        if checkpoint is None:
            raise
        raise WeightsLoadError(f"cannot load checkpoint {checkpoint!r}: {type(exc).__name__}: {exc}") from None
    finally:
        logging.disable(previous)
    if not isinstance(model.visual, VisionTransformer):
        raise UnknownModelError(f"open_clip model {model_name!r} has a {type(model.visual).__name__} image tower; "
                                "the splat head needs an open_clip VisionTransformer (a ViT-* model)")
    model.eval()
    preprocess = image_transform_v2(PreprocessCfg(**model.visual.preprocess_cfg), is_train=False)
    try:
        tokenizer = open_clip.get_tokenizer(model_name)
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt):
            raise
        raise WeightsUnavailableError(f"the tokenizer of open_clip model {model_name!r} is not available "
                                      f"({type(exc).__name__}); download it where there is internet access and "
                                      "set HF_HOME to that cache") from None
    label = "none" if checkpoint is None else str(pretrained)
    return ClipBundle(model, model_name, label, bool(quick_gelu), preprocess, tokenizer)
