"""The compressed-domain CLIP head: embed `.gsi` files from their Gaussians, without rendering pixels.

Pipeline: per-Gaussian features (:mod:`.stem`) -> perceiver resampler to K
tokens (:mod:`.resampler`), or cell pooling (:mod:`.cells`: each patch token
a sum of per-Gaussian, per-cell terms) -> the frozen transformer of an
open_clip ViT (:mod:`.model`). Heads are built from JSON configs (:mod:`.factory`), trained
by distillation and contrastive learning (:mod:`.train`), and used for
zero-shot classification and text search (:mod:`.zeroshot`).

Library use::

    from gscodec.clip import load_head, embed_files, text_classifier
    head, clip = load_head("head.safetensors")
    emb = embed_files(head, ["cat.gsi"])                     # (1, E), L2-normalized
"""

from ..extras import require

require("clip", "the CLIP head (gscodec.clip)", ("torch", "open_clip"))
from .config import CellConfig, ClipHeadError, ConfigError, HeadConfig, ResamplerConfig, StemConfig
from .data import (DataError, GsiDataset, GsiTarDataset, SplatBatch, batch_from_gaussians, collate_splats,
                   gaussians_to_params, open_dataset)
from .factory import (HeadFileError, UnknownHeadError, add_head_config, create_head, get_head_config, list_heads,
                      load_head, read_head_metadata, save_head)
from .model import GaussianCLIPHead
from .teacher import (ClipBundle, UnknownModelError, WeightsLoadError, WeightsUnavailableError, load_clip,
                      register_model_configs, resolve_weights)
from .zeroshot import (Prediction, embed_files, embed_gaussians, embed_rendered, get_templates, imagenet_classnames,
                       predict, template_sets, text_classifier)

__all__ = [
    "CellConfig", "ClipBundle", "ClipHeadError", "ConfigError", "DataError", "GaussianCLIPHead", "GsiDataset", "GsiTarDataset",
    "HeadConfig", "HeadFileError", "Prediction", "ResamplerConfig", "SplatBatch", "StemConfig", "UnknownHeadError",
    "UnknownModelError", "WeightsLoadError", "WeightsUnavailableError", "add_head_config", "batch_from_gaussians",
    "collate_splats", "create_head", "embed_files", "embed_gaussians", "embed_rendered", "gaussians_to_params",
    "get_head_config", "get_templates", "imagenet_classnames", "list_heads", "load_clip", "load_head", "open_dataset",
    "predict", "read_head_metadata", "register_model_configs", "resolve_weights", "save_head", "template_sets",
    "text_classifier",
]
