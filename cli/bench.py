"""`gsi bench`: rate-distortion of the splat codec against JPEG, WebP and AVIF on a folder of images."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from .common import (echo_json, echo_tsv, err_console, info_console, out_console, printable, safe, shows_bars,
                     stdout_is_terminal, verbosity_options)

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
CODEC_NAMES = ("gsi", "jpeg", "webp", "avif")


def _floats(text: str, what: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise click.BadParameter(f"expected comma-separated numbers, got {text!r}", param_hint=what) from None
    if not values:
        raise click.BadParameter("expected at least one number", param_hint=what)
    return values


def _parse_codecs(text: str) -> list[str]:
    names = [n.strip().lower() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in CODEC_NAMES]
    if unknown or not names:
        raise click.BadParameter(f"choose from {','.join(CODEC_NAMES)}; got {text!r}", param_hint="'--codecs'")
    return list(dict.fromkeys(names))


def _parse_qualities(items: tuple[str, ...]) -> dict[str, tuple[float, ...]]:
    out: dict[str, tuple[float, ...]] = {}
    for item in items:
        name, sep, values = item.partition("=")
        name = name.strip().lower()
        if not sep or name not in ("jpeg", "webp", "avif"):
            hint = " (gsi takes --gsi-density)" if name == "gsi" else ""
            raise click.BadParameter(f"expected CODEC=Q1,Q2,... with CODEC one of jpeg, webp, avif{hint}; "
                                     f"got {item!r}", param_hint="'--quality'")
        out[name] = _floats(values, "'--quality'")
    return out


def _num(x: float, fmt: str) -> str:
    return format(x, fmt) if math.isfinite(x) else "-"


def _json_num(x: float) -> float | None:
    return x if math.isfinite(x) else None


def json_parts(summary: Any) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The ``--json`` records (one per codec and quality: the means over images, then one per failed point) and
    summary of a :class:`gscodec.bench.runner.Summary`."""
    records: list[dict[str, Any]] = []
    for name, c in summary.curves.items():
        for i, q in enumerate(c.quality):
            records.append({"codec": name, "quality": q, "image": None, "status": "ok", "error": None,
                            "bpp": _json_num(c.bpp[i]), "psnr": _json_num(c.psnr[i]),
                            "ms_ssim": _json_num(c.ms_ssim[i]), "encode_seconds": _json_num(c.encoding_time[i]),
                            "decode_seconds": _json_num(c.decoding_time[i])})
    for f in summary.failures:
        records.append({"codec": f.codec, "quality": f.quality, "image": f.image, "status": "failed", "error": f.error,
                        "bpp": None, "psnr": None, "ms_ssim": None, "encode_seconds": None, "decode_seconds": None})
    return records, {
        "outdir": str(summary.outdir),
        "image_set": summary.image_set,
        "images": summary.images,
        "measured": summary.measured,
        "reused": summary.reused,
        "failed": len(summary.failures),
        "incomplete": summary.incomplete,
        "codecs": {name: c.description for name, c in summary.curves.items()},
        "bd_rate": [{"test": b.test, "anchor": b.anchor, "pchip": _json_num(b.pchip), "cubic": _json_num(b.cubic),
                     "psnr_range": [_json_num(v) for v in b.psnr_range], "points": list(b.points)}
                    for b in summary.bd_rates],
        "files": [str(p) for p in summary.files],
    }


def plain_lines(summary: Any) -> None:
    """The RD points and the BD-rates as tab-separated lines (each block after its header line, a blank line
    between them), for stdout that is not a terminal."""
    echo_tsv(["codec", "quality", "bpp", "psnr", "ms_ssim", "encode_seconds", "decode_seconds"],
             [[name, q, c.bpp[i], _json_num(c.psnr[i]), _json_num(c.ms_ssim[i]), c.encoding_time[i],
               c.decoding_time[i]] for name, c in summary.curves.items() for i, q in enumerate(c.quality)])
    click.echo()
    echo_tsv(["test", "anchor", "bd_rate_pchip", "bd_rate_cubic", "psnr_from", "psnr_to"],
             [[b.test, b.anchor, _json_num(b.pchip), _json_num(b.cubic), *map(_json_num, b.psnr_range)]
              for b in summary.bd_rates])


