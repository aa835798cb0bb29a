"""Fixtures shared by the acceptance tests that talk to a running API as clients do."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.processes import Processes, Services
from vidjobs.blobs import BlobSettings
from vidjobs.worker.pipelines.yolo_ocr.settings import FIXTURE_IMGSZ, FIXTURE_WEIGHTS


@pytest.fixture
def noop_services(
    processes: Processes, database_url: str, s3_settings: BlobSettings, tmp_path: Path
) -> Services:
    """API and worker on the test's database and a fresh S3 bucket; a bare submit is noop."""
    return Services(
        processes,
        database_url,
        s3_settings,
        {
            "VIDJOBS_API_DEFAULT_PIPELINE": "noop",
            "VIDJOBS_DETECTOR_WEIGHTS": str(FIXTURE_WEIGHTS),
            "VIDJOBS_DETECTOR_IMGSZ": str(FIXTURE_IMGSZ),
            "YOLO_CONFIG_DIR": str(tmp_path / "ultralytics"),
        },
    )
