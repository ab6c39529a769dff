"""Signals of ``gsi encode``: SIGTERM unwinds like Ctrl-C, and worker processes die with their parent
(:func:`gscodec.processes.die_with_parent`, re-exported here)."""

from __future__ import annotations

import signal
from contextlib import AbstractContextManager, contextmanager
from typing import Any, Callable, Iterator

from gscodec.processes import die_with_parent


class Terminated(SystemExit):
    """SIGTERM: unwinds the stack so that temporary files are removed, then the process exits with 143.

    Not an ``Exception``, so that the per-image ``except Exception`` of the
    fitter does not record it as a failed image; a ``SystemExit``, so that an
    idle worker process it reaches ends quietly.
    """

    def __init__(self) -> None:
        super().__init__(128 + signal.SIGTERM)


def raise_terminated(signum: int, frame: Any) -> None:
    """A SIGTERM handler: raise :class:`Terminated`."""
    raise Terminated()


@contextmanager
def _handled(signum: int, handler: Callable[..., Any] | int) -> Iterator[None]:
    """Within the block, ``handler`` takes ``signum`` in the main thread (elsewhere nothing changes)."""
    try:
        previous = signal.signal(signum, handler)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signum, previous)


def sigterm_unwinds() -> AbstractContextManager[None]:
    """Within the block, SIGTERM raises :class:`Terminated` in the main thread (elsewhere it is left alone)."""
    return _handled(signal.SIGTERM, raise_terminated)


def sigint_ignored() -> AbstractContextManager[None]:
    """Ignore SIGINT while worker processes start, so that they inherit the ignored disposition."""
    return _handled(signal.SIGINT, signal.SIG_IGN)


__all__ = ["Terminated", "die_with_parent", "raise_terminated", "sigint_ignored", "sigterm_unwinds"]
