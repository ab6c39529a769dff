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

import json
import os
import tempfile
import time
from pathlib import Path

# torch's and numba's OpenMP pools both run here; idle threads that spin steal the other pool's cores.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import click  # noqa: E402

from .bench import bench  # noqa: E402
from .clip_commands import classify, train_head  # noqa: E402
from .common import (display_path, err_console, error_text, human_bytes, out_console, printable, safe,  # noqa: E402
                     same_file, unwritable)
from .device import cli_device, device_option  # noqa: E402
from .serve import serve  # noqa: E402
from .signals import Terminated, sigterm_unwinds  # noqa: E402
from .verify import verify  # noqa: E402

# gscodec (and with it torch) is imported inside the commands, so that `gsi --help` stays fast.

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@click.group(context_settings=CONTEXT)
@click.version_option(None, "-V", "--version", package_name="gscodec", prog_name="gsi")
def cli() -> None:
    """Splat image codec: photos as sums of 2D Gaussians in .gsi files.

    \b
    Examples:
      gsi encode photos/ -o splats/ --resize 224
      gsi info splats/*.gsi
      gsi view splats/cat.gsi --scale 2 -o cat.png
      gsi classify splats/*.gsi --labels cat,dog,car
      gsi encode 'shards/*.tar' -o gsi-shards/ --resize 224 && gsi verify gsi-shards/
    """


