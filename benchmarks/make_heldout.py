"""Make a held-out photo set for `gsi bench`: photos the codec was never tuned on, at Kodak-like size.

Every image under SRC (recursive, any format Pillow reads) is converted to RGB,
downscaled with a Lanczos filter so that its longer side is ``--long-side``
pixels (which also washes out the compression artefacts of JPEG sources), and
saved as PNG in DST.

The set used in the closing notes comes from Debian's ``mate-backgrounds``
package (GPL; its ``nature/`` folder holds twelve photographs):

    apt-get download mate-backgrounds && dpkg-deb -x mate-backgrounds_*.deb mate
    python benchmarks/make_heldout.py mate/usr/share/backgrounds/mate/nature heldout/
    gsi bench heldout/ -o bench-heldout/

The textured sets come from Debian's ``plasma-workspace-wallpapers`` (GPL-2+),
the largest image of each wallpaper: held out OneStandsOut, FallenLeaf,
BytheWater and ColdRipple; for development Path, EveningGlow, Grey and
ColorfulCups (copy those into two folders, then run this script on each).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image, ImageOps

SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".bmp"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("src", type=Path, help="folder of photos")
    ap.add_argument("dst", type=Path, help="output folder (PNG)")
    ap.add_argument("--long-side", type=int, default=768, help="longer side of the outputs, px")
    args = ap.parse_args()
    args.dst.mkdir(parents=True, exist_ok=True)
    paths = sorted(p for p in args.src.rglob("*") if p.suffix.lower() in SUFFIXES)
    if not paths:
        raise SystemExit(f"no images under {args.src}")
    for p in paths:
        with Image.open(p) as im:
            im = ImageOps.exif_transpose(im).convert("RGB")
            scale = args.long_side / max(im.size)
            if scale < 1:
                im = im.resize((round(im.width * scale), round(im.height * scale)), Image.Resampling.LANCZOS)
            out = args.dst / f"{p.stem}.png"
            im.save(out)
            print(f"{p.name} -> {out} {im.width}x{im.height}")


if __name__ == "__main__":
    main()
