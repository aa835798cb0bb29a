"""The metrics' own rules, without servers: label bounds, the multiprocess directory's life."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from prometheus_client import generate_latest

from tests.support.metrics import Scrape
from vidjobs.api.metrics import MULTIPROC_ENV, multiprocess_directory
from vidjobs.worker.metrics import WorkerMetrics


def _scrape(metrics: WorkerMetrics) -> Scrape:
    return Scrape.parse(generate_latest(metrics.registry).decode())


def test_worker_error_kinds_are_bounded() -> None:
    m = WorkerMetrics()
    for i in range(80):
        m.job_failed("noop", f"kind_{i}")
    m.job_failed("noop", "kind_3")  # one already seen keeps its own series
    s = _scrape(m)
    kinds = s.label_values("vidjobs_worker_jobs_failed_total", "error_kind")
    assert len(kinds) == 51
    assert s.get("vidjobs_worker_jobs_failed_total", pipeline="noop", error_kind="other") == 30
    assert s.get("vidjobs_worker_jobs_failed_total", pipeline="noop", error_kind="kind_3") == 2


def test_worker_stage_times_take_only_the_documented_stages() -> None:
    m = WorkerMetrics()
    observe = m.stage_timer("yolo_ocr")
    observe("detect", 0.02)
    observe("made_up", 1.0)
    m.job_claimed("noop")
    m.job_done("noop", 0.5, frames=0)
    s = _scrape(m)
    assert s.label_values("vidjobs_worker_stage_seconds_count", "stage") == {"detect"}
    assert s.get("vidjobs_worker_stage_seconds_count", pipeline="yolo_ocr", stage="detect") == 1
    # noop reported no frames: no frame-rate series, and no stage series of its own.
    assert "noop" not in s.label_values("vidjobs_worker_job_frames_per_second_count", "pipeline")
    assert s.get("vidjobs_worker_job_duration_seconds_count", pipeline="noop") == 1
    assert s.get("vidjobs_worker_jobs_in_flight") == 0


def test_worker_gauges_are_read_at_scrape_time() -> None:
    m = WorkerMetrics()
    running = [3]
    m.watch(lambda: running[0], lambda: {"yolo_ocr": 4.5})
    assert _scrape(m).get("vidjobs_worker_jobs_in_flight") == 3
    running[0] = 1
    s = _scrape(m)
    assert s.get("vidjobs_worker_jobs_in_flight") == 1
    assert s.get("vidjobs_worker_model_load_seconds", pipeline="yolo_ocr") == 4.5


def test_multiprocess_directory_is_made_for_several_processes_and_removed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(MULTIPROC_ENV, raising=False)
    with multiprocess_directory(1) as none:
        assert none is None
        assert MULTIPROC_ENV not in os.environ
    with multiprocess_directory(2) as made:
        assert made is not None
        assert Path(made).is_dir()
        assert os.environ[MULTIPROC_ENV] == made
    assert not Path(made).exists()
    assert MULTIPROC_ENV not in os.environ


def test_a_directory_the_deployment_names_is_its_own(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(MULTIPROC_ENV, str(tmp_path))
    with multiprocess_directory(4) as given:
        assert given == str(tmp_path)
    assert tmp_path.is_dir()  # not removed: vidjobs api did not make it
    assert os.environ[MULTIPROC_ENV] == str(tmp_path)
