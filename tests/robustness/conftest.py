"""Fixtures of the robustness tests: a live stack (real processes) on a fresh database."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.robustness.live import LiveStack


@pytest.fixture
def live(tmp_path: Path, database_url: str) -> Iterator[LiveStack]:
    """Nothing started yet; every process the test starts is stopped by PID afterwards."""
    stack = LiveStack(tmp_path, database_url)
    try:
        yield stack
    finally:
        stack.close()
