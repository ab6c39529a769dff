"""Loading `.gsi` files for the head: datasets of per-Gaussian tensors and a padding collate.

A sample is a dict::

    {"params": (N, 8) float32  x, y, l11, l21, l22, r, g, b (pixels),
     "size":   (2,) float32    width, height,
     "key":    str,            the file (or tar member key),
     "index":  int,            position in a map-style dataset (-1 for tar streams),
     "caption": str,           when captions are known,
     "image":  (3, S, S)       the teacher's input from the original image, when asked for,
     "target": (E,)            the teacher's cached embedding (distillation sets), when known}

:func:`collate_splats` pads a list of samples to the largest ``N`` of the batch
and returns a :class:`SplatBatch` whose ``mask`` is True for real Gaussians.
Padding holds a harmless unit Gaussian of colour 0, so features stay finite.

Sources of captioned pairs (contrastive stage): a folder with ``NAME.txt`` next
to ``NAME.gsi``, a CSV ``path,caption`` (header optional; paths relative to the
CSV), or webdataset-style tar shards with ``KEY.gsi`` + ``KEY.txt`` members.
For distillation, the original image ``NAME.png``/``.jpg``/... lies next to
``NAME.gsi`` or under an images folder with the same relative path, a CSV
column ``image``, or a ``KEY.jpg``/``KEY.png`` tar member.
"""

from __future__ import annotations

import csv
import glob
import os
import random
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import torch
from torch.utils.data import Dataset, IterableDataset, get_worker_info

from ..files import open_regular
from ..format import GsiError, decode, read
from ..gaussians import GaussianImage
from ..imageio import load_image, load_image_bytes
from ..limits import MAX_SAMPLE_BYTES
from ..shards.tar import ShardError, iter_samples
from .config import ClipHeadError
from .stem import PARAMS

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".ppm")
_PAD = torch.tensor([0.0, 0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0])


class DataError(ClipHeadError):
    """A training or classification data source is missing, empty or malformed."""


def gaussians_to_params(g: GaussianImage) -> torch.Tensor:
    """``(N, 8)`` float32 ``x, y, l11, l21, l22, r, g, b`` of a :class:`GaussianImage`."""
    return torch.from_numpy(g.params())


def sample_from_gaussians(g: GaussianImage, key: str = "", index: int = -1) -> dict[str, Any]:
    """A dataset sample (see the module docstring) for in-memory Gaussians."""
    return {"params": gaussians_to_params(g), "size": torch.tensor([float(g.width), float(g.height)]),
            "key": key, "index": index}


@dataclass
class SplatBatch:
    """A padded batch.

    Attributes:
        params: ``(B, N, 8)`` raw Gaussian parameters, padded.
        mask: ``(B, N)`` bool, True for real Gaussians, False for padding.
        sizes: ``(B, 2)`` image ``(width, height)``.
        keys: file names or tar keys.
        indices: ``(B,)`` dataset indices (-1 for streams).
        captions: one per sample, or None.
        images: ``(B, 3, S, S)`` teacher inputs, or None.
        targets: ``(B, E)`` cached teacher embeddings (L2-normalized), or None.
    """

    params: torch.Tensor
    mask: torch.Tensor
    sizes: torch.Tensor
    keys: list[str] = field(default_factory=list)
    indices: torch.Tensor | None = None
    captions: list[str] | None = None
    images: torch.Tensor | None = None
    targets: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.params.shape[0])

    def to(self, device: str | torch.device, non_blocking: bool = False) -> "SplatBatch":
        """The tensors moved to ``device``."""
        mv = lambda t: None if t is None else t.to(device, non_blocking=non_blocking)  # noqa: E731
        return SplatBatch(mv(self.params), mv(self.mask), mv(self.sizes), self.keys, self.indices, self.captions,
                          mv(self.images), mv(self.targets))

    def pin_memory(self) -> "SplatBatch":
        """Pinned host copies (used by ``DataLoader(pin_memory=True)``)."""
        pin = lambda t: None if t is None else t.pin_memory()  # noqa: E731
        return SplatBatch(pin(self.params), pin(self.mask), pin(self.sizes), self.keys, self.indices, self.captions,
                          pin(self.images), pin(self.targets))