@cli.command(context_settings=CONTEXT)
@click.argument("files", nargs=-1, required=True, type=click.Path(readable=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of objects on stdout instead of a table.")
@click.option("--verify", is_flag=True, help="Decode each whole file, checking its checksum and parameters (slower).")
def info(files: tuple[Path, ...], as_json: bool, verify: bool) -> None:
    """Show the header and statistics of .gsi FILES.

    Per file: size in bytes, width x height, Gaussian count, storage mode,
    bytes per Gaussian, bits per pixel, compression ratio against raw RGB8
    (width * height * 3 / file size) and the metadata. Only the header and
    metadata are read unless --verify is given. Files that cannot be read are
    reported on stderr, the others still shown; the exit status is then 1.

    \b
    Examples:
      gsi info cat.gsi
      gsi info splats/*.gsi --json | jq '.[].bits_per_pixel'
    """
    from gscodec.format import GsiError

    from .info import file_info, info_tables

    err = err_console()
    rows, failed = [], []
    for path in files:
        try:
            rows.append(file_info(path, verify=verify))
        except (GsiError, OSError) as exc:
            failed.append(path)
            err.print(f"[red]error:[/] {safe(str(path))}: {safe(error_text(exc))}")
        except MemoryError:
            failed.append(path)
            err.print(f"[red]error:[/] {safe(str(path))}: not enough memory to decode it")
    if as_json:
        click.echo(json.dumps(rows, indent=2))
    elif rows:
        out = out_console()
        for table in info_tables(rows):
            out.print(table)
    if failed:
        raise click.ClickException(f"{len(failed)} of {len(files)} file(s) could not be read")


@cli.command(context_settings=CONTEXT)
@click.argument("file", type=click.Path(exists=True, dir_okay=False, readable=False, path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the render to this PNG instead of opening a viewer.")
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
def view(file: Path, output: Path | None, width: int | None, height: int | None, scale: float | None,
         max_overlap: float | None, ellipses: float | None, device: str) -> None:
    """Render a .gsi FILE to pixels, at its stored size or any other.

    Give --width or --height alone to keep the aspect ratio, both to stretch,
    or --scale. Without -o the PNG goes to a temporary file that is opened in
    the system viewer when there is one; its path is always printed (stderr).

    \b
    Examples:
      gsi view cat.gsi
      gsi view cat.gsi -o cat.png --width 1024
      gsi view cat.gsi -o big.png --scale 4
      gsi view cat.gsi -o big.png --scale 8 --device cuda
      gsi view cat.gsi -o splats.png --scale 4 --ellipses
    """
    from gscodec.format import GsiError, read
    from gscodec.imageio import save_png
    from gscodec.limits import MAX_RENDER_OVERLAP
    from gscodec.render import output_size, render

    from . import viewer

    if scale is not None and (width is not None or height is not None):
        raise click.UsageError("give either --scale or --width/--height, not both")
    if output is not None and same_file(output, file):
        raise click.UsageError(f"-o {printable(output)} is the input file; the PNG would replace it")
    dev = cli_device(device)
    err = err_console()
    try:
        g = read(file).gaussians
        w, h = output_size(g, width, height, scale)
        limit = MAX_RENDER_OVERLAP if max_overlap is None else max_overlap or None  # 0: no limit
        pixels = render(g, w, h, device=dev, max_overlap=limit)
        if ellipses is not None:
            from gscodec.overlay import draw_ellipses

            pixels = draw_ellipses(pixels, g.scaled(w, h) if (w, h) != (g.width, g.height) else g, ellipses)
    except (GsiError, OSError, ValueError) as exc:
        raise click.ClickException(printable(f"{file}: {error_text(exc)}")) from None
    except MemoryError:
        raise click.ClickException(printable(f"{file}: not enough memory to decode and render it")) from None
    if output is None:
        fd, name = tempfile.mkstemp(prefix=f"gsi-view-{file.stem}-", suffix=".png")
        os.close(fd)
        target = Path(name)
    else:
        target = output
    try:
        save_png(pixels, target)
    except (GsiError, OSError) as exc:
        if output is None:
            target.unlink(missing_ok=True)
        raise click.ClickException(error_text(exc)) from None
    err.print(f"wrote {safe(str(target))} ({w}x{h})")
    if output is None:
        opened = viewer.open_viewer(target)
        if opened:
            err.print(f"opened in {safe(opened)}")
        else:
            err.print("no image viewer found; open the PNG yourself")


@cli.command(context_settings=CONTEXT)
@click.argument("inputs", nargs=-1)
@click.option("-o", "--output-dir", "outdir", type=click.Path(file_okay=False, path_type=Path),
              help="Write outputs here, mirroring the input folders. Default: next to each input. "
                   "Required for tar shards and --input-list.")
@click.option("--input-list", type=click.Path(exists=True, dir_okay=False, readable=False, path_type=Path),
              metavar="FILE",
              help="Encode the images listed in FILE (one path per line, relative to FILE's folder; blank lines and "
                   "# comments skipped) into tar shards of --shard-size images, list-000000.tar, ... under -o.")
@click.option("--shard", metavar="I/N",
              help="Tar shards and --input-list: encode only part I of N (I from 0): the output shards whose "
                   "index is I modulo N. Default: RANK/WORLD_SIZE as torchrun sets them, else all.")
@click.option("--shard-size", type=click.IntRange(1), default=1000, show_default=True,
              help="Images per output shard with --input-list.")
@click.option("--points", type=click.IntRange(1), help="Gaussians per image.  [default: 900]")
@click.option("--density", type=click.FloatRange(0, 1, min_open=True),
              help="Gaussians per pixel (e.g. 0.02), instead of --points.")
@click.option("-e", "--effort", type=click.IntRange(1, 9), default=None, metavar="1..9",
              help="Encoder effort: 1 fastest, 9 slowest and best (gscodec.fit.effort.EFFORTS).  [default: 5]")
@click.option("--iterations", type=click.IntRange(0),
              help="Expert: optimizer steps per image, overriding the effort level's count (the rest of its "
                   "settings stay).")
@click.option("--resize", type=click.IntRange(1), metavar="SIZE",
              help="Shorter side to SIZE, then centre crop to SIZE x SIZE (as CLIP, e.g. 224). Default: native size.")
@click.option("--quality", type=click.Choice(["auto", "low", "medium", "high", "max", "float16", "float32"]),
              default="auto", show_default=True,
              help="Quantization preset (auto: the best for the Gaussian density), or unquantized float storage.")
@click.option("--bpp", type=click.FloatRange(0, 64, min_open=True),
              help="Target file size in bits per pixel, instead of --points (one corrective refit if off by >8%).")
@click.option("--format-version", type=click.Choice(["auto", "1", "2"]), default="auto", show_default=True,
              help="Format version of quantized files: auto writes the smaller (version 2's range coder, about 5% "
                   "smaller, is nearly always it); 1 decodes faster (zstd tokens).")
@click.option("--psnr", "--target-psnr", "target_psnr", type=float,
              help="Stop fitting once the written file should reach this PSNR (dB): the fit stops 0.35 dB above it, "
                   "the typical quantization loss.")
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed of the fitter.")
@click.option("--force", is_flag=True, help="Re-encode images whose output already exists (or complete tar shards).")
@click.option("--workers", type=click.IntRange(1, 256), default=1, show_default=True,
              help="Worker processes (each uses one thread).")
@click.option("--batch", type=click.IntRange(1, 4096),
              help="Fit up to this many same-size images together (faster with --resize).  [default: 1 on the CPU; "
                   "on CUDA as many as fit in free GPU memory, at most --batch when given]")
@device_option(help="Fit on: auto (CUDA with triton when usable, else the CPU), cpu, cuda or cuda:N. On CUDA, "
                    "image files are decoded by --workers loader processes while the GPU fits batches.")
@click.option("--json", "as_json", is_flag=True,
              help="Print a JSON summary list (input, output, psnr, bytes, bpp, seconds, status, error) on stdout; "
                   "for tar shards one object per output shard (shard, status, source, samples, failures, bytes, "
                   "seconds, rank, errors).")
def encode(inputs: tuple[str, ...], outdir: Path | None, input_list: Path | None, shard: str | None,
           shard_size: int, points: int | None, density: float | None, bpp: float | None, effort: int | None,
           iterations: int | None, resize: int | None,
           quality: str, format_version: str, target_psnr: float | None, seed: int, force: bool, workers: int,
           batch: int | None, device: str, as_json: bool) -> None:
    """Fit images to Gaussians and write .gsi files (or .gsi tar shards).

    INPUTS are image files (any format Pillow reads), folders (searched
    recursively for image extensions) or glob patterns. Each output is the
    input's name with a .gsi suffix, next to the input or, with -o, under
    OUTDIR mirroring the input folders. Existing outputs are skipped unless
    --force, so an interrupted run resumes where it stopped; files are written
    atomically, so Ctrl-C never leaves a partial file. Images that cannot be
    read are reported and skipped; the exit status is then 1.

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
      gsi encode cat.jpg
      gsi encode photos/ -o splats/ --effort 1       # fastest: about 3.7x faster than the default
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

    from .encoding import Record, Settings, run
    from .inputs import discover, input_kind

    if not inputs and input_list is None:
        raise click.UsageError("give INPUTS (images, folders, globs or tar shards) or --input-list FILE")
    sharded = input_list is not None or input_kind(list(inputs)) == "shards"
    if input_list is not None and inputs:
        raise click.UsageError("give either INPUTS or --input-list, not both")
    if not sharded and input_kind(list(inputs)) == "mixed":
        raise click.UsageError("INPUTS mix tar shards with images: encode them in separate runs")
    if not sharded and shard is not None:
        raise click.UsageError("--shard applies to tar shards and --input-list")
    if sharded and outdir is None:
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
    err = err_console()
    if outdir is not None:
        if outdir.exists() and not outdir.is_dir():
            raise click.ClickException(f"output folder {outdir} is a file")
        if outdir.is_dir() and (problem := unwritable(outdir)) is not None:
            raise click.ClickException(printable(f"cannot write to output folder {outdir}: {problem}"))

    if sum(v is not None for v in (points, density, bpp)) > 1:
        raise click.UsageError("give only one of --points, --density and --bpp")
    dev = cli_device(device)
    if sharded and dev.type == "cuda":
        if device != "auto":
            raise click.UsageError("--device cuda encodes image files and folders; tar shards are fitted on the CPU")
        dev = cli_device("cpu")
    try:  # the settings check what the option types cannot (e.g. version 2 of a float quality)
        settings = Settings(points=points or 900, density=density, bpp=bpp, effort=effort, iterations=iterations,
                            resize=resize, quality=quality, force=force, seed=seed, target_psnr=target_psnr,
                            format_version=None if format_version == "auto" else int(format_version))
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    if sharded:
        from .shard_encoding import encode_sharded

        assert outdir is not None
        encode_sharded(inputs, input_list, outdir, settings, batch or 1, shard, shard_size, as_json, err)
        return

    found = discover(list(inputs), outdir)
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
        err.print(f"[red]✗[/] {safe(r.input)}: {safe(r.error or '')}")
    start = time.perf_counter()
    try:
        with sigterm_unwinds():
            if dev.type == "cuda":
                from .gpu_encoding import run_streaming

                records += run_streaming(found.jobs, settings, err, dev, loaders=workers, max_batch=batch)
            else:
                records += run(found.jobs, settings, err, workers=workers, batch=batch or 1)
    except (KeyboardInterrupt, Terminated) as exc:
        err.print("[red]interrupted[/]: finished files are complete and nothing was half-written; "
                  "run the same command again to resume")
        raise click.exceptions.Exit(143 if isinstance(exc, Terminated) else 130) from None
    elapsed = time.perf_counter() - start

    if as_json:
        click.echo(json.dumps([r.as_dict() for r in records], indent=2))
    encoded = [r for r in records if r.status == "encoded"]
    skipped = [r for r in records if r.status == "skipped"]
    failed = [r for r in records if r.status == "failed"]
    written = sum(r.bytes or 0 for r in encoded)
    err.print(f"encoded {len(encoded)}, skipped {len(skipped)}, failed {len(failed)} "
              f"in {elapsed:.1f} s; wrote {human_bytes(written)}")
    if failed:
        lines = "\n".join(printable(f"  {display_path(r.input)}: {r.error}") for r in failed)
        raise click.ClickException(f"{len(failed)} of {len(records)} input(s) failed:\n{lines}")


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
    try:
        cli(prog_name="gsi")
    except KeyboardInterrupt:  # outside click's own handling (e.g. while importing)
        raise SystemExit(130) from None


if __name__ == "__main__":
    main()
