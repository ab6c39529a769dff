"""The ``gsi`` command line: ``info``, ``view`` and ``encode`` for `.gsi` splat images.

``train-head`` and ``classify`` live in :mod:`.clip_commands`, ``verify`` (tar shard sets) in
:mod:`.verify`, ``bench`` in :mod:`.bench`; they are registered here. Tar shard encoding is
:mod:`.shard_encoding`.

Library errors become :class:`click.ClickException` here (exit status 1);
usage errors exit with 2 as click does; Ctrl-C exits with 130, SIGTERM of ``encode`` with 143 (after removing
its temporary files and ending its workers). Progress and diagnostics go to
stderr, results (tables, ``--json``) to stdout.
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

# torch's and numba's OpenMP pools both run here; idle threads that spin steal the other pool's cores.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import click  # noqa: E402

from .bench import bench  # noqa: E402
from .clip_commands import classify, train_head  # noqa: E402
from .common import (STDIO, binary_stdin, binary_stdout, display_path, echo_json, echo_tsv,  # noqa: E402
                     err_console, error_text, human_bytes, info_console, out_console, printable, safe, same_file,
                     stdout_is_terminal, unwritable, verbosity, verbosity_options)
from .device import cli_device, device_option, render_device  # noqa: E402
from .serve import serve  # noqa: E402
from .signals import Terminated, sigterm_unwinds  # noqa: E402
from .verify import verify  # noqa: E402

# gscodec (and with it torch) is imported inside the commands, so that `gsi --help` stays fast.
if TYPE_CHECKING:
    from rich.console import Console

    from .encoding import Record
    from .inputs import Job

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@click.group(context_settings=CONTEXT)
@click.version_option(None, "-V", "--version", package_name="gscodec", prog_name="gsi")
def cli() -> None:
    """Splat image codec: photos as sums of 2D Gaussians in .gsi files.

    Results go to stdout (--json: one document, schema in docs/json.md),
    progress, warnings and summaries to stderr; -s/--quiet keeps only
    warnings and errors there.

    \b
    Examples:
      gsi encode photos/ -o splats/ --resize 224
      gsi encode cat.jpg -o cat.gsi -q 75
      cat cat.png | gsi encode - -o - > cat.gsi
      gsi info splats/
      gsi view splats/cat.gsi --scale 2 -o cat.jpg
      gsi classify splats/*.gsi --labels cat,dog,car
      gsi encode 'shards/*.tar' -o gsi-shards/ --resize 224 && gsi verify gsi-shards/
    """


@cli.command(context_settings=CONTEXT)
@click.argument("files", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True,
              help="Print one JSON document on stdout (schema in docs/json.md) instead of a table.")
@click.option("--verify", is_flag=True, help="Decode each whole file, checking its checksum and parameters (slower).")
@verbosity_options(verbose=False)
def info(files: tuple[str, ...], as_json: bool, verify: bool) -> None:
    """Show the header and statistics of .gsi FILES.

    FILES are .gsi files, folders (searched recursively for *.gsi) or - for
    standard input. Per file: size in bytes, width x height, Gaussian count,
    storage mode, bytes per Gaussian, bits per pixel (bpp), compression ratio
    against raw RGB8 (width * height * 3 / file size), the fitted PSNR and the
    metadata. Only the header and metadata are read unless --verify is given.
    Files that cannot be read are reported on stderr (and as failed records
    with --json), the others still shown; the exit status is then 1. On a
    terminal the statistics are a table; piped, one tab-separated line per
    file after a header line.

    \b
    Examples:
      gsi info cat.gsi
      gsi info splats/                        # every .gsi below splats/
      gsi info splats/ --json | jq '.records[].bpp'
      gsi info splats/ | sort -t$'\t' -k9 -g  # piped: one line per file, sorted by bpp
      cat cat.gsi | gsi info -
    """
    from gscodec.format import GsiError

    from .info import failed_info, file_info, find_files, info_lines, info_tables, read_stdin

    err = err_console()
    rows: list[dict] = []
    for path, problem in find_files(list(files)):
        error = problem
        if error is None:
            try:
                data = read_stdin(binary_stdin()) if path == STDIO else None
                rows.append(file_info(path, verify=verify, data=data))
                continue
            except (GsiError, OSError) as exc:
                error = error_text(exc)
            except MemoryError:
                error = "not enough memory to decode it"
        rows.append(failed_info(path, error, verify))
        err.print(f"[red]error:[/] {safe(path)}: {safe(error)}")
    ok = [r for r in rows if r["status"] == "ok"]
    failed = len(rows) - len(ok)
    if as_json:
        echo_json("info", rows, {"files": len(rows), "ok": len(ok), "failed": failed}, ok=not failed)
    elif ok and stdout_is_terminal():
        out = out_console()
        for table in info_tables(ok):
            out.print(table)
    elif ok:
        echo_tsv(*info_lines(ok))
    if failed:
        raise click.ClickException(f"{failed} of {len(rows)} file(s) could not be read")


@cli.command(context_settings=CONTEXT)
@click.argument("file", metavar="FILE|-", type=click.Path(dir_okay=False, readable=False, allow_dash=True,
                                                           path_type=Path))
@click.option("-o", "--output", metavar="IMAGE|-", type=click.Path(dir_okay=False, allow_dash=True, path_type=Path),
              help="Write the render to this image file, in the format its extension names (.png, .jpg, .webp, "
                   ".tif, ...: whatever Pillow writes), or - for standard output (PNG unless --format), instead "
                   "of opening a viewer.")
@click.option("--format", "image_format", metavar="FORMAT",
              help="Image format to write, overriding the extension: png, jpeg, webp, tiff, ... (Pillow's names "
                   "or extensions).")
@click.option("--width", type=click.IntRange(1), help="Output width in pixels.")
@click.option("--height", type=click.IntRange(1), help="Output height in pixels.")
@click.option("--scale", type=click.FloatRange(0, min_open=True), help="Output size relative to the stored size.")
@click.option("--max-overlap", type=click.FloatRange(0),
              help="Refuse a render visiting more footprint pixels than this per output pixel, on average "
                   "(a decompression bomb); default the library's limit (1024), 0 for none.")
@click.option("--ellipses", type=click.FloatRange(0, min_open=True), is_flag=False, flag_value=1.0,
              help="Draw each Gaussian's ellipse over the render: --ellipses for 1 sigma, --ellipses 3 for "
                   "the 3-sigma cut-off.")
@device_option(help="Render on: auto (CUDA with triton when usable), cpu, cuda or cuda:N.")
@verbosity_options()
def view(file: Path, output: Path | None, image_format: str | None, width: int | None, height: int | None,
         scale: float | None, max_overlap: float | None, ellipses: float | None, device: str) -> None:
    """Render a .gsi FILE (- for standard input) to pixels, at its stored size or any other.

    Give --width or --height alone to keep the aspect ratio, both to stretch,
    or --scale. Without -o the PNG goes to a temporary file that is opened in
    the system viewer when there is one; its path is always printed (stderr).

    \b
    Examples:
      gsi view cat.gsi
      gsi view cat.gsi -o cat.png --width 1024
      gsi view cat.gsi -o cat.jpg --scale 4          # JPEG, from the extension
      gsi view cat.gsi -o - | display                # PNG on standard output
      cat cat.gsi | gsi view - -o - --format webp > cat.webp
      gsi view cat.gsi -o big.png --scale 8 --device cuda
      gsi view cat.gsi -o splats.png --scale 4 --ellipses
    """
    from gscodec.atomic import write_atomic
    from gscodec.format import GsiError, read
    from gscodec.limits import MAX_RENDER_OVERLAP
    from gscodec.render import output_size, render

    from . import viewer

    if scale is not None and (width is not None or height is not None):
        raise click.UsageError("give either --scale or --width/--height, not both")
    to_stdout = output is not None and str(output) == STDIO
    if output is not None and not to_stdout and same_file(output, file):
        raise click.UsageError(f"-o {printable(output)} is the input file; the image would replace it")
    if to_stdout and binary_stdout().isatty():
        raise click.UsageError("-o - writes the image to standard output, which is a terminal: redirect it or pipe it")
    try:
        fmt = viewer.format_for(output if output is not None and not to_stdout else Path(), image_format)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    if str(file) == STDIO:
        name, source = "stdin", binary_stdin()
    elif not file.exists():
        raise click.BadParameter(f"{printable(file)} does not exist", param_hint="'FILE|-'")
    else:
        name, source = str(file), file
    dev = render_device(device)
    info = info_console()
    start = time.perf_counter()
    try:
        g = read(source).gaussians
        w, h = output_size(g, width, height, scale)
        limit = MAX_RENDER_OVERLAP if max_overlap is None else max_overlap or None  # 0: no limit
        pixels = render(g, w, h, device=dev, max_overlap=limit)
        if ellipses is not None:
            from gscodec.overlay import draw_ellipses

            pixels = draw_ellipses(pixels, g.scaled(w, h) if (w, h) != (g.width, g.height) else g, ellipses)
        data = viewer.encode_pixels(pixels, fmt)
    except (GsiError, OSError, ValueError) as exc:
        raise click.ClickException(printable(f"{name}: {error_text(exc)}")) from None
    except MemoryError:
        raise click.ClickException(printable(f"{name}: not enough memory to decode and render it")) from None
    if verbosity() > 0:
        info.print(f"{safe(name)}: {g.count} Gaussians, {g.width}x{g.height} stored, rendered at {w}x{h} on {dev} "
                   f"in {time.perf_counter() - start:.2f} s")
    if to_stdout:
        stream = binary_stdout()
        stream.write(data)
        stream.flush()
        info.print(f"wrote {fmt} to stdout ({w}x{h}, {human_bytes(len(data))})")
        return
    if output is None:
        fd, tmp = tempfile.mkstemp(prefix=f"gsi-view-{Path(name).stem}-", suffix=".png")
        os.close(fd)
        target = Path(tmp)
    else:
        target = output
    try:
        write_atomic(target, data)
    except (GsiError, OSError) as exc:
        if output is None:
            target.unlink(missing_ok=True)
        raise click.ClickException(error_text(exc)) from None
    info.print(f"wrote {safe(str(target))} ({w}x{h})")
    if output is None:
        opened = viewer.open_viewer(target)
        if opened:
            info.print(f"opened in {safe(opened)}")
        else:
            err_console().print("no image viewer found; open the PNG yourself")


QUANTIZATIONS = ("auto", "low", "medium", "high", "max", "float16", "float32")
"""``--quantization`` choices: ``gscodec.encoder.QUALITIES`` (kept here so that ``gsi --help`` imports no torch)."""


class QualityType(click.ParamType):
    """``-q/--quality``: a number from 0 to 100; a quantization preset's name gets a pointer to --quantization."""

    name = "0..100"

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value)
        else:
            text = str(value).strip()
            if text.lower() in QUANTIZATIONS:
                self.fail(f"{text!r} is a quantization preset: give --quantization {text.lower()} (-q/--quality "
                          "takes a number from 0 to 100, as cwebp's -q)", param, ctx)
            try:
                number = float(text)
            except ValueError:
                self.fail(f"{text!r} is not a number from 0 to 100", param, ctx)
        if not 0 <= number <= 100:
            self.fail(f"{value!r} is not a number from 0 to 100", param, ctx)
        return number


@cli.command(context_settings=CONTEXT)
@click.argument("inputs", nargs=-1)
@click.option("-o", "--output", "--output-dir", "output_text", metavar="FILE|DIR|-", type=click.Path(allow_dash=True),
              help="One input image: the .gsi file to write (- for standard output), unless it is an existing "
                   "folder or ends with /. Several inputs, a folder or a pattern: the folder to write into, "
                   "mirroring the input folders. Default: next to each input. Required for tar shards, "
                   "--input-list and standard input.")
@click.option("--input-list", type=click.Path(exists=True, dir_okay=False, readable=False, path_type=Path),
              metavar="FILE",
              help="Encode the images listed in FILE (one path per line, relative to FILE's folder; blank lines and "
                   "# comments skipped) into tar shards of --shard-size images, list-000000.tar, ... under -o.")
@click.option("--shard", metavar="I/N",
              help="Tar shards and --input-list: encode only part I of N (I from 0): the output shards whose "
                   "index is I modulo N. Default: RANK/WORLD_SIZE as torchrun sets them, else all.")
@click.option("--shard-size", type=click.IntRange(1), default=1000, show_default=True,
              help="Images per output shard with --input-list.")
@click.option("-q", "--quality", type=QualityType(),
              help="Quality from 0 to 100, as cwebp's -q: sets the Gaussian density (doubling every 15 steps: "
                   "25 is 0.004, 50 0.0127, 75 0.040, 100 0.128 Gaussians per pixel) and the quantization (auto "
                   "below 95, then high, max at 100), instead of --points/--density/--bpp.")
@click.option("--points", type=click.IntRange(1), help="Gaussians per image.  [default: 900]")
@click.option("--density", type=click.FloatRange(0, 1, min_open=True),
              help="Gaussians per pixel (e.g. 0.02), instead of --points.")
@click.option("--bpp", type=click.FloatRange(0, 64, min_open=True),
              help="Target file size in bits per pixel, instead of --points (one corrective refit if off by >8%).")
@click.option("--psnr", "--target-psnr", "target_psnr", type=float,
              help="Stop fitting once the written file should reach this PSNR (dB): the fit stops 0.35 dB above it, "
                   "the typical quantization loss. Not with --bpp.")
@click.option("-e", "--effort", type=click.IntRange(1, 9), default=None, metavar="1..9",
              help="Encoder effort: 1 fastest, 9 slowest and best (gscodec.fit.effort.EFFORTS).  [default: 4]")
@click.option("--iterations", type=click.IntRange(0),
              help="Expert: optimizer steps per image, overriding the effort level's count (the rest of its "
                   "settings stay).")
@click.option("--resize", type=click.IntRange(1), metavar="SIZE",
              help="Shorter side to SIZE, then centre crop to SIZE x SIZE (as CLIP, e.g. 224). Default: native size.")
@click.option("--quantization", type=click.Choice(QUANTIZATIONS),
              help="Quantization preset (auto: the best for the Gaussian density), or unquantized float storage; "
                   "overrides -q's choice.  [default: auto]")
@click.option("--format-version", type=click.Choice(["auto", "1", "2"]), default="auto", show_default=True,
              help="Format version of quantized files: auto writes the smaller (version 2's range coder, about 5% "
                   "smaller, is nearly always it); 1 decodes faster (zstd tokens).")
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed of the fitter.")
@click.option("--force", is_flag=True,
              help="Re-encode every output that exists, whatever it records (or complete tar shards).")
@click.option("--workers", type=click.IntRange(1, 256), default=1, show_default=True,
              help="Worker processes (each uses one thread).")
@click.option("--batch", type=click.IntRange(1, 4096),
              help="Fit up to this many same-size images together (faster with --resize).  [default: 1 on the CPU; "
                   "on CUDA as many as fit in free GPU memory, at most --batch when given]")
@device_option(help="Fit on: auto (CUDA with triton when usable, else the CPU), cpu, cuda or cuda:N. On CUDA, "
                    "image files are decoded by --workers loader processes while the GPU fits batches.")
@click.option("--json", "as_json", is_flag=True,
              help="Print one JSON document on stdout (docs/json.md): a record per input (input, output, status, "
                   "psnr, bytes, bpp, seconds, width, height, gaussians, error, stale), or per output shard.")
@verbosity_options()
def encode(inputs: tuple[str, ...], output_text: str | None, input_list: Path | None, shard: str | None,
           shard_size: int, quality: float | None, points: int | None, density: float | None, bpp: float | None,
           target_psnr: float | None, effort: int | None, iterations: int | None, resize: int | None,
           quantization: str | None, format_version: str, seed: int, force: bool, workers: int,
           batch: int | None, device: str, as_json: bool) -> None:
    """Fit images to Gaussians and write .gsi files (or .gsi tar shards).

    INPUTS are image files (any format Pillow reads), folders (searched
    recursively for image extensions), glob patterns, or - for one image on
    standard input. With one input image, -o names the output file (- for
    standard output); otherwise each output is the input's name with a .gsi
    suffix, next to the input or under the -o folder, mirroring the input
    folders. Files are written atomically, so Ctrl-C never leaves a partial
    file. Images that cannot be read are reported and skipped; the exit
    status is then 1.

    Existing outputs: every .gsi file records the settings it was made with
    (its "settings" metadata: rate, effort, quantization, seed, ...). An
    output recording the same settings and the same input name is skipped,
    so an interrupted run resumes where it stopped; one recording other
    settings is stale and re-encoded (reported as such), as is one that an
    image from standard input would replace; a file that is not a .gsi file,
    or records no settings, is left alone and reported as failed. --force
    re-encodes all of them.

    Rate: one of -q (0..100), --points, --density and --bpp; --psnr stops the
    fit early (with any but --bpp).

    Tar shards: when INPUTS are webdataset-style tar shards (.tar files, a
    quoted pattern such as 'in/{000..009}.tar' or 'in/*.tar', or a folder
    with .tar files and no images at its top level), each input shard becomes
    OUTDIR/NAME.tar with the same keys: KEY.gsi in place of the image member,
    captions and every other member (KEY.txt, KEY.json, ...) copied byte for
    byte. --input-list FILE does the same for listed images (keys are the
    line numbers from 0, 000000000, ...; NAME.txt/NAME.json next to an image
    go along). A shard is written under a temporary name and renamed when
    complete, then OUTDIR/NAME.manifest.json records its keys, sizes, PSNRs,
    failures and its input's size and time; shards whose manifest matches
    their input are skipped, so a rerun resumes without duplicates. Shards
    are split over processes by index: --shard I/N, or torchrun's RANK and
    WORLD_SIZE (then rank 0 prints the summary of all). Check the result with
    gsi verify.

    \b
    Examples:
      gsi encode cat.jpg                               # writes cat.gsi
      gsi encode cat.jpg -o small.gsi -q 40            # that file, at quality 40
      cat cat.png | gsi encode - -o - > cat.gsi        # standard input to standard output
      gsi encode photos/ -o splats/ --effort 1       # fastest: about 2x faster than the default
      gsi encode photos/ -o splats/ --resize 224 --points 900
      gsi encode 'shots/**/*.png' -o out/ --density 0.02 --workers 2
      gsi encode photo.jpg --bpp 0.5            # rate control: about 0.5 bits per pixel
      gsi encode photo.jpg --psnr 30 --density 0.05   # stop once the file reaches ~30 dB
      gsi encode photos/ -o splats/ --resize 224 --batch 8 --json > summary.json
      gsi encode photos/ -o splats/ --resize 224 --device cuda --workers 4
      gsi encode 'shards/{000..009}.tar' -o gsi-shards/ --resize 224 --batch 8
      gsi encode shards/ -o gsi-shards/ --resize 224 --shard 1/4      # one machine of four
      torchrun --nproc-per-node 2 -m gscodec_cli.main encode shards/ -o gsi-shards/ --resize 224
      gsi encode --input-list photos.txt -o gsi-shards/ --shard-size 1000
      gsi verify gsi-shards/ --inputs shards/
    """
    from gscodec.limits import MAX_DIMENSION, MAX_GAUSSIANS
    from gscodec.presets import quality_settings

    from .encoding import Settings, run
    from .inputs import input_kind

    output = None if output_text is None else Path(output_text)  # the text keeps a trailing / (a folder)
    if not inputs and input_list is None:
        raise click.UsageError("give INPUTS (images, folders, globs, tar shards or - for standard input) or "
                               "--input-list FILE")
    if STDIO in inputs and len(inputs) > 1:
        raise click.UsageError("- (standard input) is one image: give it alone")
    to_stdout = output is not None and str(output) == STDIO
    sharded = input_list is not None or (STDIO not in inputs and input_kind(list(inputs)) == "shards")
    if input_list is not None and inputs:
        raise click.UsageError("give either INPUTS or --input-list, not both")
    if not sharded and STDIO not in inputs and input_kind(list(inputs)) == "mixed":
        raise click.UsageError("INPUTS mix tar shards with images: encode them in separate runs")
    if not sharded and shard is not None:
        raise click.UsageError("--shard applies to tar shards and --input-list")
    if sharded and (output is None or to_stdout):
        raise click.UsageError("tar shards and --input-list need an output folder: -o OUTDIR")
    if not sharded and _world_size() > 1:
        raise click.UsageError("under torchrun, encode tar shards or an --input-list (split by rank); image files "
                               "and folders are encoded by one process (use --workers)")
    if sharded and workers > 1:
        raise click.UsageError("--workers applies to image files; run tar shards in parallel with torchrun "
                               "(torchrun --nproc-per-node N -m gscodec_cli.main encode ...) or --shard I/N")
    if points is not None and points > MAX_GAUSSIANS:
        raise click.BadParameter(f"at most {MAX_GAUSSIANS}", param_hint="'--points'")
    if resize is not None and resize > MAX_DIMENSION:
        raise click.BadParameter(f"at most {MAX_DIMENSION}", param_hint="'--resize'")
    if sum(v is not None for v in (quality, points, density, bpp)) > 1:
        raise click.UsageError("give only one of -q/--quality, --points, --density and --bpp")
    if bpp is not None and target_psnr is not None:
        raise click.UsageError("--bpp and --psnr both set the rate (a file size, a quality to stop at): give one")
    mode = "folder" if sharded else _output_mode(inputs, output_text)
    if to_stdout and as_json:
        raise click.UsageError("-o - writes the .gsi file to standard output, where --json would go too: "
                               "give -o FILE, or leave out --json")
    if to_stdout and binary_stdout().isatty():
        raise click.UsageError("-o - writes the .gsi file to standard output, which is a terminal: redirect it "
                               "or pipe it")
    outdir = output if mode == "folder" else None
    if outdir is not None:
        if outdir.exists() and not outdir.is_dir():
            raise click.ClickException(f"output folder {outdir} is a file")
        if outdir.is_dir() and (problem := unwritable(outdir)) is not None:
            raise click.ClickException(printable(f"cannot write to output folder {outdir}: {problem}"))
    chosen = quality_settings(quality) if quality is not None else None
    dev = cli_device(device)
    if sharded and dev.type == "cuda":
        if device != "auto":
            raise click.UsageError("--device cuda encodes image files and folders; tar shards are fitted on the CPU")
        dev = cli_device("cpu")
    try:  # the settings check what the option types cannot (e.g. version 2 of a float quality)
        settings = Settings(points=points or 900, density=chosen.density if chosen else density, bpp=bpp,
                            effort=effort, iterations=iterations, resize=resize,
                            quality=quantization or (chosen.quantization if chosen else "auto"), force=force,
                            seed=seed, target_psnr=target_psnr,
                            format_version=None if format_version == "auto" else int(format_version))
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    err, info = err_console(), info_console()
    if verbosity() > 0:
        info.print(f"settings: {settings.describe()}" + (f" (-q {quality:g})" if quality is not None else ""))
    if sharded:
        from .shard_encoding import encode_sharded

        assert output is not None
        encode_sharded(inputs, input_list, output, settings, batch or 1, shard, shard_size, as_json, info)
        return

    jobs, records = _image_jobs(inputs, output, mode, err, info)
    stdio = any(j.data is not None or str(j.output) == STDIO for j in jobs)
    start = time.perf_counter()
    try:
        with sigterm_unwinds():
            if dev.type == "cuda" and not stdio:
                from .gpu_encoding import run_streaming

                records += run_streaming(jobs, settings, info, dev, loaders=workers, max_batch=batch)
            else:
                if dev.type == "cuda":  # standard input or output: one image, through the in-process path
                    import torch

                    torch.cuda.set_device(dev)
                    settings = replace(settings, backend="cuda")
                records += run(jobs, settings, info, workers=1 if stdio else workers, batch=batch or 1,
                               verbose=verbosity() > 0)
    except (KeyboardInterrupt, Terminated) as exc:
        err.print("[red]interrupted[/]: finished files are complete and nothing was half-written; "
                  "run the same command again to resume")
        raise click.exceptions.Exit(143 if isinstance(exc, Terminated) else 130) from None
    elapsed = time.perf_counter() - start

    count = {s: sum(r.status == s for r in records) for s in ("encoded", "skipped", "failed")}
    stale = sum(r.stale for r in records)
    written = sum(r.bytes or 0 for r in records if r.status == "encoded")
    if as_json:
        echo_json("encode", [r.as_dict() for r in records],
                  {**count, "stale": stale, "bytes": written, "seconds": round(elapsed, 3)}, ok=not count["failed"])
    replaced = f" (replacing {stale} stale)" if stale else ""
    info.print(f"encoded {count['encoded']}{replaced}, skipped {count['skipped']}, failed {count['failed']} "
               f"in {elapsed:.1f} s; wrote {human_bytes(written)}")
    if count["failed"]:
        failed = [r for r in records if r.status == "failed"]
        lines = "\n".join(printable(f"  {display_path(r.input)}: {r.error}") for r in failed)
        raise click.ClickException(f"{len(failed)} of {len(records)} input(s) failed:\n{lines}")


def _output_mode(inputs: tuple[str, ...], output: str | None) -> str:
    """How ``gsi encode`` reads ``-o``: ``"file"`` (the one input image's output, or ``-``) or ``"folder"``.

    A folder when there are several inputs, a folder or a pattern among them, or when ``-o`` is an existing
    folder or ends with a path separator; else the file. Standard input needs ``-o``.
    """
    from .inputs import has_magic

    single = len(inputs) == 1 and (inputs[0] == STDIO or not (os.path.isdir(inputs[0]) or has_magic(inputs[0])))
    if output is None:
        if STDIO in inputs:
            raise click.UsageError("reading an image from standard input: give -o FILE, or -o - for standard output")
        return "folder"
    if output == STDIO:
        if not single:
            raise click.UsageError("-o - (standard output) takes one input image, not several, a folder or a pattern")
        return "file"
    if os.path.isdir(output) or output.endswith(("/", os.sep)):
        if STDIO in inputs:
            raise click.UsageError("reading an image from standard input: -o must name the .gsi file, not a folder")
        return "folder"
    return "file" if single else "folder"


def _image_jobs(inputs: tuple[str, ...], output: Path | None, mode: str, err: Console,
                info: Console) -> tuple[list[Job], list[Record]]:
    """The jobs of ``gsi encode`` on images, and ``failed`` records for inputs that cannot be read; usage errors
    for clashes (outputs shared or replacing an input)."""
    from gscodec.files import regular_file_problem

    from .encoding import Record
    from .inputs import STDIN, Job, discover, read_stdin_image

    if mode == "file":
        assert output is not None
        if inputs[0] == STDIO:
            try:
                data = read_stdin_image(binary_stdin())
            except OSError as exc:
                raise click.ClickException(error_text(exc)) from None
            return [Job(STDIN, output, data)], []
        path = Path(inputs[0])
        if str(output) != STDIO and same_file(output, path):
            raise click.UsageError(f"-o {printable(output)} is the input file; the .gsi file would replace it")
        if (problem := regular_file_problem(path)) is not None:
            record = Record(inputs[0], str(output), "failed",
                            error="no such file or folder" if problem == "no such file" else problem)
            info.print(f"[red]✗[/] {safe(record.input)}: {safe(record.error)}")
            return [], [record]
        return [Job(path, output)], []

    found = discover(list(inputs), output)
    if found.clashes:
        lines = "\n".join(f"  {printable(c)}" for c in found.clashes)
        raise click.UsageError(f"inputs clash, nothing was encoded:\n{lines}\n"
                               "encode them in separate runs or into separate output folders (-o)")
    for folder in found.empty_folders:
        err.print(f"[yellow]warning:[/] no images in folder {safe(str(folder))}")
    if not found.jobs and not found.problems:
        raise click.ClickException(f"no images to encode in {', '.join(inputs)} (folders are searched recursively "
                                   f"for files Pillow reads: .png, .jpg, .webp, .tif, .bmp, .gif, ...)")
    records = [Record(spec, None, "failed", error=reason) for spec, reason in found.problems]
    for r in records:
        info.print(f"[red]✗[/] {safe(r.input)}: {safe(r.error or '')}")
    return found.jobs, records


def _world_size() -> int:
    """``WORLD_SIZE`` as torchrun sets it (1 without)."""
    from gscodec.distributed import env_info

    try:
        return env_info().world_size
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None


cli.add_command(train_head)
cli.add_command(classify)
cli.add_command(bench)
cli.add_command(verify)
cli.add_command(serve)


def main() -> None:
    """Console entry point of ``gsi``."""
    from gscodec.extras import MissingDependencyError

    try:
        cli(prog_name="gsi")
    except KeyboardInterrupt:  # outside click's own handling (e.g. while importing)
        raise SystemExit(130) from None
    except MissingDependencyError as exc:  # a command of an extra that is not installed (the core has no torch)
        err_console().print(f"[red]error:[/] {safe(str(exc))}")
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
