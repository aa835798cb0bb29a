"""Segment jobs: the ids and time ranges of a long video's parts, known to API and worker alike.

A video longer than the pipeline's threshold is analysed as consecutive segments, each an
ordinary job (``docs/architecture.md``, "Long videos as segments"). The ranges lie on the
video's global sampling grid (one sample at t = 0, then one every ``1 / sample_fps`` s), so
every sampled frame falls in exactly one segment and no frame is analysed twice or skipped.
A segment's id is derived from its parent's, so a repeated split names the same jobs and the
merge finds each segment's results without a query.
"""

from __future__ import annotations

import math
import uuid

__all__ = ["SEGMENT_NAMESPACE", "plan_segments", "segment_job_id", "segment_samples"]

#: uuid5 namespace of segment ids (fixed: ids must not change between releases).
SEGMENT_NAMESPACE = uuid.UUID("6f0c2a6e-3d4b-5e8f-9a1b-2c3d4e5f6a7b")


def segment_job_id(parent_id: uuid.UUID, index: int) -> uuid.UUID:
    """The job id of segment ``index`` of ``parent_id``."""
    return uuid.uuid5(SEGMENT_NAMESPACE, f"{parent_id}/{index}")


def plan_segments(
    samples: int, sample_fps: float, segment_seconds: float
) -> list[tuple[int, int, int]]:
    """Split ``samples`` grid samples into segments of about ``segment_seconds``.

    Returns ``(start_ms, end_ms, samples)`` per segment: sample k (at k / sample_fps s) belongs
    to the segment whose range holds k * 1000 / sample_fps. Ranges start on grid points, so
    every sample lies in exactly one range. The last range ends just past the last sample; a
    remainder shorter than half a segment joins the segment before it.
    """
    step_ms = 1000.0 / sample_fps
    per = max(1, round(segment_seconds * sample_fps))
    count = max(1, math.ceil(samples / per))
    if count > 1 and samples - (count - 1) * per < per / 2:
        count -= 1
    out: list[tuple[int, int, int]] = []
    for i in range(count):
        first = i * per
        last = samples if i == count - 1 else (i + 1) * per  # exclusive sample index
        start_ms = math.floor(first * step_ms)
        end_ms = (
            math.floor(last * step_ms)
            if i < count - 1
            else math.floor((samples - 1) * step_ms) + 1  # just past the last sample
        )
        out.append((start_ms, end_ms, last - first))
    return out


def segment_samples(start_ms: int, end_ms: int, sample_fps: float) -> tuple[int, int]:
    """The grid samples ``(first, stop)`` (stop exclusive) of a segment's range.

    The inverse of :func:`plan_segments`: sample k lies in the range when
    ``start_ms <= k * 1000 / sample_fps < end_ms`` (ranges start on floored grid times).
    """
    first = math.ceil(start_ms * sample_fps / 1000 - 1e-9)
    stop = math.ceil(end_ms * sample_fps / 1000 - 1e-9)
    return first, stop
