"""torch Datasets of `.gsi` files: rendered pixels or the Gaussian parameters, one choice per dataset.

::

    from torch.utils.data import DataLoader
    from gscodec.datasets import GsiImageDataset, collate_params

    pixels = GsiImageDataset("splats/", output="pixels", width=224, height=224)
    x = next(iter(DataLoader(pixels, batch_size=32)))          # (32, 3, 224, 224) float32 in [0, 1]

    params = GsiImageDataset("splats/", output="params")
    batch = next(iter(DataLoader(params, batch_size=32, collate_fn=collate_params)))
    batch.params, batch.mask                                    # (32, N_max, 8) float32, (32, N_max) bool

Samples (``output``):

* ``"pixels"``: ``(3, H, W)`` float32 in ``[0, 1]`` (channels first, as
  torchvision's ``ToTensor``), rendered at the stored size or at
  ``width``/``height``/``scale`` (:func:`gscodec.render`'s sizes; renders
  below the stored size are anti-aliased, see :func:`gscodec.wds.render_pixels`);
  ``channels_last=True`` gives ``(H, W, 3)``. Give both ``width`` and
  ``height`` to batch files of different sizes.
* ``"params"``: ``(N, 8)`` float32 ``x, y, l11, l21, l22, r, g, b`` in the
  stored image's pixels (:meth:`gscodec.GaussianImage.params`); ``N`` differs
  between files, so batch them with :func:`collate_params`.

A ``transform`` is applied to each sample. Files are read when their sample is
asked for; an unreadable file raises :class:`gscodec.GsiError` or ``OSError``
naming it. Tar shards of `.gsi` members go through webdataset with the handler
of :mod:`gscodec.wds`. This module needs torch (``pip install 'gscodec[encode]'``).
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from .extras import require

require("encode", "gscodec.datasets (torch Datasets)", ("torch",))
import torch  # noqa: E402
from torch.utils.data import Dataset  # noqa: E402

from .format import read  # noqa: E402
from .wds import render_pixels  # noqa: E402

OUTPUTS = ("pixels", "params")
"""The sample kinds of :class:`GsiImageDataset`."""


def find_gsi(source: str | os.PathLike | Sequence[str | os.PathLike]) -> list[Path]:
    """The `.gsi` files of ``source``: a folder (searched recursively), a glob pattern, a file, or a list of those;
    sorted within each folder or pattern, in the given order otherwise. Raises ``FileNotFoundError`` when a
    source matches nothing."""
    sources = [source] if isinstance(source, (str, os.PathLike)) else list(source)
    files: list[Path] = []
    for item in sources:
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.suffix.lower() == ".gsi" and p.is_file())
        elif path.is_file():
            found = [path]
        else:
            found = sorted(Path(p) for p in glob.glob(str(item), recursive=True) if Path(p).is_file())
        if not found:
            raise FileNotFoundError(f"no .gsi files in {str(item)!r}")
        files.extend(found)
    return files


class GsiImageDataset(Dataset):
    """Map-style dataset of `.gsi` files giving rendered pixels or Gaussian parameters (see the module docs).

    Args:
        source: a folder (recursive), a glob pattern, a file or a list of them (:func:`find_gsi`).
        output: ``"pixels"`` or ``"params"``.
        width, height, scale: the render size of ``"pixels"`` (default: each file's stored size).
        antialias: low-pass renders below the stored size (``"pixels"``).
        channels_last: ``"pixels"`` as ``(H, W, 3)`` instead of ``(3, H, W)``.
        transform: applied to each sample before it is returned.

    Attributes:
        files: the files, in index order.
    """

    def __init__(self, source: str | os.PathLike | Sequence[str | os.PathLike], output: str = "pixels", *,
                 width: int | None = None, height: int | None = None, scale: float | None = None,
                 antialias: bool = True, channels_last: bool = False,
                 transform: Callable[[torch.Tensor], Any] | None = None) -> None:
        if output not in OUTPUTS:
            raise ValueError(f"unknown output {output!r}; valid: {', '.join(OUTPUTS)}")
        if output == "params" and (width is not None or height is not None or scale is not None):
            raise ValueError("width, height and scale set the size of rendered pixels, not of parameters")
        if scale is not None and (width is not None or height is not None):
            raise ValueError("give either scale or width/height, not both")
        self.files = find_gsi(source)
        self.output = output
        self.width, self.height, self.scale = width, height, scale
        self.antialias = antialias
        self.channels_last = channels_last
        self.transform = transform

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> Any:
        g = read(self.files[index]).gaussians
        if self.output == "params":
            sample = torch.from_numpy(g.params())
        else:
            pixels = render_pixels(g, self.width, self.height, self.scale, self.antialias)
            sample = torch.from_numpy(pixels).float().div_(255.0)
            if not self.channels_last:
                sample = sample.permute(2, 0, 1).contiguous()
        return sample if self.transform is None else self.transform(sample)


@dataclass
class ParamsBatch:
    """Parameters of files with different Gaussian counts, padded to the largest.

    Attributes:
        params: ``(B, N_max, 8)`` float32; padding rows are a unit Gaussian of colour 0 at the origin
            (``[0, 0, 1, 0, 1, 0, 0, 0]``), so code that ignores the mask still sees valid Gaussians that add nothing.
        mask: ``(B, N_max)`` bool, True for real Gaussians.
        counts: ``(B,)`` int64 real Gaussians per sample.
    """

    params: torch.Tensor
    mask: torch.Tensor
    counts: torch.Tensor

    def __len__(self) -> int:
        return int(self.params.shape[0])

    def to(self, device: str | torch.device, non_blocking: bool = False) -> "ParamsBatch":
        """The tensors moved to ``device``."""
        return ParamsBatch(*(t.to(device, non_blocking=non_blocking) for t in (self.params, self.mask, self.counts)))


_PAD = (0.0, 0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0)


def collate_params(samples: Sequence[torch.Tensor]) -> ParamsBatch:
    """Pad ``(N_i, 8)`` parameter samples (``output="params"``) into a :class:`ParamsBatch`.

    Raises ``ValueError`` for an empty batch or a sample of another shape.
    """
    if not samples:
        raise ValueError("cannot collate an empty batch")
    for s in samples:
        if not isinstance(s, torch.Tensor) or s.ndim != 2 or s.shape[1] != 8:
            raise ValueError(f"samples must be (N, 8) tensors of parameters, got {getattr(s, 'shape', type(s))}")
    counts = torch.tensor([s.shape[0] for s in samples], dtype=torch.int64)
    n_max = max(1, int(counts.max()))
    params = torch.tensor(_PAD, dtype=torch.float32).repeat(len(samples), n_max, 1)
    mask = torch.zeros(len(samples), n_max, dtype=torch.bool)
    for i, s in enumerate(samples):
        params[i, : s.shape[0]] = s
        mask[i, : s.shape[0]] = True
    return ParamsBatch(params, mask, counts)


__all__ = ["GsiImageDataset", "OUTPUTS", "ParamsBatch", "collate_params", "find_gsi"]
