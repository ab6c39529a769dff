"""``gsi verify``: check a set of `.gsi` tar shards against their manifests and, optionally, their inputs."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import click

from .common import (display_path, echo_json, echo_tsv, err_console, error_text, human_bytes, info_console,
                     out_console, printable, safe, stdout_is_terminal, verbosity_options)

if TYPE_CHECKING:
    from rich.table import Table

    from gscodec.shards import VerifyReport

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def _output_shards(specs: tuple[str, ...]) -> list[Path]:
    """Shard paths from files, patterns and folders; a folder's manifests name shards too (even missing ones)."""
    from gscodec.shards import is_tar_name
    from gscodec.shards.manifest import MANIFEST_SUFFIX

    from .inputs import discover_shards, expand_braces

    tars: list[str] = []
    extra: list[Path] = []
    for spec in specs:
        for item in expand_braces(spec):
            path = Path(item)
            if path.is_dir():
                extra += [m.with_name(m.name[: -len(MANIFEST_SUFFIX)] + ".tar")
                          for m in sorted(path.glob(f"*{MANIFEST_SUFFIX}")) if not m.name.startswith(".")]
                if any(is_tar_name(p.name) for p in path.iterdir()):
                    tars.append(item)
            elif item.endswith(MANIFEST_SUFFIX):
                extra.append(path.with_name(path.name[: -len(MANIFEST_SUFFIX)] + ".tar"))
            else:
                tars.append(item)
    found = discover_shards(tars) if tars else None
    if found is not None and found.problems:
        lines = "\n".join(printable(f"  {spec}: {reason}") for spec, reason in found.problems)
        raise click.ClickException(f"shard(s) not found:\n{lines}")
    shards = {os.path.realpath(p): p for p in (found.shards if found else [])}
    for p in extra:
        shards.setdefault(os.path.realpath(p), p)
    if not shards:
        raise click.ClickException(f"no tar shards or manifests in {', '.join(specs)}")
    return sorted(shards.values(), key=str)


@click.command("verify", context_settings=CONTEXT)
@click.argument("shards", nargs=-1, required=True)
@click.option("--inputs", "input_specs", multiple=True, metavar="SHARDS",
              help="The input tar shards the set was encoded from (a folder, a file, or a quoted pattern such as "
                   "'in/*.tar' or 'in/{000..009}.tar'; repeatable): every input key must be encoded or listed as a "
                   "failure exactly once.")
@click.option("--input-list", type=click.Path(exists=True, dir_okay=False, readable=False, path_type=Path),
              metavar="FILE",
              help="The input list the set was encoded from (gsi encode --input-list): every line must be encoded "
                   "or listed as a failure exactly once.")
@click.option("--json", "as_json", is_flag=True,
              help="Print one JSON document on stdout (docs/json.md): a record per shard, the problems and totals in "
                   "the summary.")
@verbosity_options(verbose=False)
def verify(shards: tuple[str, ...], input_specs: tuple[str, ...], input_list: Path | None, as_json: bool) -> None:
    """Check .gsi tar shards written by gsi encode; exit status 1 on any problem.

    SHARDS are output folders (their .tar files and manifests), shard files
    or quoted patterns. Checked: every shard reads and has a manifest; every
    .gsi member decodes (checksum and parameters); the shard's keys, members
    and size match its manifest; no key is repeated inside a shard or
    accounted for (encoded or failed) by two shards. With --inputs or
    --input-list also: every input key is encoded or listed as a failure in
    its manifest exactly once, no shard comes from another input, and no
    input changed since it was encoded. Prints a table of the shards (one
    tab-separated line per shard when stdout is not a terminal) and the
    problems (stderr), or a --json report.

    \b
    Examples:
      gsi verify gsi-shards/
      gsi verify gsi-shards/ --inputs shards/
      gsi verify 'gsi-shards/{000..009}.tar' --inputs 'shards/{000..009}.tar' --json
      gsi verify gsi-shards/ --input-list photos.txt
    """
    from gscodec.shards import ShardError, verify_shards

    from .inputs import discover_shards, read_input_list

    outputs = _output_shards(shards)
    input_shards = None
    if input_specs:
        found = discover_shards(list(input_specs))
        if found.problems:
            lines = "\n".join(printable(f"  {spec}: {reason}") for spec, reason in found.problems)
            raise click.ClickException(f"input shard(s) not found:\n{lines}")
        input_shards = found.shards
    listed = None
    if input_list is not None:
        try:
            listed = read_input_list(input_list)
        except OSError as exc:
            raise click.ClickException(f"cannot read {input_list}: {error_text(exc)}") from None
    err, info = err_console(), info_console()
    try:
        with info.status(f"verifying {len(outputs)} shard(s)...", spinner="dots"):
            report = verify_shards(outputs, input_shards, listed)
    except (ShardError, OSError) as exc:
        raise click.ClickException(error_text(exc)) from None
    problems = report.all_problems()
    totals = report.to_json()["totals"]
    if as_json:
        rows = [{"shard": s.shard, "status": "ok" if s.ok else "failed", "error": s.problems[0] if s.problems else None,
                 "samples": s.samples, "failures": s.failures, "bytes": s.bytes, "gsi_bytes": s.gsi_bytes,
                 "inputs": s.inputs, "problems": s.problems} for s in report.shards]
        echo_json("verify", rows, {**totals, "input_keys": report.input_keys, "problems": problems}, ok=report.ok)
    elif stdout_is_terminal():
        out_console().print(_table(report))
    else:
        echo_tsv(["shard", "samples", "failures", "bytes", "inputs", "status", "problems"],
                 [[s.shard, s.samples, s.failures, s.bytes, ",".join(s.inputs), "ok" if s.ok else "failed",
                   "; ".join(s.problems)] for s in report.shards])
    for p in problems:
        err.print(f"[red]✗[/] {safe(p)}")
    compared = f"; {report.input_keys} input key(s) compared" if report.input_keys is not None else ""
    info.print(f"{totals['shards']} shard(s), {totals['samples']} sample(s), {totals['failures']} recorded "
               f"failure(s), {human_bytes(totals['bytes'])}{compared}")
    if problems:
        raise click.ClickException(f"{len(problems)} problem(s) found")
    info.print("[green]ok[/]")


def _table(report: VerifyReport) -> Table:
    from rich.table import Table

    table = Table(title="gsi shards")
    table.add_column("Shard", overflow="fold")
    table.add_column("Samples", justify="right")
    table.add_column("Failed", justify="right")
    table.add_column("Size", justify="right")
    table.add_column("Input", overflow="fold")
    table.add_column("Status", overflow="fold")
    for s in report.shards:
        source = (Path(s.inputs[0]).name if len(s.inputs) == 1 else f"{len(s.inputs)} files") if s.inputs else "-"
        status = "[green]ok[/]" if s.ok else f"[red]{len(s.problems)} problem(s)[/]: {safe(s.problems[0])}"
        table.add_row(safe(display_path(s.shard)), str(s.samples), str(s.failures), human_bytes(s.bytes),
                      safe(source), status)
    return table


__all__ = ["verify"]
