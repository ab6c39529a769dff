"""Published rate-distortion points of other codecs, for reference curves (not measured here)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PublishedCurve:
    """An RD curve read off a paper: ``bpp`` and average ``psnr`` (dB) on the dataset it names."""

    name: str
    label: str
    source: str
    bpp: tuple[float, ...]
    psnr: tuple[float, ...]


GAUSSIANIMAGE_KODAK = PublishedCurve(
    name="gaussianimage-published",
    label="GaussianImage (published, Kodak)",
    source="GaussianImage (Zhang et al., ECCV 2024), RD curve on the 24 Kodak images, values read off the paper",
    bpp=(0.12, 0.43, 0.72, 1.0),
    psnr=(24.7, 27.4, 28.7, 29.7),
)
"""GaussianImage's codec on Kodak (768x512). A different image set: compare shapes, not decimals."""

__all__ = ["GAUSSIANIMAGE_KODAK", "PublishedCurve"]
