"""Shared CLI helpers: the consoles and verbosity, the ``--json`` document, plain lines for pipes, error
messages, untrusted text made safe to print, number formatting."""

from __future__ import annotations

import json
import math
import os
import re
import sys
from typing import Any, BinaryIO, Callable, TypeVar

import click
from rich.console import Console
from rich.markup import escape

from gscodec.files import error_text  # noqa: F401  (re-exported: the CLI's error lines)

_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
"""C0 and C1 controls (escape sequences, newlines) and bidirectional overrides, which can disguise text."""


STDIO = "-"
"""The file name that stands for standard input or output."""

JSON_SCHEMA_VERSION = 1
"""``schema_version`` of every ``--json`` document (``docs/json.md``); raised when a key changes meaning or goes."""

F = TypeVar("F", bound=Callable[..., Any])
_VERBOSITY = "gscodec_cli.verbosity"


def _set_verbosity(ctx: click.Context, param: click.Parameter, value: Any) -> None:
    if param.name == "quiet" and value:
        ctx.meta[_VERBOSITY] = -1
    elif param.name == "verbose" and value and ctx.meta.get(_VERBOSITY, 0) >= 0:
        ctx.meta[_VERBOSITY] = 1


def verbosity_options(verbose: bool = True) -> Callable[[F], F]:
    """``-s/--quiet`` (and ``-v/--verbose``) for a command; :func:`verbosity` reads them. ``--quiet`` wins."""
    def decorate(f: F) -> F:
        f = click.option("-s", "--quiet", is_flag=True, expose_value=False, callback=_set_verbosity,
                         help="Quiet: no progress, per-file lines or summary on stderr; errors and warnings "
                              "still (-s as in curl's --silent: -q is encode's quality, as in cwebp).")(f)
        if verbose:
            f = click.option("-v", "--verbose", is_flag=True, expose_value=False, callback=_set_verbosity,
                             help="Say more on stderr (the settings used, timings).")(f)
        return f
    return decorate


def verbosity() -> int:
    """-1 with ``--quiet``, 1 with ``--verbose``, else 0 (also outside a command)."""
    ctx = click.get_current_context(silent=True)
    return 0 if ctx is None else int(ctx.meta.get(_VERBOSITY, 0))


def binary_stdin() -> BinaryIO:
    """Standard input as bytes."""
    return getattr(sys.stdin, "buffer", sys.stdin)


def binary_stdout() -> BinaryIO:
    """Standard output as bytes."""
    return getattr(sys.stdout, "buffer", sys.stdout)


def out_console() -> Console:
    """Console for results (tables) on stdout."""
    return Console(highlight=False)


def err_console() -> Console:
    """Console for warnings and errors on stderr, shown even with ``--quiet`` (lines are not wrapped, so paths
    stay whole)."""
    return Console(stderr=True, highlight=False, soft_wrap=True)


def info_console() -> Console:
    """Console for progress, per-file lines and summaries on stderr: silent with ``--quiet``."""
    return Console(stderr=True, highlight=False, soft_wrap=True, quiet=verbosity() < 0)


def shows_bars(console: Console) -> bool:
    """Whether progress bars and spinners go to ``console``: only a terminal (rich's test, which honours
    ``TTY_COMPATIBLE`` and ``FORCE_COLOR``), and never with ``--quiet``."""
    return console.is_terminal and not console.quiet


def stdout_is_terminal() -> bool:
    """Whether stdout is a terminal: tables there; plain tab-separated lines, one per record, anywhere else."""
    return out_console().is_terminal


def tsv(values: list[Any]) -> str:
    """One tab-separated line of ``values`` (``None`` as ``-``; tabs and other control characters escaped by
    :func:`printable`, so a value never splits a line or a column)."""
    return "\t".join("-" if v is None else printable(v) for v in values)


def echo_tsv(header: list[str], rows: list[list[Any]]) -> None:
    """Print a header line and one line per record on stdout, for pipes and files."""
    click.echo(tsv(header))
    for row in rows:
        click.echo(tsv(row))


def json_document(command: str, records: list[dict[str, Any]], summary: dict[str, Any], ok: bool) -> dict[str, Any]:
    """The ``--json`` document every command prints: ``schema_version``, ``command``, ``ok`` (the exit status
    is 0), ``records`` (one object per file, image, shard or point, failures included, each with ``status``
    and ``error``) and ``summary``."""
    return {"schema_version": JSON_SCHEMA_VERSION, "command": command, "ok": ok, "records": records,
            "summary": summary}


def echo_json(command: str, records: list[dict[str, Any]], summary: dict[str, Any], ok: bool) -> None:
    """Print :func:`json_document` on stdout (non-finite numbers as ``null``)."""
    click.echo(json.dumps(_finite(json_document(command, records, summary, ok)), indent=2))


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def printable(text: object) -> str:
    """``text`` (a file name, metadata, an error naming them) with every control character shown as ``\\xNN``
    or ``\\uNNNN``, so that it prints on one line and cannot drive the terminal."""
    return _UNPRINTABLE.sub(lambda m: repr(m.group())[1:-1] if ord(m.group()) < 0x100 else f"\\u{ord(m.group()):04x}",
                            str(text))


def safe(text: object) -> str:
    """Untrusted ``text`` for rich output: :func:`printable`, then rich markup (``[bold]``) escaped."""
    return escape(printable(text))


def unwritable(folder: str | os.PathLike) -> str | None:
    """Why files cannot be created in the existing ``folder`` (``"read-only file system"``,
    ``"permission denied"``), or ``None`` when they can."""
    if os.access(folder, os.W_OK | os.X_OK):
        return None
    try:
        if os.statvfs(folder).f_flag & os.ST_RDONLY:
            return "read-only file system"
    except (OSError, AttributeError):  # no statvfs on Windows
        pass
    return "permission denied"


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether ``a`` and ``b`` name one file (through links too); ``False`` when either does not exist."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def human_bytes(n: float) -> str:
    """``1234`` -> ``'1.2 kB'`` (decimal units)."""
    for unit in ("B", "kB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


def display_path(path: str | os.PathLike) -> str:
    """``path`` relative to the working folder when it is inside it, else as given."""
    text = os.fspath(path)
    try:
        rel = os.path.relpath(text)
    except ValueError:  # another drive on Windows
        return text
    return rel if not rel.startswith("..") else text