def collate_splats(samples: Sequence[dict[str, Any] | None]) -> SplatBatch | None:
    """Pad samples to the batch's largest Gaussian count; ``None`` samples (unreadable files) are dropped.

    Returns ``None`` when no sample is left.
    """
    samples = [s for s in samples if s is not None]
    if not samples:
        return None
    b = len(samples)
    n_max = max(1, max(int(s["params"].shape[0]) for s in samples))
    params = _PAD.repeat(b, n_max, 1)
    mask = torch.zeros(b, n_max, dtype=torch.bool)
    for i, s in enumerate(samples):
        n = s["params"].shape[0]
        params[i, :n] = s["params"]
        mask[i, :n] = True
    sizes = torch.stack([s["size"] for s in samples])
    captions = [s["caption"] for s in samples] if all("caption" in s for s in samples) else None
    images = torch.stack([s["image"] for s in samples]) if all("image" in s for s in samples) else None
    targets = torch.stack([s["target"] for s in samples]) if all("target" in s for s in samples) else None
    indices = torch.tensor([int(s.get("index", -1)) for s in samples], dtype=torch.long)
    return SplatBatch(params, mask, sizes, [s["key"] for s in samples], indices, captions, images, targets)


def batch_from_gaussians(images: Sequence[GaussianImage]) -> SplatBatch:
    """Collate in-memory :class:`GaussianImage` objects into a :class:`SplatBatch`."""
    batch = collate_splats([sample_from_gaussians(g, str(i), i) for i, g in enumerate(images)])
    if batch is None:
        raise ValueError("no images given")
    return batch


def load_teacher_image(source: str | os.PathLike | bytes, transform: Callable, name: str = "image") -> torch.Tensor:
    """An original image (a path, or encoded bytes labelled ``name``) through ``transform`` (a PIL image to a
    tensor, e.g. the teacher's preprocessing).

    The pixels are the encoder's (:func:`gscodec.imageio.load_image`: EXIF orientation applied, alpha on white,
    16-bit and grey to 8-bit RGB), so the teacher sees what the `.gsi` was fitted to. Raises
    :class:`~gscodec.imageio.ImageReadError` (a ``ValueError``) for an unreadable image.
    """
    from PIL import Image

    pixels = load_image_bytes(source, name) if isinstance(source, bytes) else load_image(source)
    return transform(Image.fromarray(pixels))


class GsiDataset(Dataset):
    """Map-style dataset over `.gsi` files (optionally with captions and original images).

    Args:
        paths: `.gsi` files.
        captions: one caption per file, or None.
        images: one original image path per file (teacher input), or None.
        image_transform: PIL image -> tensor; required with ``images``.
        on_error: ``"skip"`` (warn and yield None, dropped by the collate) or ``"raise"``.
    """

    def __init__(self, paths: Sequence[str | os.PathLike], captions: Sequence[str] | None = None,
                 images: Sequence[str | os.PathLike] | None = None, image_transform: Callable | None = None,
                 on_error: str = "skip") -> None:
        self.paths = [str(p) for p in paths]
        if captions is not None and len(captions) != len(self.paths):
            raise ValueError("captions must have one entry per path")
        if images is not None and len(images) != len(self.paths):
            raise ValueError("images must have one entry per path")
        if images is not None and image_transform is None:
            raise ValueError("images need an image_transform")
        if on_error not in ("skip", "raise"):
            raise ValueError("on_error must be 'skip' or 'raise'")
        self.captions = list(captions) if captions is not None else None
        self.images = [str(p) for p in images] if images is not None else None
        self.image_transform = image_transform
        self.on_error = on_error

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict[str, Any] | None:
        path = self.paths[index]
        try:
            sample = sample_from_gaussians(read(path).gaussians, path, index)
            if self.images is not None:
                sample["image"] = load_teacher_image(self.images[index], self.image_transform)
        except (GsiError, OSError, ValueError) as exc:
            if self.on_error == "raise":
                raise
            warnings.warn(f"skipping {path}: {exc}", stacklevel=2)
            return None
        if self.captions is not None:
            sample["caption"] = self.captions[index]
        return sample


