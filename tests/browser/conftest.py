"""Fixtures of the dashboard's browser tests: Debian's chromium driven by Playwright.

Playwright's own browser download is not available offline, so the tests launch the system
browser (``make tools`` installs it with apt; ``VIDJOBS_CHROMIUM`` names another binary).
Screenshots go to ``var/screenshots/`` (``VIDJOBS_SCREENSHOTS_DIR``), which CI keeps.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One headless chromium per module, stopped when the module ends.

    Not per session: while Playwright's sync API is running it holds an asyncio event loop in
    the main thread, so every later test that calls ``asyncio.run`` (the chaos tests, the
    database helpers) would fail with "cannot be called from a running event loop".
    """
    executable = os.environ.get("VIDJOBS_CHROMIUM", "/usr/bin/chromium")
    assert Path(executable).exists(), f"{executable} is missing: run `make tools` (apt chromium)"
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh page, 1280 px wide."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    pg = context.new_page()
    yield pg
    context.close()


@pytest.fixture(scope="session")
def screenshots() -> Path:
    """Where the tests save their screenshots."""
    folder = Path(os.environ.get("VIDJOBS_SCREENSHOTS_DIR", _ROOT / "var" / "screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder
