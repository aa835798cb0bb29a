"""The decode-ahead thread (``yolo_ocr.prefetch``): order, errors, early exit, closing."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from vidjobs.worker.pipelines.yolo_ocr.prefetch import prefetched


class Source:
    """A generator-like source that records where it ran and whether it was closed."""

    def __init__(self, n: int, fail_at: int | None = None) -> None:
        self.n, self.fail_at = n, fail_at
        self.threads: set[str] = set()
        self.closed = False
        self.made = 0

    def __iter__(self) -> Iterator[int]:
        return self._gen()

    def _gen(self) -> Iterator[int]:
        try:
            for i in range(self.n):
                self.threads.add(threading.current_thread().name)
                if i == self.fail_at:
                    raise ValueError(f"bad frame {i}")
                self.made += 1
                yield i
        finally:
            self.closed = True


@pytest.mark.parametrize("depth", [0, 1, 2])
def test_items_come_in_order_and_the_source_is_closed(depth: int) -> None:
    src = Source(50)
    with prefetched(iter(src), depth=depth) as items:
        assert list(items) == list(range(50))
    assert src.closed
    if depth:
        assert src.threads == {"vidjobs-decode"}


def test_an_error_comes_after_the_items_before_it() -> None:
    src = Source(10, fail_at=4)
    got: list[int] = []
    with pytest.raises(ValueError, match="bad frame 4"), prefetched(iter(src)) as items:
        got.extend(items)
    assert got == [0, 1, 2, 3]
    assert src.closed


def test_leaving_early_stops_the_thread_and_closes_the_source() -> None:
    src = Source(10_000)
    with prefetched(iter(src), depth=2) as items:
        for i in items:
            if i == 3:
                break
    # Closed before the block was left, by the decode thread, after a bounded read-ahead.
    assert src.closed
    assert src.made <= 3 + 1 + 2 + 1
    assert not [t for t in threading.enumerate() if t.name == "vidjobs-decode"]
