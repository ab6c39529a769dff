"""Distillation sets: photo crops encoded to `.gsi` tar shards, with the teacher's targets cached beside them.

Building (:func:`build_split`): a seeded plan of crops of every photo (square
boxes at several scales anywhere in the photo, flips, a linear colour jitter;
see :func:`plan_crops`), cut into shards of ``shard_size`` crops. Each shard is
fitted with :func:`gscodec.encoder.fit_images` (the fitter's numba kernels use
every core) and written with :class:`gscodec.shards.ShardWriter` (atomic) and a
:mod:`gscodec.shards.manifest` (member digests, PSNR, the plan's hash in its
settings). Members per crop: ``KEY.gsi``, ``KEY.png`` (the pixels that were
fitted: the teacher's input) and ``KEY.json`` (the crop). A shard whose
manifest matches its photos and plan is skipped, so an interrupted build
resumes; with ``verify`` a finished shard whose members no longer match their
digests is rebuilt. ``rank``/``world_size`` split the shards over processes.

Targets (:func:`cache_targets`): for every crop and each of ``views``
augmentations (view 0 the crop itself; the others a Gaussian-domain crop,
shift, flip and colour transform, :func:`crop_views`), the teacher's
L2-normalized embedding of the correspondingly transformed pixels, written
beside the shard as ``SHARD.targets.NAME.npz``. Training reads them
(:class:`DistillDataset`) and never runs the teacher; the Gaussians of a view
are transformed on the fly (:func:`gscodec.clip.augment.apply_params`).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import time
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from ..atomic import write_atomic
from ..format import GsiError, decode
from ..gaussians import GaussianImage
from ..shards import (FailureEntry, InputFile, Manifest, SampleEntry, ShardError, ShardWriter, finished,
                      iter_samples, read_manifest, write_manifest)
from ..shards.manifest import ManifestError, digest
from .augment import View, apply_params, apply_pixels, color_matrix, random_view
from .config import ClipHeadError
from .data import gaussians_to_params

SET_FORMAT = "gscodec-distill-set"
TARGETS_FORMAT = "gscodec-distill-targets/2"
"""Version 2: random views stay inside the crop (version 1's reached past its border, where the Gaussians' render
is not the pixels' black); files of another version are recomputed by :func:`cache_targets` and refused by
:func:`load_targets`."""
DEFAULT_SCALES = (1.0, 0.6, 0.35, 0.2)
"""Crop sides as fractions of the photo's shorter side (each crop picks one, jittered by +-10%)."""


class DistillSetError(ClipHeadError):
    """A distillation set or its cached targets are missing, stale or unreadable."""


Log = Callable[[str], None]


@dataclass(frozen=True)
class CropItem:
    """One planned crop: its key, the photo, and the view of the photo that makes it (box in photo pixels)."""

    key: str
    photo: str
    view: View

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "photo": self.photo, "view": self.view.to_list()}


def plan_crops(photos: Sequence[str | os.PathLike], per_photo: int, split: str, seed: int = 0,
               scales: Sequence[float] = DEFAULT_SCALES, flip_p: float = 0.5, jitter: bool = True,
               photo_sizes: dict[str, tuple[int, int]] | None = None) -> list[CropItem]:
    """``per_photo`` crops of every photo, keys ``SPLIT-PPPP-CCCCC`` (photo and crop index), seeded per photo.

    Square boxes: side ``scale * min(W, H)`` for a random scale of ``scales`` (+-10%), anywhere in the photo;
    flip with probability ``flip_p``; with ``jitter``, gain 0.8-1.0, saturation 0.7-1.15, channel gains +-5%.
    ``photo_sizes``: ``(W, H)`` per photo path (read from the files when not given).
    """
    from PIL import Image

    items = []
    for k, photo in enumerate(photos):
        photo = str(photo)
        if photo_sizes is not None and photo in photo_sizes:
            width, height = photo_sizes[photo]
        else:
            with Image.open(photo) as im:
                width, height = im.size
        rng = np.random.default_rng([seed, k, zlib.crc32(Path(photo).name.encode())])
        for j in range(per_photo):
            side = min(width, height) * float(rng.choice(scales)) * float(rng.uniform(0.9, 1.1))
            side = max(1.0, min(side, float(min(width, height))))
            x0 = float(rng.uniform(0, width - side))
            y0 = float(rng.uniform(0, height - side))
            flip = bool(rng.random() < flip_p)
            col = (color_matrix(float(rng.uniform(0.8, 1.0)), float(rng.uniform(0.7, 1.15)),
                                tuple(float(g) for g in rng.uniform(0.95, 1.05, 3)))  # type: ignore[arg-type]
                   if jitter else View.identity(1, 1).color)
            items.append(CropItem(f"{split}-{k:04d}-{j:05d}", photo, View((x0, y0, side, side), flip, col)))
    return items


