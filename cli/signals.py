"""Signals of ``gsi encode``: SIGTERM unwinds like Ctrl-C, and worker processes die with their parent."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
import threading
import time
from contextlib import AbstractContextManager, contextmanager
from typing import Any, Callable, Iterator

_PR_SET_PDEATHSIG = 1


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


def die_with_parent(parent: int) -> None:
    """In a worker process: receive SIGTERM when the parent process (id ``parent``) ends, even by SIGKILL,
    or at once if it already has.

    Linux: ``prctl(PR_SET_PDEATHSIG, SIGTERM)``; elsewhere a daemon thread
    that checks the parent's id every second. Pair it with a SIGTERM handler
    that unwinds (:func:`raise_terminated`) so that temporary files go too.
    """
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
            if libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0) == 0:
                if os.getppid() != parent:  # the parent ended before the request took effect (while importing)
                    os.kill(os.getpid(), signal.SIGTERM)
                return
        except (OSError, AttributeError):
            pass

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="gsi-parent-watch", daemon=True).start()


__all__ = ["Terminated", "die_with_parent", "raise_terminated", "sigint_ignored", "sigterm_unwinds"]
