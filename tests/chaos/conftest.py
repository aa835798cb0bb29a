"""Fixtures of the chaos suite: a Postgres and an S3 server that a test may stop and start.

Processes come from the ``processes`` fixture (``tests/conftest.py``), which stops each by its
PID afterwards (SIGCONT first, in case a test paused it); the verdict on a run (the audit trail,
the stored results) and the figures it prints are in ``tests/support/audit.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.postgres import RestartablePostgres, restartable_postgres
from tests.support.s3 import private_s3
from vidjobs.blobs import BlobSettings
from vidjobs.devstack.embedded import EmbeddedS3


@pytest.fixture
def restartable_pg() -> Iterator[RestartablePostgres]:
    """A durable Postgres of this test alone, with a migrated ``vidjobs`` database."""
    with restartable_postgres() as pg:
        yield pg


@pytest.fixture
def restartable_s3(tmp_path: Path) -> Iterator[tuple[EmbeddedS3, BlobSettings]]:
    """An S3 server (SeaweedFS) this test may stop and start on the same port and data."""
    with private_s3(tmp_path / "s3", bucket="chaos") as (server, settings):
        yield server, settings
