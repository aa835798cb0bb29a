"""Fixtures of the unit tests (no I/O)."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import pytest

S = TypeVar("S")


@pytest.fixture
def from_env(monkeypatch: pytest.MonkeyPatch) -> Callable[[type[S], Mapping[str, str]], S]:
    """Build a settings class from exactly these variables (every other vidjobs one unset).

    The settings classes read the process environment, so a developer's exported
    ``VIDJOBS_*`` must not leak into a test; the environment is restored afterwards.
    """

    def build(cls: type[S], env: Mapping[str, str], **values: Any) -> S:
        for name in list(os.environ):
            if name.startswith("VIDJOBS_") or name == "DATABASE_URL":
                monkeypatch.delenv(name)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        return cls(**values)

    return build