class GsiTarDataset(IterableDataset):
    """Stream of samples from webdataset-style tar shards (``KEY.gsi`` with ``KEY.txt`` and/or ``KEY.jpg``).

    Members of one sample must be adjacent in the tar (as webdataset writes
    them). Shards are divided among distributed ranks (rank ``r`` of ``w``
    reads shards ``r, r + w, ...``; see :meth:`set_rank`), then among the
    DataLoader workers of each rank, so every shard is read by exactly one
    worker of one process. Samples without a `.gsi` member, or without the
    caption or image that is required, are skipped; so are samples that the
    shard reader refuses unread (unsafe names, links and devices, the sample
    limits of :mod:`gscodec.limits`), with a warning.

    Args:
        shards: tar files (plain or compressed).
        need_caption: require a ``.txt`` member.
        image_transform: when given, require an image member and yield its transformed pixels.
        shuffle_buffer: > 0 shuffles within a buffer of this many samples (seeded by ``seed``, the epoch
            and the worker's place among all workers of all ranks).
        rank, world_size: this process's part of the shards (``0, 1``: all of them).
    """

    def __init__(self, shards: Sequence[str | os.PathLike], need_caption: bool = False,
                 image_transform: Callable | None = None, shuffle_buffer: int = 0, seed: int = 0,
                 rank: int = 0, world_size: int = 1) -> None:
        self.shards = [str(s) for s in shards]
        self.need_caption = need_caption
        self.image_transform = image_transform
        self.shuffle_buffer = shuffle_buffer
        self.seed = seed
        self.epoch = 0
        self.set_rank(rank, world_size)

    def set_epoch(self, epoch: int) -> None:
        """Reseed the shuffle for ``epoch``."""
        self.epoch = epoch

    def set_rank(self, rank: int, world_size: int) -> None:
        """Read only the shards of process ``rank`` of ``world_size``: ``shards[rank::world_size]``."""
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in 0..{world_size - 1}")
        self.rank, self.world_size = rank, world_size

    def rank_shards(self) -> list[str]:
        """The shards this process reads (all of them in a single process)."""
        return self.shards[self.rank::self.world_size]

    def _samples(self, shard: str) -> Iterator[dict[str, Any]]:
        """The usable samples of ``shard``, read by :func:`gscodec.shards.tar.iter_samples` under its limits.

        A sample with a member that is unsafe, not a regular file or over the
        sample limits (:data:`~gscodec.limits.MAX_SAMPLE_BYTES`,
        :data:`~gscodec.limits.MAX_SAMPLE_MEMBERS`) is skipped with a warning,
        unread; an unreadable or corrupt shard is skipped from there on, with a warning.
        """
        try:
            for sample in iter_samples(shard):
                if sample.rejected:
                    warnings.warn(f"skipping {shard}:{sample.key}: {sample.rejected[0][1]}", stacklevel=2)
                    continue
                s = self._make(shard, sample.key, {sample.extension(info): data for info, data in sample.members})
                if s is not None:
                    yield s
        except ShardError as exc:
            warnings.warn(f"skipping the rest of shard {shard}: {exc}", stacklevel=2)

    def _make(self, shard: str, key: str, parts: dict[str, bytes]) -> dict[str, Any] | None:
        if "gsi" not in parts:
            return None
        caption = parts.get("txt")
        if self.need_caption and caption is None:
            return None
        try:
            sample = sample_from_gaussians(decode(parts["gsi"]).gaussians, f"{shard}:{key}")
            if caption is not None:
                sample["caption"] = caption.decode("utf-8", errors="replace").strip()
            if self.image_transform is not None:
                img_ext = next((e for e in ("jpg", "jpeg", "png", "webp", "bmp", "tif", "tiff", "ppm")
                                if e in parts), None)
                if img_ext is None:
                    return None
                sample["image"] = load_teacher_image(parts[img_ext], self.image_transform, f"{key}.{img_ext}")
        except (GsiError, OSError, ValueError) as exc:
            warnings.warn(f"skipping {shard}:{key}: {exc}", stacklevel=2)
            return None
        return sample

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        mine = self.rank_shards()
        shards = mine if info is None else mine[info.id::info.num_workers]
        stream = (s for shard in shards for s in self._samples(shard))
        if self.shuffle_buffer <= 0:
            yield from stream
            return
        workers, wid = (1, 0) if info is None else (info.num_workers, info.id)
        rng = random.Random(hash((self.seed, self.epoch, self.rank * workers + wid)) & 0xFFFFFFFF)
        buf: list[dict[str, Any]] = []
        for s in stream:
            buf.append(s)
            if len(buf) >= self.shuffle_buffer:
                yield buf.pop(rng.randrange(len(buf)))
        rng.shuffle(buf)
        yield from buf


