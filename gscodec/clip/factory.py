"""Head registry, creation, and head files (safetensors).

Like open_clip's model registry: :func:`list_heads` names the JSON configs in
``gscodec/clip/configs/`` (plus any added with :func:`add_head_config`), and
:func:`create_head` builds a head from a name, a JSON path or a
:class:`HeadConfig`, listing the valid names when given a wrong one.

A head file is a safetensors file with the head's tensors and string metadata:
``format`` (``gscodec-clip-head``), ``config`` (the head config JSON),
``clip_model`` and ``pretrained`` (the teacher's open_clip name and weights
tag or path), ``quick_gelu``, ``embed_dim``, ``self_contained`` and training
details. Trunk tensors equal to the teacher's are not stored: they come back
from the teacher's weights. A head distilled from a randomly initialised
teacher (``pretrained == "none"``) cannot be rebuilt that way, so its file is
self-contained: the whole trunk and the teacher's text tower (``clip.*``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from ..atomic import atomic_path
from ..limits import MAX_HEAD_DEPTH, MAX_HEAD_PARAMETERS, MAX_HEAD_WIDTH
from .config import ClipHeadError, ConfigError, HeadConfig
from .model import GaussianCLIPHead
from .teacher import ClipBundle, load_clip, register_model_configs

CONFIG_DIR = Path(__file__).parent / "configs"
HEAD_FORMAT = "gscodec-clip-head"
HEAD_FORMAT_VERSION = "1"
_CONFIG_PATHS: list[Path] = [CONFIG_DIR]


class UnknownHeadError(ConfigError):
    """No head config of that name; the message lists the valid names."""


class HeadFileError(ClipHeadError):
    """A head file is missing, unreadable, or not a gscodec CLIP head."""


def _scan() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for base in _CONFIG_PATHS:
        files = [base] if base.is_file() else sorted(base.glob("*.json")) if base.is_dir() else []
        for f in files:
            found[f.stem] = f
    return found


def list_heads() -> list[str]:
    """Names of the registered head configs, sorted."""
    return sorted(_scan())


def add_head_config(path: str | os.PathLike) -> None:
    """Register a head config file or a folder of them (like ``open_clip.add_model_config``)."""
    _CONFIG_PATHS.append(Path(path))


def get_head_config(name: str | os.PathLike | HeadConfig) -> HeadConfig:
    """The :class:`HeadConfig` for a registered name or a JSON file path.

    Raises :class:`UnknownHeadError` listing the valid names.
    """
    if isinstance(name, HeadConfig):
        return name
    registry = _scan()
    key = str(name)
    if key in registry:
        path = registry[key]
    elif key.endswith(".json") and Path(key).is_file():
        path = Path(key)
    else:
        raise UnknownHeadError(f"unknown head config {key!r}; valid names: {', '.join(sorted(registry))} "
                               "(or give the path of a head config .json file)")
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read head config {path}: {exc.strerror or exc}") from None
    return HeadConfig.from_json(text, name=path.stem)


def create_head(config: str | os.PathLike | HeadConfig, *, clip_model: str | None = None,
                pretrained: str | None = None, num_tokens: int | None = None, clip: ClipBundle | None = None,
                device: str | torch.device = "cpu", cache_dir: str | None = None,
                resize_mode: str = "squash") -> tuple[GaussianCLIPHead, ClipBundle]:
    """Build a fresh head (stem and resampler randomly initialised) on a teacher's trunk.

    Args:
        config: registered name, JSON path or :class:`HeadConfig`.
        clip_model: open_clip model name overriding the config's (any ViT).
        pretrained: weights tag, checkpoint path or ``"none"``; default: the
            config's tag (when another ``clip_model`` is given, the tag must
            exist for it, else ``pretrained`` is required).
        num_tokens: K override.
        clip: an already loaded teacher (then ``clip_model``/``pretrained`` are ignored).

    Returns:
        ``(head, clip)``: the head on ``device`` and the teacher bundle.
    """
    register_model_configs()
    cfg = get_head_config(config)
    if clip is not None:
        cfg = cfg.with_overrides(clip_model=clip.model_name, num_tokens=num_tokens)
    else:
        cfg = cfg.with_overrides(clip_model=clip_model, num_tokens=num_tokens)
        if pretrained is None:
            pretrained = cfg.pretrained
            if clip_model is not None and pretrained.lower() != "none":
                import open_clip

                if pretrained not in open_clip.list_pretrained_tags_by_model(clip_model):
                    raise ConfigError(f"head config {cfg.name or '?'} names weights {cfg.pretrained!r}, which open_clip "
                                      f"does not have for {clip_model!r}; give --pretrained TAG, a checkpoint path, "
                                      "or none")
        clip = load_clip(cfg.clip_model, pretrained, device=device, cache_dir=cache_dir, resize_mode=resize_mode)
    check_head_config(cfg, trunk_width=clip.model.visual.transformer.width, where=f"head config {cfg.name or '?'}")
    head = GaussianCLIPHead(cfg, clip.model.visual).to(device)
    return head, clip


def _head_parameters(cfg: HeadConfig, trunk_width: int, patch_pixels: int = 1024) -> int:
    """An upper estimate of the parameters of ``cfg``'s stem and resampler (or cell pooling) on a trunk
    ``trunk_width`` wide."""
    if cfg.pooling == "cells":
        c = cfg.cells
        features = 4 * c.fourier_bands + 16
        basis = patch_pixels
        mlp = (features * c.hidden + max(c.layers - 1, 0) * c.hidden * c.hidden + c.hidden * basis
               if c.layers else features * basis)
        return int(mlp + 3 * basis * trunk_width + 4 * trunk_width + 4 * c.hidden)
    d = cfg.resampler.token_dim(trunk_width)
    features = 4 * cfg.stem.fourier_bands + 16  # positional Fourier features and the raw parameters
    stem = features * cfg.stem.hidden + cfg.stem.hidden * d if cfg.stem.projection == "mlp" else features * d
    layer = (4 + 2 * cfg.resampler.mlp_ratio) * d * d + 16 * d
    return int(stem + cfg.resampler.depth * layer + cfg.num_tokens * d + d * trunk_width + 4 * trunk_width)


def check_head_config(cfg: HeadConfig, trunk_width: int = MAX_HEAD_WIDTH, where: str = "head config") -> None:
    """Raise :class:`ConfigError` when ``cfg``'s sizes are not whole numbers or pass the limits of
    :mod:`gscodec.limits` (depth, widths, tokens, estimated parameters), before anything is allocated."""
    sizes = {"num_tokens": cfg.num_tokens, "resampler.depth": cfg.resampler.depth,
             "resampler.attn_dim": cfg.resampler.attn_dim, "resampler.heads": cfg.resampler.heads,
             "stem.hidden": cfg.stem.hidden, "stem.fourier_bands": cfg.stem.fourier_bands,
             "cells.hidden": cfg.cells.hidden, "cells.layers": cfg.cells.layers,
             "cells.fourier_bands": cfg.cells.fourier_bands}
    for key, value in sizes.items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise ConfigError(f"{where}: {key} must be a whole number, got {value!r}")
    for key, value, limit in (("resampler.depth", cfg.resampler.depth, MAX_HEAD_DEPTH),
                              ("resampler.attn_dim", cfg.resampler.attn_dim, MAX_HEAD_WIDTH),
                              ("resampler.heads", cfg.resampler.heads, MAX_HEAD_WIDTH),
                              ("stem.hidden", cfg.stem.hidden, MAX_HEAD_WIDTH),
                              ("stem.fourier_bands", cfg.stem.fourier_bands, MAX_HEAD_WIDTH),
                              ("cells.hidden", cfg.cells.hidden, MAX_HEAD_WIDTH),
                              ("cells.layers", cfg.cells.layers, MAX_HEAD_DEPTH),
                              ("cells.fourier_bands", cfg.cells.fourier_bands, MAX_HEAD_WIDTH),
                              ("num_tokens", cfg.num_tokens, MAX_HEAD_WIDTH)):
        if value is not None and value > limit:
            raise ConfigError(f"{where}: {key} is {value:,}, over the limit of {limit:,}")
    if not isinstance(cfg.resampler.mlp_ratio, (int, float)) or not cfg.resampler.mlp_ratio <= 64:
        raise ConfigError(f"{where}: resampler.mlp_ratio must be a number of at most 64, got "
                          f"{cfg.resampler.mlp_ratio!r}")
    if (n := _head_parameters(cfg, trunk_width)) > MAX_HEAD_PARAMETERS:
        raise ConfigError(f"{where}: about {n:,} parameters, over the limit of {MAX_HEAD_PARAMETERS:,}")


def _check_tensors(path: str | os.PathLike, head: GaussianCLIPHead, tensors: dict[str, torch.Tensor]) -> None:
    """Raise :class:`HeadFileError` naming the first tensor whose shape or dtype does not fit ``head``."""
    expected = head.state_dict()
    for key, value in tensors.items():
        want = expected.get(key)
        if want is None:
            continue  # reported as unexpected by load_state_dict's check
        if tuple(value.shape) != tuple(want.shape):
            raise HeadFileError(f"{path}: tensor {key} has shape {tuple(value.shape)}, the head config needs "
                                f"{tuple(want.shape)}")
        if value.dtype.is_floating_point != want.dtype.is_floating_point:
            raise HeadFileError(f"{path}: tensor {key} is {value.dtype}, the head needs {want.dtype}")


def _fingerprint(t: torch.Tensor) -> torch.Tensor:
    return t.detach().to("cpu", torch.float32)


def save_head(head: GaussianCLIPHead, path: str | os.PathLike, clip: ClipBundle,
              metadata: dict[str, Any] | None = None) -> int:
    """Write ``head`` as safetensors (atomically); returns the file size in bytes.

    ``metadata`` adds string entries (training stage, steps, ...).
    """
    from safetensors.torch import save_file

    self_contained = clip.pretrained == "none"
    teacher = clip.model.visual.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    for key, value in head.state_dict().items():
        if key.startswith("trunk.") and not self_contained:
            ref = teacher.get(key[len("trunk."):])
            if ref is not None and ref.shape == value.shape and torch.equal(_fingerprint(ref), _fingerprint(value)):
                continue
        tensors[key] = value.detach().to("cpu").contiguous().clone()
    if self_contained:
        for key, value in clip.model.state_dict().items():
            if not key.startswith("visual."):
                tensors[f"clip.{key}"] = value.detach().to("cpu").contiguous().clone()
    from .. import __version__

    meta = {
        "format": HEAD_FORMAT,
        "format_version": HEAD_FORMAT_VERSION,
        "config": head.config.to_json(),
        "clip_model": clip.model_name,
        "pretrained": clip.pretrained,
        "quick_gelu": "1" if clip.quick_gelu else "0",
        "embed_dim": str(head.embed_dim),
        "num_tokens": str(head.num_tokens),
        "self_contained": "1" if self_contained else "0",
        "gscodec_version": __version__,
    }
    for k, v in (metadata or {}).items():
        meta[str(k)] = v if isinstance(v, str) else json.dumps(v)
    path = Path(path)
    try:
        with atomic_path(path) as tmp:
            save_file(tensors, str(tmp), metadata=meta)
    except OSError as exc:
        raise HeadFileError(f"cannot write head file {path}: {exc.strerror or exc}") from None
    return path.stat().st_size


def read_head_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The metadata of a head file; raises :class:`HeadFileError` if it is not one."""
    from safetensors import safe_open

    if not Path(path).is_file():
        raise HeadFileError(f"head file {path} does not exist")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as exc:  # SafetensorError, OSError, ...
        raise HeadFileError(f"{path} is not a readable safetensors file ({exc})") from None
    if meta.get("format") != HEAD_FORMAT:
        raise HeadFileError(f"{path} is a safetensors file but not a gscodec CLIP head (no '{HEAD_FORMAT}' metadata)")
    if meta.get("format_version") != HEAD_FORMAT_VERSION:
        raise HeadFileError(f"{path}: unsupported head format version {meta.get('format_version')!r}")
    return meta