def tables(summary: Any) -> list[Table]:
    """The RD table (one row per codec and quality) and the BD-rate table."""
    rd = Table(title=f"Rate-distortion, mean over {len(summary.images)} image(s)")
    for col in ("codec", "quality", "bpp", "PSNR (dB)", "MS-SSIM", "encode (s)", "decode (s)"):
        rd.add_column(col, justify="left" if col == "codec" else "right")
    for name, c in summary.curves.items():
        for i, q in enumerate(c.quality):
            rd.add_row(name if i == 0 else "", q, f"{c.bpp[i]:.4f}", _num(c.psnr[i], ".2f"), _num(c.ms_ssim[i], ".4f"),
                       f"{c.encoding_time[i]:.3f}", f"{c.decoding_time[i]:.3f}")
        rd.add_section()
    bd = Table(title="BD-rate (negative = test needs fewer bits at equal PSNR)")
    for col in ("test", "anchor", "BD-rate pchip (%)", "BD-rate cubic (%)", "common PSNR range (dB)"):
        bd.add_column(col, justify="left" if col in ("test", "anchor") else "right")
    for b in summary.bd_rates:
        lo, hi = b.psnr_range
        span = f"{lo:.2f} - {hi:.2f}" if math.isfinite(lo) and math.isfinite(hi) and hi > lo else "no overlap"
        bd.add_row(b.test, b.anchor, _num(b.pchip, "+.1f"), _num(b.cubic, "+.1f"), span)
    return [rd, bd]