# --- discovering data -----------------------------------------------------------------------------------


def discover_gsi(inputs: Sequence[str | os.PathLike]) -> list[Path]:
    """`.gsi` files from files, folders (recursive) and glob patterns, sorted and de-duplicated.

    Raises :class:`DataError` for an input that matches nothing.
    """
    found: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found.extend(sorted(q for q in p.rglob("*.gsi") if q.is_file()))
        elif p.is_file():
            found.append(p)
        else:
            matches = sorted(Path(m) for m in glob.glob(str(item), recursive=True))
            if not matches:
                raise DataError(f"{item}: no such file or folder")
            found.extend(m for m in matches if m.is_file())
    seen, out = set(), []
    for p in found:
        if p not in seen:
            seen.add(p)
            out.append(p)
    return out


def _read_caption(path: Path) -> str:
    """The stripped text of the caption file ``path``; ``""`` when it does not exist, and with a warning when it is
    not a regular file or holds more than :data:`~gscodec.limits.MAX_SAMPLE_BYTES` (it is then not read)."""
    try:
        with open_regular(path) as fh:
            size = os.fstat(fh.fileno()).st_size
            if size > MAX_SAMPLE_BYTES:
                warnings.warn(f"caption {path} has {size:,} bytes, over the limit of {MAX_SAMPLE_BYTES:,}; "
                              "not read", stacklevel=2)
                return ""
            data = fh.read(MAX_SAMPLE_BYTES)
    except FileNotFoundError:
        return ""
    except OSError as exc:
        warnings.warn(f"caption {path} not read: {exc.strerror or exc}", stacklevel=2)
        return ""
    return data.decode("utf-8", errors="replace").strip()


def _find_original(gsi: Path, root: Path | None, images_dir: Path | None) -> Path | None:
    candidates = []
    if images_dir is not None:
        rel = gsi.relative_to(root) if root is not None and gsi.is_relative_to(root) else Path(gsi.name)
        candidates += [images_dir / rel.with_suffix(ext) for ext in IMAGE_EXTENSIONS]
        candidates += [images_dir / (gsi.stem + ext) for ext in IMAGE_EXTENSIONS]
    candidates += [gsi.with_suffix(ext) for ext in IMAGE_EXTENSIONS]
    candidates += [gsi.with_suffix(ext.upper()) for ext in IMAGE_EXTENSIONS]
    return next((c for c in candidates if c.is_file()), None)


def read_pairs_csv(path: str | os.PathLike) -> list[dict[str, str]]:
    """Rows of a CSV as dicts with ``path`` and ``caption`` and/or ``image`` (paths made absolute).

    With a header row, columns are found by name (``path``/``gsi``/``file``,
    ``caption``/``text``, ``image``); without one, the columns are ``path,caption``.
    """
    base = Path(path).parent
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            rows = [r for r in csv.reader(fh) if r and any(c.strip() for c in r)]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"cannot read CSV {path}: {exc}") from None
    if not rows:
        raise DataError(f"CSV {path} is empty")
    head = [c.strip().lower() for c in rows[0]]
    names = {"path": ("path", "gsi", "file", "filepath"), "caption": ("caption", "text", "title"),
             "image": ("image", "original", "rgb")}
    cols: dict[str, int] = {}
    if any(h in sum(names.values(), ()) for h in head):
        for key, options in names.items():
            idx = next((head.index(o) for o in options if o in head), None)
            if idx is not None:
                cols[key] = idx
        rows = rows[1:]
        if "path" not in cols:
            raise DataError(f"CSV {path}: no path column in its header {head}")
    else:
        cols = {"path": 0, "caption": 1}
    out = []
    for n, r in enumerate(rows, start=1):
        item = {}
        for key, idx in cols.items():
            if idx >= len(r):
                raise DataError(f"CSV {path}, data row {n}: missing {key} column")
            item[key] = r[idx].strip()
        for key in ("path", "image"):
            if key in item and not os.path.isabs(item[key]):
                item[key] = str(base / item[key])
        out.append(item)
    return out


