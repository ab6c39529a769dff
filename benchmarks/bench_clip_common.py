"""Helpers of the CLIP-head benchmarks (not a benchmark itself): photos -> crops -> `.gsi` files, cached.

`.gsi` files come from ``gscodec.fit.fit_batch`` when it is importable; if
not, from random Gaussians of the requested count whose colours are sampled
from the image (shapes sized to the mean spacing), which has a realistic size
and Gaussian count but not a realistic picture. :func:`encode` returns which
of the two was used, for the benchmarks to print.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import gscodec

PHOTO_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp"}


def list_photos(folder: str | Path) -> list[Path]:
    """Image files directly in ``folder``, sorted by name."""
    paths = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in PHOTO_SUFFIXES)
    if not paths:
        raise SystemExit(f"no photos found in {folder}")
    return paths


def load_rgb(path: Path) -> Image.Image:
    """The photo as an RGB PIL image."""
    with Image.open(path) as im:
        return im.convert("RGB")


def center_square(im: Image.Image, size: int) -> np.ndarray:
    """Shorter side to ``size`` (bicubic), centre crop: ``(size, size, 3)`` uint8."""
    scale = size / min(im.size)
    im = im.resize((max(size, round(im.width * scale)), max(size, round(im.height * scale))), Image.BICUBIC)
    left, top = (im.width - size) // 2, (im.height - size) // 2
    return np.asarray(im.crop((left, top, left + size, top + size)))


def random_crop(im: Image.Image, size: int, rng: np.random.Generator, min_scale: float = 0.25) -> np.ndarray:
    """A random square crop (side ``min_scale..1`` of the shorter side), random flip, resized to ``size``."""
    side = int(min(im.size) * math.sqrt(rng.uniform(min_scale ** 2, 1.0)))
    left = int(rng.integers(0, im.width - side + 1))
    top = int(rng.integers(0, im.height - side + 1))
    crop = im.crop((left, top, left + side, top + side)).resize((size, size), Image.BICUBIC)
    if rng.random() < 0.5:
        crop = crop.transpose(Image.FLIP_LEFT_RIGHT)
    return np.asarray(crop)


def random_gaussians_like(image: np.ndarray, points: int, seed: int) -> gscodec.GaussianImage:
    """``points`` random Gaussians over ``image``: uniform centres, colours of the pixel under each centre."""
    h, w, _ = image.shape
    gen = torch.Generator().manual_seed(seed)
    means = torch.rand(points, 2, generator=gen) * torch.tensor([w, h], dtype=torch.float32)
    spacing = math.sqrt(w * h / points)
    l11 = spacing * (0.4 + 0.4 * torch.rand(points, generator=gen))
    l22 = spacing * (0.4 + 0.4 * torch.rand(points, generator=gen))
    l21 = 0.3 * spacing * torch.randn(points, generator=gen)
    px = torch.from_numpy(image.astype(np.float32) / 255.0)
    xi = means[:, 0].long().clamp(0, w - 1)
    yi = means[:, 1].long().clamp(0, h - 1)
    colors = px[yi, xi] * 0.35
    return gscodec.GaussianImage(w, h, means, torch.stack([l11, l21, l22], 1), colors)


def fit_method() -> str:
    """``"gscodec.fit"`` if the fitter is importable, else ``"random Gaussians"``."""
    try:
        import gscodec.fit  # noqa: F401
    except Exception:
        return "random Gaussians"
    return "gscodec.fit"


def encode(images: list[np.ndarray], outputs: list[Path], points: int, iterations: int,
           batch: int = 16, log=print) -> str:
    """Write ``images[i]`` as `.gsi` to ``outputs[i]`` unless a readable file is already there.

    Same-size images are fitted ``batch`` at a time. Returns the method used
    (see :func:`fit_method`).
    """
    method = fit_method()
    todo = []
    for i, out in enumerate(outputs):
        try:
            gscodec.read(out)
        except (OSError, gscodec.GsiError):
            todo.append(i)
    if not todo:
        return method
    log(f"encoding {len(todo)} image(s) to .gsi with {method} ({points} Gaussians"
        + (f", {iterations} iterations)" if method == "gscodec.fit" else ")"))
    start = time.perf_counter()
    if method == "gscodec.fit":
        from gscodec.fit import FitConfig, fit_batch

        cfg = FitConfig(points=points, iterations=iterations)
        by_size: dict[tuple, list[int]] = {}
        for i in todo:
            by_size.setdefault(images[i].shape, []).append(i)
        done = 0
        for idx in by_size.values():
            for j in range(0, len(idx), batch):
                chunk = idx[j:j + batch]
                for i, result in zip(chunk, fit_batch([images[i] for i in chunk], cfg)):
                    gscodec.write(result.gaussians, outputs[i])
                done += len(chunk)
                log(f"  {done}/{len(todo)} fitted ({time.perf_counter() - start:.0f} s)")
    else:
        for i in todo:
            gscodec.write(random_gaussians_like(images[i], points, i), outputs[i])
    return method
