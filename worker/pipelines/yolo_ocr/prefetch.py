"""Decode ahead: a generator run in a thread of its own, feeding a bounded queue.

The analyzer's models wait for the next sampled frame while OpenCV or PyAV decodes every frame
up to it (``decode.VideoSource.sample``); both decoders release the GIL, so decoding the next
sample while the models read this one hides most of the decode time (measured in
docs/pipeline.md, "Overlapping the stages").

The generator is advanced, and closed, only in the decode thread: a generator must never run in
two threads, and ``VideoSource.sample`` closes its capture in its own ``finally``. Leaving the
``with`` block early (a stop, an error in a model) tells the thread to stop, and waits for it,
so the capture is released before the caller goes on.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Iterator
from typing import Generic, TypeVar

__all__ = ["prefetched"]

T = TypeVar("T")

_POLL_S = 0.05  # how often a blocked put looks whether the consumer left


class _End:
    """The generator ended (``error`` None) or raised ``error``."""

    def __init__(self, error: BaseException | None) -> None:
        self.error = error


class _Prefetcher(Generic[T]):
    def __init__(self, source: Iterator[T], depth: int) -> None:
        self._source = source
        self._queue: queue.Queue[T | _End] = queue.Queue(maxsize=depth)
        self._left = threading.Event()
        self._thread = threading.Thread(target=self._run, name="vidjobs-decode", daemon=True)

    def _put(self, item: T | _End) -> bool:
        while not self._left.is_set():
            try:
                self._queue.put(item, timeout=_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        error: BaseException | None = None
        try:
            for item in self._source:
                if not self._put(item):
                    return
        except BaseException as exc:  # handed to the consumer, raised there
            error = exc
        finally:
            close = getattr(self._source, "close", None)
            if close is not None:
                with contextlib.suppress(Exception):
                    close()
        self._put(_End(error))

    def __iter__(self) -> Iterator[T]:
        while True:
            item = self._queue.get()
            if isinstance(item, _End):
                if item.error is not None:
                    raise item.error
                return
            yield item

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._left.set()
        self._thread.join()


@contextlib.contextmanager
def prefetched(source: Iterator[T], depth: int = 2) -> Iterator[Iterator[T]]:
    """Iterate ``source`` up to ``depth`` items ahead, in a thread of its own.

    Items come in order; an exception the generator raises is raised by the iteration where
    it happened, after the items before it. ``depth`` < 1 iterates in the caller's thread.
    """
    if depth < 1:
        try:
            yield source
        finally:
            close = getattr(source, "close", None)
            if close is not None:
                close()
        return
    fetcher = _Prefetcher(source, depth)
    fetcher.start()
    try:
        yield iter(fetcher)
    finally:
        fetcher.stop()
