"""Streaming many image files through a batched fitter: decode ahead, batch by size, write behind.

* :func:`stream_images`: a :class:`torch.utils.data.DataLoader` whose worker
  processes decode (and resize) the files ahead of the fitter, in order, so
  the GPU never waits on JPEG decoding;
* :class:`SizeBatcher`: collects decoded images into same-size batches of a
  size chosen per image size (e.g. :func:`gscodec.fit.placement.choose_batch_size`);
* :class:`BackgroundWriter`: writes finished files atomically on a thread, so
  the fitter never waits on the disk either.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
from torch.utils.data import DataLoader, Dataset

from ..format import GsiError, write_atomic
from ..imageio import ImageReadError, load_image, resize_for_clip
from ..processes import loader_worker_init


@dataclass
class Loaded:
    """One decoded input: ``image`` ``(H, W, 3)`` uint8, or ``None`` and the ``error`` that stopped it."""

    index: int
    image: np.ndarray | None
    error: str | None
    seconds: float


class ImageFiles(Dataset):
    """Image files decoded to ``(H, W, 3)`` uint8 arrays, resized and centre-cropped to ``resize`` if given.

    An unreadable file gives a :class:`Loaded` with its error, never an exception.
    """

    def __init__(self, paths: Sequence[str | Path], resize: int | None = None) -> None:
        self.paths = [Path(p) for p in paths]
        self.resize = resize

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> Loaded:
        start = time.perf_counter()
        try:
            image = load_image(self.paths[index])
            if self.resize is not None:
                image = resize_for_clip(image, self.resize)
        except ImageReadError as exc:
            return Loaded(index, None, exc.reason, time.perf_counter() - start)
        except (OSError, ValueError) as exc:
            return Loaded(index, None, str(exc) or type(exc).__name__, time.perf_counter() - start)
        return Loaded(index, np.ascontiguousarray(image), None, time.perf_counter() - start)


def _as_is(item: Loaded) -> Loaded:
    return item


_END = object()


def _read_ahead(items: Iterable[Loaded], ahead: int) -> Iterator[Loaded]:
    """``items`` collected by a thread up to ``ahead`` in advance, so they keep coming while the caller computes."""
    buffer: queue.Queue = queue.Queue(maxsize=max(1, ahead))

    def fill() -> None:
        try:
            for item in items:
                buffer.put(item)
        except BaseException as exc:  # handed to the consumer
            buffer.put(exc)
        buffer.put(_END)

    threading.Thread(target=fill, name="gsi-reader", daemon=True).start()
    while (item := buffer.get()) is not _END:
        if isinstance(item, BaseException):
            raise item
        yield item


def stream_images(paths: Sequence[str | Path], resize: int | None = None, workers: int = 2,
                  prefetch: int = 4, ahead: int = 512) -> Iterator[Loaded]:
    """Decode ``paths`` in order in ``workers`` processes (0: in a thread of this one).

    Each worker decodes up to ``prefetch`` files in advance, and a thread keeps
    up to ``ahead`` decoded images ready, so a whole next batch is decoded while
    the current one is fitted (``ahead`` should exceed the batch size). The
    workers end with this process, even when it is killed outright.
    """
    if workers < 0:
        raise ValueError(f"workers must be non-negative, got {workers}")
    loader = DataLoader(ImageFiles(paths, resize), batch_size=None, shuffle=False, num_workers=workers,
                        collate_fn=_as_is, prefetch_factor=prefetch if workers > 0 else None,
                        worker_init_fn=partial(loader_worker_init, os.getpid()))
    yield from _read_ahead(iter(loader), ahead)  # workers start here, in the caller's thread


class SizeBatcher:
    """Groups decoded images by size into batches of ``batch_size(height, width)`` images.

    A batch is released as soon as it is full; when more than ``max_pending``
    images wait (many sizes), the largest group is released early.
    """

    def __init__(self, batch_size: Callable[[int, int], int], max_pending: int = 256) -> None:
        self.batch_size = batch_size
        self.max_pending = max(1, max_pending)
        self._groups: dict[tuple[int, int], list[Loaded]] = {}
        self._sizes: dict[tuple[int, int], int] = {}

    def add(self, item: Loaded) -> list[list[Loaded]]:
        """Queue a decoded ``item``; the batches that are now ready."""
        if item.image is None:
            raise ValueError(f"input {item.index} was not decoded: {item.error}")
        key = (int(item.image.shape[0]), int(item.image.shape[1]))
        if key not in self._sizes:
            self._sizes[key] = max(1, int(self.batch_size(*key)))
        group = self._groups.setdefault(key, [])
        group.append(item)
        ready = []
        if len(group) >= self._sizes[key]:
            ready.append(self._groups.pop(key))
        if sum(map(len, self._groups.values())) > self.max_pending:
            largest = max(self._groups, key=lambda k: len(self._groups[k]))
            ready.append(self._groups.pop(largest))
        return ready

    def flush(self) -> list[list[Loaded]]:
        """Every batch still waiting."""
        ready = list(self._groups.values())
        self._groups.clear()
        return ready


@dataclass
class Written:
    """The outcome of one background write: ``error`` is ``None`` on success."""

    key: object
    path: Path
    size: int
    seconds: float
    error: Exception | None


class BackgroundWriter:
    """Atomic file writes (:func:`gscodec.format.write_atomic`) on one thread, at most ``max_pending`` queued.

    Use as a context manager; :meth:`done` returns the writes finished so far,
    :meth:`close` waits for the rest and returns them.
    """

    def __init__(self, max_pending: int = 64) -> None:
        self._todo: queue.Queue = queue.Queue(maxsize=max(1, max_pending))
        self._done: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="gsi-writer", daemon=True)
        self._thread.start()
        self._closed = False

    def _run(self) -> None:
        while (job := self._todo.get()) is not None:
            key, path, data = job
            start = time.perf_counter()
            try:
                write_atomic(path, data)
                error = None
            except (GsiError, OSError) as exc:
                error = exc
            self._done.put(Written(key, path, len(data), time.perf_counter() - start, error))

    def submit(self, key: object, path: str | Path, data: bytes) -> None:
        """Queue ``data`` for ``path`` (blocks while ``max_pending`` writes wait)."""
        if self._closed:
            raise RuntimeError("the writer is closed")
        self._todo.put((key, Path(path), data))

    def done(self) -> list[Written]:
        """The writes finished since the last call, without waiting."""
        out = []
        while True:
            try:
                out.append(self._done.get_nowait())
            except queue.Empty:
                return out

    def _finish(self) -> None:
        if not self._closed:
            self._closed = True
            self._todo.put(None)
            self._thread.join()

    def close(self) -> list[Written]:
        """Finish every queued write; the writes not yet returned by :meth:`done`."""
        self._finish()
        return self.done()

    def __enter__(self) -> BackgroundWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self._finish()  # the results stay for close() / done()


__all__ = ["BackgroundWriter", "ImageFiles", "Loaded", "SizeBatcher", "Written", "stream_images"]
