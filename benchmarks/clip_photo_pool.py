"""Make the photo folders of the CLIP fidelity benchmark: photos split by photo into train / val / held-out.

Sources: the development photos (a folder of images) and KDE wallpaper trees
(``.../wallpapers/NAME/contents/images/WxH.ext``: the largest landscape file of
each is taken, named NAME). Every photo is downscaled so that its shorter side
is at most ``--max-side`` pixels (crops are 64x64, so larger sources only cost
decode time) and written as PNG to ``OUT/{train,val,held}/NAME.png``.

    python benchmarks/clip_photo_pool.py /work/clipdata/pool --photos /work/shared/photos \\
        --wallpapers /work/data/pw/usr/share/wallpapers
"""

from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image

HELD = ("chelsea", "flower", "rocket", "Autumn", "Kite", "Opal")
VAL = ("coffee", "ColdRipple", "Honeywave", "Cluster")
SUFFIXES = {".png", ".jpg", ".jpeg", ".webp"}


def wallpaper_sources(root: Path) -> dict[str, Path]:
    """NAME -> the largest landscape image of each wallpaper package under ``root``."""
    out = {}
    for pkg in sorted(p for p in root.iterdir() if p.is_dir()):
        best, area = None, 0
        for f in (pkg / "contents" / "images").glob("*"):
            try:
                w, h = (int(v) for v in f.stem.split("x"))
            except ValueError:
                continue
            if f.suffix.lower() in SUFFIXES and w >= h and w * h > area:
                best, area = f, w * h
        if best is not None:
            out[pkg.name] = best
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--photos", type=Path, action="append", default=[], help="folder of photos (repeatable)")
    ap.add_argument("--wallpapers", type=Path, action="append", default=[], help="KDE wallpapers folder")
    ap.add_argument("--max-side", type=int, default=720, help="shorter side at most this (pixels)")
    ap.add_argument("--held", default=",".join(HELD), help="held-out photo names")
    ap.add_argument("--val", default=",".join(VAL), help="validation photo names")
    args = ap.parse_args()
    sources = {}
    for folder in args.photos:
        sources.update({p.stem: p for p in sorted(folder.iterdir()) if p.suffix.lower() in SUFFIXES})
    for folder in args.wallpapers:
        sources.update(wallpaper_sources(folder))
    held, val = set(args.held.split(",")), set(args.val.split(","))
    for name, src in sorted(sources.items()):
        split = "held" if name in held else "val" if name in val else "train"
        dst = args.out / split / f"{name}.png"
        if dst.is_file():
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        with Image.open(src) as im:
            im = im.convert("RGB")
            scale = min(1.0, args.max_side / min(im.size))
            if scale < 1:
                im = im.resize((round(im.width * scale), round(im.height * scale)), Image.LANCZOS)
            im.save(dst)
        print(f"{split:5s} {name:22s} {im.width}x{im.height}  <- {src}")


if __name__ == "__main__":
    main()
