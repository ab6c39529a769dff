"""Merge the learning curves of several ``bench_clip_fidelity.py`` result files into one file and plot.

    python benchmarks/merge_clip_curves.py A.json B.json C.json -o curve.json   # also writes curve.png

Rows are keyed by (crops, views); a row of a later file replaces the same row of an earlier one (a re-measured
row supersedes the old). Runs of one teacher merge only when they were measured against the same held-out
crops and teacher: their render-path metrics must be equal, otherwise the merge is refused.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_clip_fidelity import plot  # noqa: E402


class MergeError(ValueError):
    """The files do not describe the same held-out set and teacher."""


def merge(results: list[dict], sources: list[str]) -> dict:
    """One result dict whose teachers' curves are the union of ``results``' rows, sorted by training items."""
    teachers: dict[str, dict] = {}
    for result, source in zip(results, sources):
        for name, r in result.get("teachers", {}).items():
            if name not in teachers:
                teachers[name] = {k: v for k, v in r.items() if k != "curve"} | {"curve": []}
            elif teachers[name]["render_path"] != r["render_path"]:
                raise MergeError(f"{source}: teacher {name!r} has other render-path metrics than "
                                 f"{sources[0]}: not the same held-out crops or teacher")
            rows = {(c["crops"], c["views"]): c for c in teachers[name]["curve"]}
            rows.update({(c["crops"], c["views"]): c | {"source": source} for c in r["curve"]})
            teachers[name]["curve"] = sorted(rows.values(), key=lambda c: (c["items"], c["views"]))
    return {"merged_from": sources, "teachers": teachers}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("results", nargs="+", type=Path, help="bench_clip_fidelity.py JSON files, oldest first")
    ap.add_argument("-o", "--out", type=Path, required=True, help="merged JSON (the plot goes beside it as .png)")
    args = ap.parse_args(argv)
    try:
        loaded = [json.loads(p.read_text()) for p in args.results]
        merged = merge(loaded, [p.name for p in args.results])
    except (OSError, ValueError, KeyError) as exc:
        print(f"merge_clip_curves: {exc}", file=sys.stderr)
        return 1
    args.out.write_text(json.dumps(merged, indent=1))
    plot(merged, args.out.with_suffix(".png"))
    for name, t in merged["teachers"].items():
        for c in t["curve"]:
            h = c["held"]
            print(f"{name:8s} {c['crops']:>6} x {c['views']}  {c['seconds'] / 60:5.1f} min  cos {h['cosine']:.4f}  "
                  f"R@1/48 {100 * h['retrieval@1_g48']:5.1f}%  agree {100 * h['zero_shot_agreement']:5.1f}%  "
                  f"({c['source']})")
    print(f"wrote {args.out} and {args.out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