def load_head(path: str | os.PathLike, *, pretrained: str | None = None, device: str | torch.device = "cpu",
              cache_dir: str | None = None, resize_mode: str = "squash") -> tuple[GaussianCLIPHead, ClipBundle]:
    """Load a head file and its teacher (for the text tower and the frozen trunk).

    ``pretrained`` overrides the teacher weights recorded in the file (e.g. a
    local checkpoint path of the same weights). Raises :class:`HeadFileError`
    and the teacher's errors (:class:`~gscodec.clip.teacher.WeightsUnavailableError`, ...).
    """
    from safetensors.torch import load_file

    meta = read_head_metadata(path)
    try:
        cfg = HeadConfig.from_json(meta["config"])
        model_name = meta["clip_model"]
        check_head_config(cfg, where="its head config")
    except (KeyError, ConfigError) as exc:
        raise HeadFileError(f"{path}: invalid head metadata ({exc})") from None
    if cfg.clip_model != model_name:
        raise HeadFileError(f"{path}: its head config names the model {cfg.clip_model!r} but the file records "
                            f"{model_name!r}; the file is inconsistent")
    try:
        tensors = load_file(str(path), device="cpu")
    except Exception as exc:
        raise HeadFileError(f"cannot read the tensors of {path} ({exc})") from None
    self_contained = meta.get("self_contained") == "1"
    quick = meta.get("quick_gelu") == "1"
    use_stored_text = self_contained and pretrained is None
    weights = "none" if use_stored_text else (pretrained or meta.get("pretrained", "none"))
    clip = load_clip(model_name, weights, device=device, cache_dir=cache_dir, quick_gelu=quick,
                     resize_mode=resize_mode)
    if use_stored_text:
        text = {k[len("clip."):]: v for k, v in tensors.items() if k.startswith("clip.")}
        result = clip.model.load_state_dict(text, strict=False)
        missing = [k for k in result.missing_keys if not k.startswith("visual.")]
        if missing or result.unexpected_keys:
            raise HeadFileError(f"{path}: stored text tower does not match {model_name} "
                                f"(missing {missing[:3]}, unexpected {result.unexpected_keys[:3]})")
        clip.pretrained = "none"
    try:
        check_head_config(cfg, trunk_width=clip.model.visual.transformer.width, where="its head config")
    except ConfigError as exc:
        raise HeadFileError(f"{path}: {exc}") from None
    head = GaussianCLIPHead(cfg, clip.model.visual)
    own = {k: v for k, v in tensors.items() if not k.startswith("clip.")}
    _check_tensors(path, head, own)
    try:
        result = head.load_state_dict(own, strict=False)
    except RuntimeError as exc:
        raise HeadFileError(f"{path}: tensors do not fit the head ({str(exc).splitlines()[0]})") from None
    missing = [k for k in result.missing_keys if not k.startswith("trunk.")]
    if missing or result.unexpected_keys:
        raise HeadFileError(f"{path}: tensors do not fit the head (missing {missing[:3]}, "
                            f"unexpected {result.unexpected_keys[:3]})")
    head.to(device).eval()
    head.set_trainable("none")
    return head, clip


__all__ = ["CONFIG_DIR", "HEAD_FORMAT", "HeadFileError", "UnknownHeadError", "add_head_config", "check_head_config",
           "create_head", "get_head_config", "list_heads", "load_head", "read_head_metadata", "save_head"]
