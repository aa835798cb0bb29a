"""DatabaseSettings from the environment: the URL is required, the pool sizes are read."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from vidjobs.db.settings import DatabaseSettings

FromEnv = Callable[..., Any]


def test_settings_from_env(from_env: FromEnv) -> None:
    settings = from_env(
        DatabaseSettings, {"DATABASE_URL": "postgresql://x@h/db", "VIDJOBS_DB_POOL_MAX": "4"}
    )
    assert (settings.url, settings.pool_min_size, settings.pool_max_size) == (
        "postgresql://x@h/db", 1, 4)  # fmt: skip
    with pytest.raises(ValueError, match="DATABASE_URL"):
        from_env(DatabaseSettings, {})