def _plan_hash(items: Sequence[CropItem], settings: dict[str, Any]) -> str:
    text = json.dumps({"items": [it.to_json() for it in items], "settings": settings}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def shard_paths(out_dir: str | os.PathLike, split: str, n_items: int, shard_size: int) -> list[Path]:
    """The shard files of a split of ``n_items`` crops: ``OUT/SPLIT-00000.tar``, ..."""
    n = (n_items + shard_size - 1) // shard_size
    return [Path(out_dir) / f"{split}-{i:05d}.tar" for i in range(n)]


def shard_problems(shard: str | os.PathLike) -> list[str]:
    """Why a finished shard does not match its manifest (missing or altered members), or ``[]``."""
    try:
        manifest = read_manifest(shard)
    except ManifestError as exc:
        return [str(exc)]
    expected = {m: h for s in manifest.samples for m, h in zip(s.members, s.sha256)}
    seen: dict[str, str] = {}
    try:
        for sample in iter_samples(shard):
            for info, data in sample.members:
                seen[info.name] = digest(data)
    except ShardError as exc:
        return [str(exc)]
    problems = [f"{name}: missing" for name in expected if name not in seen]
    problems += [f"{name}: content differs from the manifest" for name, h in expected.items()
                 if name in seen and seen[name] != h]
    return problems


def _png(pixels: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def build_split(photos: Sequence[str | os.PathLike], out_dir: str | os.PathLike, split: str, per_photo: int, *,
                size: int = 64, points: int = 150, effort: int = 1, seed: int = 0, shard_size: int = 256,
                scales: Sequence[float] = DEFAULT_SCALES, jitter: bool = True, rank: int = 0, world_size: int = 1,
                verify: bool = True, max_shards: int | None = None, log: Log = print) -> list[Path]:
    """Build (or resume) the shards of one split; returns all its shard paths (this process builds
    ``shards[rank::world_size]``).

    Each crop is ``size`` x ``size`` pixels fitted with ``points`` Gaussians at fitter ``effort``.
    ``max_shards``: only the first that many shards of the plan (a prefix of the split: the same crops as
    in the whole split's first shards).
    """
    from ..encoder import ENCODER, EncoderSettings, fit_images
    from ..imageio import load_image

    photos = sorted(str(Path(p).resolve()) for p in photos)
    if not photos:
        raise DistillSetError(f"split {split!r}: no photos")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    items = plan_crops(photos, per_photo, split, seed, scales, jitter=jitter)
    settings = {"format": SET_FORMAT, "size": size, "points": points, "effort": effort, "seed": seed,
                "shard_size": shard_size, "scales": list(scales), "jitter": jitter}
    encoder_settings = EncoderSettings(points=points, effort=effort)
    paths = shard_paths(out, split, len(items), shard_size)[:max_shards]
    cache: dict[str, np.ndarray] = {}
    for index in range(rank, len(paths), world_size):
        shard = paths[index]
        chunk = items[index * shard_size:(index + 1) * shard_size]
        inputs = [InputFile.of(p) for p in sorted({it.photo for it in chunk})]
        plan = _plan_hash(chunk, settings)
        done = finished(shard, inputs)
        if done is not None and done.settings.get("plan_sha256") == plan:
            problems = shard_problems(shard) if verify else []
            if not problems:
                log(f"{shard.name}: complete, skipped")
                continue
            log(f"{shard.name}: {len(problems)} problem(s) ({problems[0]}); rebuilding")
        start = time.perf_counter()
        crops = []
        for it in chunk:
            if it.photo not in cache:
                cache.clear()  # photos are planned in order: keep one decoded photo at a time
                cache[it.photo] = load_image(it.photo)
            crops.append(apply_pixels(cache[it.photo], it.view, (size, size)))
        fitted = fit_images(crops, [it.key for it in chunk], encoder_settings, metadata=False)
        manifest = Manifest(shard=shard.name, bytes=0, inputs=inputs, settings={**settings, "plan_sha256": plan},
                            encoder=ENCODER, rank=rank, world_size=world_size)
        with ShardWriter(shard) as writer:
            for it, pixels, result in zip(chunk, crops, fitted):
                if isinstance(result, str):
                    manifest.failures.append(FailureEntry(it.key, it.photo, result))
                    continue
                members = [(f"{it.key}.gsi", result.data), (f"{it.key}.png", _png(pixels)),
                           (f"{it.key}.json", json.dumps(it.to_json()).encode())]
                for name, data in members:
                    writer.add(name, data)
                manifest.samples.append(SampleEntry(
                    it.key, it.photo, [m for m, _ in members], len(result.data), float(result.psnr), size, size,
                    int(result.gaussians), [digest(d) for _, d in members]))
            manifest.bytes = writer.commit()
        manifest.seconds = time.perf_counter() - start
        write_manifest(shard, manifest)
        psnr = np.mean([s.psnr for s in manifest.samples if s.psnr is not None]) if manifest.samples else float("nan")
        failed = f", {len(manifest.failures)} failed" if manifest.failures else ""
        log(f"{shard.name}: {len(manifest.samples)} crops fitted in {manifest.seconds:.0f} s, mean PSNR "
            f"{psnr:.2f} dB{failed}")
    return paths


@dataclass
class CropSample:
    """One crop read back from a shard: its key, Gaussians, the fitted pixels ``(H, W, 3)`` uint8 and its plan."""

    key: str
    gaussians: GaussianImage
    pixels: np.ndarray
    item: dict[str, Any]


def read_shard(shard: str | os.PathLike, verify: bool = True) -> list[CropSample]:
    """The crops of a finished shard, in order. With ``verify`` every member is checked against the manifest's
    digest; a crop with a missing or altered member is left out with a warning."""
    from PIL import Image

    expected: dict[str, str] = {}
    if verify:
        try:
            manifest = read_manifest(shard)
        except ManifestError as exc:
            raise DistillSetError(f"shard {shard} has no usable manifest: {exc}") from None
        expected = {m: h for s in manifest.samples for m, h in zip(s.members, s.sha256)}
    out = []
    try:
        for sample in iter_samples(shard):
            parts = {sample.extension(info): (info.name, data) for info, data in sample.members}
            bad = [name for name, data in parts.values() if verify and expected.get(name) != digest(data)]
            if bad or not {"gsi", "png", "json"} <= parts.keys():
                warnings.warn(f"skipping {shard}:{sample.key}: "
                              + (f"{bad[0]} does not match its manifest digest" if bad else "incomplete sample"),
                              stacklevel=2)
                continue
            try:
                g = decode(parts["gsi"][1]).gaussians
                pixels = np.asarray(Image.open(io.BytesIO(parts["png"][1])).convert("RGB"))
                item = json.loads(parts["json"][1])
            except (GsiError, OSError, ValueError) as exc:
                warnings.warn(f"skipping {shard}:{sample.key}: {exc}", stacklevel=2)
                continue
            out.append(CropSample(sample.key, g, pixels, item))
    except ShardError as exc:
        warnings.warn(f"skipping the rest of shard {shard}: {exc}", stacklevel=2)
    return out


# --- teacher targets -------------------------------------------------------------------------------------


def crop_views(key: str, width: int, height: int, views: int, seed: int = 0) -> list[View]:
    """``views`` views of a crop: the identity, then seeded random views (:func:`~gscodec.clip.augment.random_view`:
    a crop of 50-100% of the area inside the crop, flip, colour jitter), the same for the same key and seed."""
    rng = np.random.default_rng([seed, zlib.crc32(key.encode())])
    return [View.identity(width, height)] + [random_view(width, height, rng) for _ in range(views - 1)]


def teacher_fingerprint(clip) -> str:
    """SHA-256 (hex, 16 characters) of the teacher's vision tower weights."""
    h = hashlib.sha256()
    for name, t in sorted(clip.model.visual.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().float().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def targets_path(shard: str | os.PathLike, teacher: str) -> Path:
    """``OUT/train-00000.tar`` -> ``OUT/train-00000.targets.TEACHER.npz``."""
    p = Path(shard)
    return p.with_name(f"{p.name[:-4] if p.name.endswith('.tar') else p.name}.targets.{teacher}.npz")


def _targets_meta(path: Path) -> dict[str, Any] | None:
    try:
        with np.load(path, allow_pickle=False) as z:
            return json.loads(str(z["meta"]))
    except (OSError, ValueError, KeyError, zlib.error):
        return None


@torch.no_grad()
def cache_targets(shards: Sequence[str | os.PathLike], clip, teacher: str, views: int = 1, view_seed: int = 0,
                  batch_size: int = 128, log: Log = print) -> list[Path]:
    """Write (or keep, when up to date) ``targets_path(shard, teacher)`` for every shard.

    The file holds ``keys`` (n,), ``views`` (n, V, 14) (:meth:`View.to_list`), ``targets`` (n, V, E) float32:
    the teacher's L2-normalized embedding of :func:`~gscodec.clip.augment.apply_pixels` of the crop's pixels,
    and ``meta`` (JSON: teacher name and fingerprint, views, view seed, the shard's manifest digest).
    """
    fp = teacher_fingerprint(clip)
    written = []
    for shard in shards:
        shard = Path(shard)
        path = targets_path(shard, teacher)
        try:
            manifest_digest = digest(json.dumps(read_manifest(shard).to_json(), sort_keys=True).encode())
        except ManifestError as exc:
            raise DistillSetError(f"cannot cache targets for {shard}: {exc}") from None
        meta = {"format": TARGETS_FORMAT, "teacher": teacher, "fingerprint": fp, "views": views,
                "view_seed": view_seed, "manifest": manifest_digest}
        if _targets_meta(path) == meta:
            written.append(path)
            continue
        start = time.perf_counter()
        samples = read_shard(shard)
        keys, all_views, inputs = [], [], []
        for s in samples:
            h, w = s.pixels.shape[:2]
            vs = crop_views(s.key, w, h, views, view_seed)
            keys.append(s.key)
            all_views.append([v.to_list() for v in vs])
            inputs.extend(clip.preprocess_array(apply_pixels(s.pixels, v)) for v in vs)
        emb = [clip.encode_images(torch.stack(inputs[i:i + batch_size])) for i in range(0, len(inputs), batch_size)]
        targets = (torch.cat(emb) if emb else torch.zeros(0, clip.embed_dim)).reshape(len(keys), views, -1)
        buf = io.BytesIO()
        np.savez(buf, keys=np.asarray(keys, dtype=str), views=np.asarray(all_views, dtype=np.float32).reshape(
            len(keys), views, 14), targets=targets.numpy().astype(np.float32), meta=np.asarray(json.dumps(meta)))
        write_atomic(path, buf.getvalue())
        log(f"{path.name}: {len(keys)} crops x {views} view(s) in {time.perf_counter() - start:.1f} s")
        written.append(path)
    return written


def load_targets(shard: str | os.PathLike, teacher: str, clip=None) -> dict[str, Any]:
    """The cached targets of ``shard`` (see :func:`cache_targets`); with ``clip`` the teacher's fingerprint must
    match. Raises :class:`DistillSetError` when missing, of another format version or stale."""
    path = targets_path(shard, teacher)
    try:
        with np.load(path, allow_pickle=False) as z:
            out = {"keys": [str(k) for k in z["keys"]], "views": z["views"], "targets": z["targets"],
                   "meta": json.loads(str(z["meta"]))}
    except (OSError, ValueError, KeyError, zlib.error) as exc:
        raise DistillSetError(f"no usable targets {path}: {exc}; run cache_targets") from None
    if not isinstance(out["meta"], dict):
        raise DistillSetError(f"no usable targets {path}: its meta is not a JSON object; run cache_targets")
    if out["meta"].get("format") != TARGETS_FORMAT:
        raise DistillSetError(f"targets {path} are of format {out['meta'].get('format')!r}, not {TARGETS_FORMAT!r}; "
                              "run cache_targets again")
    if clip is not None and out["meta"].get("fingerprint") != teacher_fingerprint(clip):
        raise DistillSetError(f"targets {path} were computed by another teacher")
    return out


class DistillDataset(Dataset):
    """Map-style training data from shards and their cached targets: one item per (crop, view).

    Item ``i`` is crop ``i // V``, view ``i % V`` (``V`` = ``views``, at most the cached number): a sample dict
    of :mod:`gscodec.clip.data` with the view's Gaussians (transformed in the parameter domain) and
    ``"target"`` ``(E,)``, the teacher's embedding of the same view; with ``image_transform`` (the teacher's
    preprocessing) also ``"image"``, the view's pixels through it (for the token-level loss). ``limit`` keeps
    that many crops, evenly spread over the set (so over all photos).
    """

    def __init__(self, shards: Sequence[str | os.PathLike], teacher: str, views: int | None = None,
                 limit: int | None = None, clip=None, image_transform: Callable | None = None) -> None:
        params, sizes, keys, views_l, targets, pixels = [], [], [], [], [], []
        for shard in shards:
            t = load_targets(shard, teacher, clip)
            by_key = {k: i for i, k in enumerate(t["keys"])}
            for s in read_shard(shard):
                if s.key not in by_key:
                    continue
                i = by_key[s.key]
                params.append(gaussians_to_params(s.gaussians))
                sizes.append((s.gaussians.width, s.gaussians.height))
                keys.append(s.key)
                views_l.append(t["views"][i])
                targets.append(t["targets"][i])
                pixels.append(s.pixels)
        if limit is not None and limit < len(params):
            pick = np.unique(np.linspace(0, len(params) - 1, limit).round().astype(int))
            params, sizes, keys, views_l, targets, pixels = ([x[i] for i in pick] for x in (
                params, sizes, keys, views_l, targets, pixels))
        if not params:
            raise DistillSetError("no crops with cached targets in " + ", ".join(map(str, shards)))
        cached = min(len(v) for v in views_l)
        self.views = cached if views is None else min(views, cached)
        self.params, self.sizes, self.keys, self.pixels = params, sizes, keys, pixels
        self.image_transform = image_transform
        self.view_list = [[View.from_list(v) for v in vs[:self.views]] for vs in views_l]
        self.targets = torch.from_numpy(np.stack([t[:self.views] for t in targets])).float()  # (n, V, E)

    @property
    def crops(self) -> int:
        """Number of distinct crops."""
        return len(self.params)

    def __len__(self) -> int:
        return len(self.params) * self.views

    def __getitem__(self, index: int) -> dict[str, Any]:
        c, v = divmod(int(index), self.views)
        size = self.sizes[c]
        params = self.params[c] if v == 0 else apply_params(self.params[c], size, self.view_list[c][v])
        out = {"params": params, "size": torch.tensor([float(size[0]), float(size[1])]), "key": f"{self.keys[c]}#{v}",
               "index": int(index), "target": self.targets[c, v]}
        if self.image_transform is not None:
            from PIL import Image

            px = self.pixels[c] if v == 0 else apply_pixels(self.pixels[c], self.view_list[c][v])
            out["image"] = self.image_transform(Image.fromarray(px))
        return out


def list_photos(folder: str | os.PathLike) -> list[Path]:
    """Image files directly in ``folder`` (links followed), sorted by name."""
    from .data import IMAGE_EXTENSIONS

    paths = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
    if not paths:
        raise DistillSetError(f"no photos found in {folder}")
    return paths


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m gscodec.clip.distill_set PHOTOS OUT --split train --per-photo 128``: build one split
    (``--workers N`` runs N processes, each with its share of the shards)."""
    import argparse
    import subprocess
    import sys

    ap = argparse.ArgumentParser(description="Build a distillation split: photo crops as .gsi tar shards.")
    ap.add_argument("photos", type=Path, help="folder of photos")
    ap.add_argument("out", type=Path, help="output folder of shards")
    ap.add_argument("--split", default="train")
    ap.add_argument("--per-photo", type=int, default=64, help="crops per photo")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--points", type=int, default=150)
    ap.add_argument("--effort", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--shard-size", type=int, default=256)
    ap.add_argument("--workers", type=int, default=1, help="processes (each fits its share of the shards)")
    ap.add_argument("--rank", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--world-size", type=int, default=1, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.workers > 1:
        base = [str(args.photos), str(args.out), "--split", args.split, "--per-photo", str(args.per_photo),
                "--size", str(args.size), "--points", str(args.points), "--effort", str(args.effort),
                "--seed", str(args.seed), "--shard-size", str(args.shard_size)]
        procs = [subprocess.Popen([sys.executable, "-m", "gscodec.clip.distill_set", *base, "--rank", str(r),
                                   "--world-size", str(args.workers)]) for r in range(args.workers)]
        codes = [p.wait() for p in procs]
        raise SystemExit(max(codes))
    build_split(list_photos(args.photos), args.out, args.split, args.per_photo, size=args.size, points=args.points,
                effort=args.effort, seed=args.seed, shard_size=args.shard_size, rank=args.rank,
                world_size=args.world_size, log=lambda m: print(m, flush=True))


if __name__ == "__main__":
    main()


__all__ = ["CropItem", "CropSample", "DEFAULT_SCALES", "DistillDataset", "DistillSetError", "build_split",
           "cache_targets", "crop_views", "list_photos", "load_targets", "plan_crops", "read_shard", "shard_paths", "shard_problems",
           "targets_path", "teacher_fingerprint"]
