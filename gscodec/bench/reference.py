"""Published rate-distortion points of other codecs, for reference curves (not measured here).

A published curve is an average over one image set (:attr:`PublishedCurve.image_set`): ``gsi bench``
computes a BD-rate against it only when the benchmark ran on exactly that set, recognised by its file
names (:func:`is_image_set`); on other images the curve is drawn, labelled with its set, for its shape.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class PublishedCurve:
    """An RD curve read off a paper: ``bpp`` and average ``psnr`` (dB) on the dataset it names."""

    name: str
    label: str
    source: str
    image_set: str
    image_names: frozenset[str]
    bpp: tuple[float, ...]
    psnr: tuple[float, ...]


KODAK_NAMES = frozenset(f"kodim{i:02d}" for i in range(1, 25))
"""The Kodak set's 24 image names (``kodim01`` .. ``kodim24``, as distributed), without extension."""


def is_image_set(names: Iterable[str], image_names: frozenset[str]) -> bool:
    """Whether the benchmark's images ``names`` (paths relative to its folder) are exactly ``image_names``:
    each file name without extension, lower case, once each, all of them and no others."""
    stems = [os.path.splitext(os.path.basename(n))[0].lower() for n in names]
    return len(stems) == len(image_names) and set(stems) == image_names


GAUSSIANIMAGE_KODAK = PublishedCurve(
    name="gaussianimage-published",
    label="GaussianImage (published, Kodak only)",
    source="GaussianImage (Zhang et al., ECCV 2024), RD curve on the 24 Kodak images, values read off the paper",
    image_set="Kodak",
    image_names=KODAK_NAMES,
    bpp=(0.12, 0.43, 0.72, 1.0),
    psnr=(24.7, 27.4, 28.7, 29.7),
)
"""GaussianImage's codec on Kodak (768x512): a BD-rate against it only on those 24 images; elsewhere it is drawn,
for its shape."""

__all__ = ["GAUSSIANIMAGE_KODAK", "KODAK_NAMES", "PublishedCurve", "is_image_set"]