@click.command(context_settings=CONTEXT)
@click.argument("folder", metavar="DIR", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("-o", "--output-dir", "outdir", type=click.Path(file_okay=False, path_type=Path),
              default=Path("bench-results"), show_default=True,
              help="Results folder: points.csv, settings.json, <codec>.json, rd.png, rd.pdf, rd.svg.")
@click.option("--codecs", default=",".join(CODEC_NAMES), show_default=True,
              help="Comma-separated codecs to run.")
@click.option("--gsi-density", metavar="D1,D2,...",
              help="gsi rate points in Gaussians per pixel (about 0.1 to 1 bpp).  "
                   "[default: 0.002,0.004,0.008,0.016,0.03]")
@click.option("--quality", "qualities", multiple=True, metavar="CODEC=Q1,Q2,...",
              help="Quality settings of jpeg, webp or avif (repeatable), e.g. jpeg=10,50,90. Defaults: "
                   "jpeg 5,10,15,20,30,...,90,95; webp 0,5,10,20,...,90,95; avif 5,10,20,...,90.")
@click.option("--limit", type=click.IntRange(1), help="Use only the first N images (sorted by path).")
@click.option("--jobs", type=click.IntRange(1, 256), default=1, show_default=True,
              help="Points measured in parallel (worker processes, one thread each).")
@click.option("-e", "--effort", type=click.IntRange(1, 9), metavar="1..9",
              help="gsi encoder effort (1 fastest, 9 slowest).  [default: 4]")
@click.option("--iterations", type=click.IntRange(0),
              help="Expert: fitter steps per gsi image, overriding the effort level's count.")
@click.option("--json", "as_json", is_flag=True,
              help="Print one JSON document on stdout (docs/json.md) instead of the tables: a record per codec and "
                   "quality (means over the images) and per failed point; BD-rates in the summary.")
@verbosity_options(verbose=False)
def bench(folder: Path, outdir: Path, codecs: str, gsi_density: str | None, qualities: tuple[str, ...],
          limit: int | None, jobs: int, effort: int | None, iterations: int | None, as_json: bool) -> None:
    """Rate-distortion benchmark: gsi against JPEG, WebP and AVIF on the images in DIR.

    Every image (recursive, native resolution) is encoded at every quality
    setting of every codec, decoded, and scored: bits per pixel of the real
    file, PSNR (dB), MS-SSIM, encode and decode time. Points are appended to
    OUTDIR/points.csv as they finish; running the same command again measures
    only the missing points (delete a row to re-measure it). Per codec, values
    averaged over images go to OUTDIR/<codec>.json (CompressAI's schema), the
    curves to OUTDIR/rd.png, rd.pdf and rd.svg (titled with DIR's name, the
    image count and every codec's settings), and the BD-rates of gsi against
    each codec (pchip by default; the cubic VCEG-M33 value alongside) are
    printed, with WebP and AVIF against JPEG as a sanity check. A BD-rate from
    a curve of fewer than 4 points gets a warning on stderr.

    GaussianImage's published curve is drawn dashed and labelled Kodak only:
    it was measured on the 24 Kodak images, so a BD-rate against it is
    computed only when DIR holds exactly those images, named kodim01 ..
    kodim24 as distributed (any image extension; with --limit the set is
    partial, so the comparison is left out).

    gsi's quality is the Gaussian density (Gaussians per pixel); its encode
    runs the fitter, so it dominates the run time. Needs matplotlib and
    pytorch-msssim.

    \b
    Examples:
      gsi bench photos/
      gsi bench photos/ -o results/ --jobs 2 --limit 4 --effort 2
      gsi bench photos/ --codecs gsi,jpeg --gsi-density 0.01,0.02,0.04
      gsi bench photos/ --codecs jpeg,avif --quality jpeg=10,30,50,70,90 --json > rd.json
    """
    from gscodec.bench import BenchError, make_codec
    from gscodec.bench.bdrate import MIN_POINTS
    from gscodec.bench.runner import Failure, run

    names = _parse_codecs(codecs)
    per_codec = _parse_qualities(qualities)
    for name in per_codec:
        if name not in names:
            raise click.BadParameter(f"{name} is not among --codecs {','.join(names)}", param_hint="'--quality'")
    densities = _floats(gsi_density, "'--gsi-density'") if gsi_density is not None else None
    if densities is not None and "gsi" not in names:
        raise click.BadParameter("gsi is not among --codecs", param_hint="'--gsi-density'")
    try:
        selected = [make_codec("gsi", densities, effort=effort, iterations=iterations) if n == "gsi" else
                    make_codec(n, per_codec.get(n)) for n in names]
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None

    err, info = err_console(), info_console()
    columns = (TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=info, transient=False, disable=not shows_bars(info)) as bar:
        task = bar.add_task("measuring", total=None)

        def on_start(todo: int, done: int) -> None:
            bar.update(task, total=todo)
            if done:
                bar.console.print(f"{done} point(s) already in {safe(outdir / 'points.csv')}; "
                                  f"measuring {todo} more")

        def on_point(result: Any) -> None:
            if isinstance(result, Failure):
                (err if info.quiet else bar.console).print(f"[red]✗[/] {safe(result.image)} {result.codec} "
                                                           f"{result.quality}: "
                                  f"{safe(result.error)}")
            else:
                bar.update(task, description=f"{safe(result.image)} {result.codec} {result.quality}: "
                                             f"{result.bpp:.3f} bpp {result.psnr:.2f} dB")
            bar.advance(task)

        try:
            summary = run(folder, selected, outdir, jobs=jobs, limit=limit, start=on_start, progress=on_point)
        except BenchError as exc:
            raise click.ClickException(printable(exc)) from None
        except KeyboardInterrupt:
            err.print("[red]interrupted[/]: finished points are in points.csv; run the same command to resume")
            raise click.exceptions.Exit(130) from None
        bar.update(task, description="done")

    if as_json:
        echo_json("bench", *json_parts(summary), ok=not summary.failures)
    elif stdout_is_terminal():
        out = out_console()
        for table in tables(summary):
            out.print(table)
    else:
        plain_lines(summary)
    for b in summary.bd_rates:
        if b.sparse:
            err.print(f"[yellow]warning:[/] the BD-rate of {b.test} against {b.anchor} rests on {b.points[0]} and "
                      f"{b.points[1]} points (fewer than {MIN_POINTS} per curve); add rate points before relying on it")
    for ref in summary.references_elsewhere:
        err.print(f"note: the dashed curve {safe(ref.label)} was measured on {safe(ref.image_set)} only: no BD-rate "
                  f"against it on {safe(summary.image_set)} (computed only on exactly the {len(ref.image_names)} "
                  f"{safe(ref.image_set)} images)")
    for name, labels in summary.incomplete.items():
        err.print(f"[yellow]warning:[/] {name} quality {', '.join(labels)} left out of the averages "
                  f"(not measured on every image)")
    info.print(f"measured {summary.measured}, reused {summary.reused}, failed {len(summary.failures)}; "
              f"wrote {', '.join(safe(p) for p in summary.files)}")
    if summary.failures:
        raise click.ClickException(f"{len(summary.failures)} point(s) failed; run again to retry them")
