"""The segment plan: every sample of the video's grid in exactly one segment, ids stable."""

from __future__ import annotations

import uuid

import pytest

from vidjobs.schema.segments import plan_segments, segment_job_id, segment_samples


@pytest.mark.parametrize(
    ("samples", "sample_fps", "segment_s", "count"),
    [
        (1200, 1.0, 120, 10),  # 20 minutes at 1 frame/s
        (7200, 1.0, 120, 60),  # two hours
        (301, 1.0, 120, 3),  # a remainder over half a segment is a segment of its own
        (250, 1.0, 120, 2),  # ... and under half joins the one before
        (240, 0.2, 240, 5),  # 20 minutes at one frame per 5 s
        (1000, 3.0, 100, 3),  # a step of 333.3 ms: ranges start on floored grid times
        (130, 1.0, 120, 1),  # not worth splitting
    ],
)
def test_every_grid_sample_lies_in_exactly_one_segment(
    samples: int, sample_fps: float, segment_s: float, count: int
) -> None:
    plan = plan_segments(samples, sample_fps, segment_s)
    assert len(plan) == count
    covered: list[int] = []
    for start_ms, end_ms, n in plan:
        first, stop = segment_samples(start_ms, end_ms, sample_fps)
        assert stop - first == n
        for k in (first, stop - 1):  # the range holds its own samples' times
            assert start_ms <= k * 1000 / sample_fps < end_ms
        covered += range(first, stop)
    assert covered == list(range(samples))
    assert [p[0] for p in plan[1:]] == [p[1] for p in plan[:-1]]  # consecutive, no gap


def test_segment_ids_are_derived_from_the_parent_and_index() -> None:
    parent = uuid.UUID("00000000-0000-4000-8000-000000000001")
    ids = [segment_job_id(parent, i) for i in range(3)]
    assert len(set(ids)) == 3
    assert ids == [segment_job_id(parent, i) for i in range(3)]  # the same on every call
    assert segment_job_id(uuid.uuid4(), 0) != ids[0]
