"""Head configurations: the JSON files in ``gscodec/clip/configs/`` as dataclasses.

A head config names the open_clip model whose vision transformer becomes the
frozen trunk (``clip_model``) with its default weights tag (``pretrained``),
the number ``num_tokens`` (K) of tokens the perceiver resampler produces, and
the settings of the splat stem and the resampler. The width of the tokens fed
to the trunk is not part of the config: it is the trunk's width, so one config
works with any open_clip ViT (``--model`` overrides ``clip_model``). The
resampler's inner width (``resampler.attn_dim``) is, and is independent of the
trunk.

JSON keys (every key optional except ``clip_model``; unknown keys are errors):
``clip_model``, ``pretrained``, ``num_tokens``, ``trainable_blocks``,
``name``, ``description``; ``stem``: ``fourier_bands``, ``max_frequency``,
``projection``, ``hidden``; ``resampler``: ``depth``, ``attn_dim``,
``heads``, ``mlp_ratio``, ``add_pos_embed``, ``output_norm``, ``spatial_bias``,
``spatial_sigma``; ``pooling``; ``cells``: ``hidden``, ``layers``,
``fourier_bands``, ``max_frequency`` (see the dataclasses below).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any


class ClipHeadError(Exception):
    """Base class of the errors of :mod:`gscodec.clip`."""


class ConfigError(ClipHeadError, ValueError):
    """A head config (JSON or arguments) is malformed or names something unknown."""


@dataclass(frozen=True)
class StemConfig:
    """Per-Gaussian features and their projection to the resampler's token width.

    That width is ``resampler.attn_dim`` (or the trunk width when that is
    ``None``).

    Attributes:
        fourier_bands: frequencies per axis of the positional Fourier features
            (geometric from 1 to ``max_frequency`` cycles per image side);
            0 disables them.
        max_frequency: highest frequency, in cycles per image side.
        projection: ``"linear"`` or ``"mlp"`` (two layers with GELU).
        hidden: hidden width of the MLP projection (ignored for ``"linear"``).
    """

    fourier_bands: int = 16
    max_frequency: float = 64.0
    projection: str = "mlp"
    hidden: int = 1024

    def __post_init__(self) -> None:
        if self.fourier_bands < 0:
            raise ConfigError(f"stem.fourier_bands must be >= 0, got {self.fourier_bands}")
        if not self.max_frequency >= 1.0:
            raise ConfigError(f"stem.max_frequency must be >= 1, got {self.max_frequency}")
        if self.projection not in ("linear", "mlp"):
            raise ConfigError(f"stem.projection must be 'linear' or 'mlp', got {self.projection!r}")
        if self.projection == "mlp" and self.hidden < 1:
            raise ConfigError(f"stem.hidden must be positive for an MLP projection, got {self.hidden}")


@dataclass(frozen=True)
class ResamplerConfig:
    """The perceiver resampler: K learned queries cross-attending to the Gaussian tokens.

    The cross-attention runs in an inner width ``attn_dim`` narrower than the
    trunk's: the stem projects every Gaussian straight to ``attn_dim``, the
    keys and values of the N Gaussian tokens, the K queries and the
    feed-forward block are all at that width, and one linear layer (plus a
    layer norm) lifts the K output tokens to the trunk width. With N of about
    900 Gaussians against K of 98 or 196 tokens, the per-Gaussian work (stem,
    key/value projection) dominates, so its width sets the cost.

    Attributes:
        depth: cross-attention (+ feed-forward) layers.
        attn_dim: inner width of the stem tokens, the attention and the
            latents; ``None`` runs everything at the trunk width (the original
            design: with ViT-B-16 and 900 Gaussians, stem + resampler took
            about 16% of the trunk's time at K = 196 and 28% at K = 98,
            against about 1.3% and 2% at ``attn_dim`` 128, 2.8% and 5% at 256).
        heads: attention heads (``attn_dim`` must be divisible by it);
            ``None`` uses heads of width 64 (``attn_dim // 64``, at least 1),
            or the trunk's head count when ``attn_dim`` is ``None``.
        mlp_ratio: feed-forward hidden width relative to ``attn_dim``; 0 drops
            the feed-forward block.
        add_pos_embed: add the trunk's patch positional embedding, resampled to
            a grid of K slots, to the output tokens (a fixed per-slot offset, so
            the trunk sees tokens shaped like its patch tokens; it does not
            depend on the order of the Gaussians).
        output_norm: layer-normalize the output tokens (False: a free linear
            output, which can match the trunk's patch tokens, whose norms vary).
        spatial_bias: add to the attention logit of slot ``k`` (a cell of the
            K-slot grid) for Gaussian ``i`` a learned multiple (per layer and
            head, starting at 1) of the log of their overlap,
            ``log integral g_i(x) N(x; c_k, s^2 I) dx`` with ``c_k`` the cell's
            centre and ``s = spatial_sigma`` cells: slots start out reading the
            Gaussians of their own cell, as patch tokens read their patch.
        spatial_sigma: the window's standard deviation in cells.
    """

    depth: int = 1
    heads: int | None = None
    mlp_ratio: float = 4.0
    add_pos_embed: bool = True
    attn_dim: int | None = None
    output_norm: bool = True
    spatial_bias: bool = False
    spatial_sigma: float = 0.5

    def __post_init__(self) -> None:
        if self.depth < 1:
            raise ConfigError(f"resampler.depth must be >= 1, got {self.depth}")
        if self.heads is not None and self.heads < 1:
            raise ConfigError(f"resampler.heads must be >= 1, got {self.heads}")
        if not self.mlp_ratio >= 0:
            raise ConfigError(f"resampler.mlp_ratio must be >= 0, got {self.mlp_ratio}")
        if not self.spatial_sigma > 0:
            raise ConfigError(f"resampler.spatial_sigma must be > 0, got {self.spatial_sigma}")
        if self.attn_dim is not None:
            if self.attn_dim < 1:
                raise ConfigError(f"resampler.attn_dim must be >= 1, got {self.attn_dim}")
            if self.attn_dim % self.num_heads(self.attn_dim):
                raise ConfigError(f"resampler.attn_dim {self.attn_dim} is not divisible by "
                                  f"{self.num_heads(self.attn_dim)} heads")

    def token_dim(self, width: int) -> int:
        """The resampler's inner width for a trunk of width ``width``."""
        return width if self.attn_dim is None else self.attn_dim

    def num_heads(self, width: int, trunk_heads: int | None = None) -> int:
        """Attention heads at inner width ``width`` (see ``heads``)."""
        if self.heads is not None:
            return self.heads
        if self.attn_dim is None and trunk_heads is not None:
            return trunk_heads
        return max(1, width // 64)


@dataclass(frozen=True)
class CellConfig:
    """Cell pooling (:mod:`gscodec.clip.cells`): tokens as sums of per-Gaussian, per-cell terms.

    The pair MLP has one output per pixel of a cell at the trunk's input
    resolution (``P x P`` for a ViT with ``P``-pixel patches); each cell sums
    ``3 P^2`` values (the outputs times the colour), mapped linearly to the
    trunk width.

    Attributes:
        hidden: width of the pair MLP's hidden layers.
        layers: hidden layers of the pair MLP (0: linear in the features).
        fourier_bands: Fourier frequencies of the mean's offset from the cell
            centre, geometric (octaves) up to ``max_frequency``.
        max_frequency: highest frequency, in cycles per cell (a cell of
            ``P`` pixels resolves ``P / 2``).
    """

    hidden: int = 256
    layers: int = 2
    fourier_bands: int = 4
    max_frequency: float = 4.0

    def __post_init__(self) -> None:
        if self.hidden < 1:
            raise ConfigError(f"cells.hidden must be >= 1, got {self.hidden}")
        if self.layers < 0 or self.fourier_bands < 0:
            raise ConfigError(f"cells.layers and cells.fourier_bands must be >= 0, got {self.layers}, "
                              f"{self.fourier_bands}")
        if not self.max_frequency > 0:
            raise ConfigError(f"cells.max_frequency must be > 0, got {self.max_frequency}")


POOLINGS = ("resampler", "cells")
"""How the Gaussians become the trunk's K tokens: the perceiver resampler (stem + cross-attention) or cell pooling."""


@dataclass(frozen=True)
class HeadConfig:
    """A whole head: stem, resampler, K, the open_clip trunk and its default weights.

    Attributes:
        clip_model: open_clip model name (any ViT in ``open_clip.list_models()``).
        pretrained: default weights tag of ``clip_model`` (``"none"`` = random init).
        num_tokens: K, the number of tokens fed to the trunk (98 and 196 for ViT-B-16).
        pooling: ``"resampler"`` (``stem`` + ``resampler``) or ``"cells"`` (``cells``; the
            resampler's ``add_pos_embed`` still applies, its other settings and the stem's are unused).
        stem, resampler, cells: see :class:`StemConfig`, :class:`ResamplerConfig`, :class:`CellConfig`.
        trainable_blocks: leading trunk blocks trained in the contrastive stage (paper: 2).
        name: the config's registry name (informational).
        description: free text.
    """

    clip_model: str
    pretrained: str = "none"
    num_tokens: int = 196
    stem: StemConfig = field(default_factory=StemConfig)
    resampler: ResamplerConfig = field(default_factory=ResamplerConfig)
    pooling: str = "resampler"
    cells: CellConfig = field(default_factory=CellConfig)
    trainable_blocks: int = 2
    name: str = ""
    description: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.clip_model, str) or not self.clip_model:
            raise ConfigError("clip_model must be a non-empty open_clip model name")
        if self.num_tokens < 1:
            raise ConfigError(f"num_tokens must be >= 1, got {self.num_tokens}")
        if self.pooling not in POOLINGS:
            raise ConfigError(f"pooling must be one of {', '.join(POOLINGS)}, got {self.pooling!r}")
        if self.trainable_blocks < 0:
            raise ConfigError(f"trainable_blocks must be >= 0, got {self.trainable_blocks}")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (the inverse of :meth:`from_dict`)."""
        return asdict(self)

    def to_json(self) -> str:
        """Compact JSON text of :meth:`to_dict`."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_dict(cls, data: dict[str, Any], name: str = "") -> "HeadConfig":
        """Build and validate a config from a JSON dict; unknown keys raise :class:`ConfigError`."""
        if not isinstance(data, dict):
            raise ConfigError(f"a head config must be a JSON object, got {type(data).__name__}")
        data = dict(data)
        try:
            stem = _sub(StemConfig, data.pop("stem", {}), "stem")
            resampler = _sub(ResamplerConfig, data.pop("resampler", {}), "resampler")
            cells = _sub(CellConfig, data.pop("cells", {}), "cells")
            known = {f.name for f in fields(cls)} - {"stem", "resampler", "cells"}
            unknown = sorted(set(data) - known)
            if unknown:
                raise ConfigError(f"unknown head config keys: {', '.join(unknown)}")
            if name and not data.get("name"):
                data["name"] = name
            return cls(stem=stem, resampler=resampler, cells=cells, **data)
        except TypeError as exc:
            raise ConfigError(f"invalid head config: {exc}") from None

    @classmethod
    def from_json(cls, text: str, name: str = "") -> "HeadConfig":
        """Parse JSON text (see :meth:`from_dict`)."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"head config is not valid JSON: {exc}") from None
        return cls.from_dict(data, name)

    def with_overrides(self, **changes: Any) -> "HeadConfig":
        """A copy with the non-``None`` ``changes`` applied (e.g. ``clip_model``, ``num_tokens``)."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


def _sub(cls: type, data: Any, label: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{label} must be a JSON object")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"unknown {label} config keys: {', '.join(unknown)}")
    return cls(**data)
