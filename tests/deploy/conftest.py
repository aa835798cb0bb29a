"""The deploy suite's stack: one compose project for the whole session, ``down -v`` at the end.

Run it with ``make deploy-test`` (scripts/deploy_test.sh), which starts its own Docker engine,
builds the images and names them in ``VIDJOBS_DEPLOY_*``; ``make test`` leaves this directory
out (pyproject.toml: ``-m "not deploy"``). Run by hand without that engine, the suite fails at
its first ``docker compose`` call, naming it: it never skips.
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.deploy.stack import Stack
from vidjobs.worker.pipelines.yolo_ocr.settings import FIXTURE_WEIGHTS


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    """The compose project, not up yet; its volumes are removed when the session ends."""
    models = Path(tempfile.mkdtemp(prefix="vidjobs-deploy-models-"))
    shutil.copy(FIXTURE_WEIGHTS, models / "detector.pt")
    models.chmod(0o755)
    (models / "detector.pt").chmod(0o644)
    stack = Stack(
        project=f"vidjobs-deploy-{uuid.uuid4().hex[:8]}",
        env={"VIDJOBS_DEPLOY_MODELS_DIR": str(models)},
    )
    try:
        yield stack
    finally:
        stack.close_forwards()
        stack.compose("down", "-v", "--timeout", "5", check=False)
        shutil.rmtree(models, ignore_errors=True)
