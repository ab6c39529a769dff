"""Worker processes that end with their parent: the CPU encode pool, ``gsi bench``'s pool, DataLoader workers."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
import threading
import time

_PR_SET_PDEATHSIG = 1


def die_with_parent(parent: int) -> None:
    """In a worker process: receive SIGTERM when the parent process (id ``parent``) ends, even by SIGKILL,
    or at once if it already has.

    Linux: ``prctl(PR_SET_PDEATHSIG, SIGTERM)`` (sent when the thread that
    started the worker ends, so start workers from a thread that lives as long
    as the parent's use of them); elsewhere a daemon thread that checks the
    parent's id every second. SIGTERM's default action ends the worker; pair it
    with a handler that unwinds where temporary files must go too.
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


def loader_worker_init(parent: int, worker_id: int) -> None:
    """A ``DataLoader`` ``worker_init_fn`` (bind ``parent`` with :func:`functools.partial`): the worker ends with
    process ``parent``."""
    die_with_parent(parent)


__all__ = ["die_with_parent", "loader_worker_init"]
