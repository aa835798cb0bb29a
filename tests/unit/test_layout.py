"""The layout the docs describe is the layout on disk, and the namespace needs no path surgery."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ARCHITECTURE = ROOT / "docs" / "architecture.md"
# The folders the design fixes at the top level, importable as vidjobs.<name> through a link.
LINKED = ("schema", "blobs", "db", "api", "worker")


def _where_things_are() -> list[tuple[str, list[str]]]:
    """(concept, paths) of every row of the "Where things are" table."""
    text = ARCHITECTURE.read_text(encoding="utf-8")
    section = text.split("## Where things are", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ")][2:]
    table = []
    for row in rows:
        concept, where = (cell.strip() for cell in row.strip("|").split("|", 1))
        table.append((concept, re.findall(r"`([^`]+)`", where)))
    return table


def test_every_path_in_where_things_are_exists() -> None:
    table = _where_things_are()
    assert len(table) >= 20, "the table was not found or lost its rows"
    missing = [
        (concept, path)
        for concept, paths in table
        for path in paths
        if "/" in path and not (ROOT / path).exists()
    ]
    assert missing == []
    assert all(any("/" in p for p in paths) for _, paths in table), "every row names a path"


def test_the_namespace_links_point_at_the_top_level_folders() -> None:
    for name in LINKED:
        link = ROOT / "vidjobs" / name
        assert link.is_symlink(), f"vidjobs/{name} must link to ../{name}"
        assert link.resolve() == (ROOT / name).resolve()
        assert (ROOT / name / "__init__.py").is_file()


def test_no_script_touches_sys_path() -> None:
    offenders = [
        f"{path.relative_to(ROOT)}:{n}"
        for folder in ("bench", "scripts")
        for path in sorted((ROOT / folder).rglob("*.py"))
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if "sys.path" in line or "noqa: E402" in line
    ]
    assert offenders == []