def open_dataset(inputs: Sequence[str | os.PathLike], *, need_caption: bool = False,
                 image_transform: Callable | None = None, images_dir: str | os.PathLike | None = None,
                 shuffle_buffer: int = 1000, seed: int = 0) -> GsiDataset | GsiTarDataset:
    """A dataset over folders/files/globs of `.gsi`, a CSV, or tar shards.

    ``need_caption``: every sample needs a caption (contrastive stage).
    ``image_transform``: every sample needs its original image (distillation),
    transformed by it. Files without what is needed are left out with a
    warning; raises :class:`DataError` when nothing usable remains.
    """
    inputs = [str(i) for i in inputs]
    if not inputs:
        raise DataError("no training data given")
    tars = [i for i in inputs if i.endswith((".tar", ".tar.gz", ".tgz", ".tar.zst")) or "*.tar" in i]
    if tars:
        if len(tars) != len(inputs):
            raise DataError("mix of tar shards and other inputs: give either tar shards or files/folders/CSV")
        shards = [str(p) for t in tars for p in (sorted(glob.glob(t)) if any(c in t for c in "*?[") else [t])]
        missing = [s for s in shards if not os.path.isfile(s)]
        if missing or not shards:
            raise DataError(f"tar shard not found: {missing[0] if missing else tars[0]}")
        return GsiTarDataset(shards, need_caption, image_transform, shuffle_buffer, seed)
    paths: list[Path] = []
    captions: list[str] = []
    images: list[Path | None] = []
    for item in inputs:
        if item.lower().endswith(".csv"):
            for row in read_pairs_csv(item):
                paths.append(Path(row["path"]))
                captions.append(row.get("caption", ""))
                images.append(Path(row["image"]) if row.get("image") else None)
            continue
        root = Path(item) if Path(item).is_dir() else None
        for p in discover_gsi([item]):
            paths.append(p)
            captions.append(_read_caption(p.with_suffix(".txt")))
            images.append(_find_original(p, root, Path(images_dir) if images_dir else None)
                          if image_transform is not None else None)
    if not paths:
        raise DataError(f"no .gsi files found in {', '.join(inputs)}")
    keep = list(range(len(paths)))
    if need_caption:
        no_caption = [i for i in keep if not captions[i]]
        if no_caption:
            warnings.warn(f"{len(no_caption)} of {len(paths)} .gsi file(s) have no caption (e.g. "
                          f"{paths[no_caption[0]]}: expected {paths[no_caption[0]].with_suffix('.txt')}); "
                          "left out", stacklevel=2)
        keep = [i for i in keep if captions[i]]
    if image_transform is not None:
        no_image = [i for i in keep if images[i] is None or not images[i].is_file()]
        if no_image:
            where = f" or under {images_dir}" if images_dir else ""
            warnings.warn(f"{len(no_image)} of {len(paths)} .gsi file(s) have no original image (e.g. "
                          f"{paths[no_image[0]]}: expected {paths[no_image[0]].stem}.png/.jpg next to it{where}); "
                          "left out", stacklevel=2)
        dropped = set(no_image)
        keep = [i for i in keep if i not in dropped]
    if not keep:
        what = "captions" if need_caption else "original images"
        raise DataError(f"none of the {len(paths)} .gsi file(s) has {what}")
    return GsiDataset([paths[i] for i in keep], [captions[i] for i in keep] if need_caption else None,
                      [images[i] for i in keep] if image_transform is not None else None,  # type: ignore[misc]
                      image_transform)


__all__ = [
    "DataError", "GsiDataset", "GsiTarDataset", "IMAGE_EXTENSIONS", "PARAMS", "SplatBatch", "batch_from_gaussians",
    "collate_splats", "discover_gsi", "gaussians_to_params", "load_image", "open_dataset", "read_pairs_csv",
    "sample_from_gaussians",
]
