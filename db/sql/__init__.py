"""Runtime SQL: the named blocks of every ``.sql`` file in ``db/sql/``, loaded once.

A block starts with ``-- name: <query_name>`` followed by one comment line saying what it does;
it runs until the next ``-- name:`` line. Keeping SQL in files lets a DBA read and EXPLAIN it.
:data:`QUERIES` is read at import, once per process; every statement runs through
``db/statements.py``, which looks its text up there.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import LiteralString, cast

__all__ = ["QUERIES", "QUERIES_DIR", "load_queries"]

QUERIES_DIR = Path(__file__).parent
_NAME = re.compile(r"^-- name: ([a-z_][a-z0-9_]*)\s*$", re.MULTILINE)


def load_queries(directory: Path = QUERIES_DIR) -> dict[str, LiteralString]:
    """Every named query in ``directory``'s ``.sql`` files, by name.

    Raises:
        ValueError: a name appears twice, or a block has no SQL.
    """
    queries: dict[str, LiteralString] = {}
    for path in sorted(directory.glob("*.sql")):
        parts = _NAME.split(path.read_text(encoding="utf-8"))
        for name, body in zip(parts[1::2], parts[2::2], strict=True):
            text = body.strip()
            if name in queries:
                raise ValueError(f"query {name!r} defined twice ({path.name})")
            if not any(line and not line.startswith("--") for line in text.splitlines()):
                raise ValueError(f"query {name!r} in {path.name} has no SQL")
            # The files are part of the package, never user input: literal by construction.
            queries[name] = cast(LiteralString, text)
    return queries


QUERIES: Mapping[str, LiteralString] = MappingProxyType(load_queries())
"""Every runtime statement by name (read-only)."""
