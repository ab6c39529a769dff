"""Helpers shared by the benchmark scripts: photo discovery, CLIP-style crops, results files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

PHOTO_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp"}


def list_photos(folder: str | Path, limit: int | None = None) -> list[Path]:
    """Image files directly in ``folder``, sorted by name."""
    paths = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in PHOTO_SUFFIXES)
    if not paths:
        raise SystemExit(f"no photos found in {folder}")
    return paths[:limit] if limit else paths


def load_rgb(path: Path, size: int | None = None) -> np.ndarray:
    """``(H, W, 3)`` uint8; with ``size``, the shorter side resized to it and centre-cropped square (CLIP style)."""
    with Image.open(path) as im:
        im = im.convert("RGB")
        if size:
            scale = size / min(im.size)
            im = im.resize((max(size, round(im.width * scale)), max(size, round(im.height * scale))), Image.BICUBIC)
            left, top = (im.width - size) // 2, (im.height - size) // 2
            im = im.crop((left, top, left + size, top + size))
        return np.asarray(im).copy()


def write_results(path: str | Path, name: str, description: str, results: dict) -> None:
    """Write one CompressAI-style results file: ``{name, description, results: {metric: [values]}}``."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps({"name": name, "description": description, "results": results}, indent=1))
