"""Every query name the code uses exists in db/sql/*.sql, with the parameters the code passes;
the loader is strict and runs once."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import msgspec
import pytest

import vidjobs.db.jobs
import vidjobs.db.leases
from vidjobs.db.sql import QUERIES, load_queries

ROOT = Path(__file__).resolve().parents[2]
_PACKAGES = ("db", "blobs", "api", "worker", "vidjobs/cli", "vidjobs/devstack")
CODE = [p for pkg in _PACKAGES for p in (ROOT / pkg).rglob("*.py")]
# Helpers that take a query name as their second positional argument.
_NAME_ARG_HELPERS = {"fetch", "fetch_rows", "fetch_jobs", "_fenced", "_fenced_job"}


def _used_names(path: Path) -> set[str]:
    """Query names a module uses: ``<...queries...>["name"]`` or ``fetch(conn, "name", ...)``."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant):
            target = ast.unparse(node.value)
            if target == "QUERIES" or "load_queries" in target:
                names.add(str(node.slice.value))
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            args = node.args
            if (
                node.func.id in _NAME_ARG_HELPERS
                and len(args) > 1
                and isinstance(args[1], ast.Constant)
                and isinstance(args[1].value, str)
            ):
                names.add(args[1].value)
    return names


def test_every_query_name_used_in_code_exists() -> None:
    queries = load_queries()
    used = {(p.relative_to(ROOT).as_posix(), n) for p in CODE for n in _used_names(p)}
    assert used, "the scan found no query use at all: is the pattern still right?"
    missing = sorted((path, name) for path, name in used if name not in queries)
    assert missing == []


def test_scan_sees_the_jobs_modules() -> None:
    used = _used_names(ROOT / "db" / "leases.py")
    assert {"job_claim", "job_complete", "job_fail", "job_heartbeat"} <= used
    used = _used_names(ROOT / "db" / "jobs.py")
    assert {"job_insert", "job_get", "job_list", "job_cancel"} <= used


def test_every_jobs_function_runs_its_namesake_query() -> None:
    queries = load_queries()
    exported = [*vidjobs.db.jobs.__all__, *vidjobs.db.leases.__all__]
    functions = [n for n in exported if n.startswith("job_")]
    assert functions
    assert [f for f in functions if f not in queries] == []


def test_every_query_has_a_description_line() -> None:
    for name, text in load_queries().items():
        first = text.splitlines()[0]
        assert first.startswith("-- "), f"{name}: first line must say what it does"
        assert len(first) > 10, f"{name}: first line must say what it does"


def test_loader_rejects_duplicates_and_empty_blocks(tmp_path: Path) -> None:
    (tmp_path / "a.sql").write_text("-- name: x_get\n-- one\nSELECT 1;\n")
    (tmp_path / "b.sql").write_text("-- name: x_get\n-- two\nSELECT 2;\n")
    with pytest.raises(ValueError, match="twice"):
        load_queries(tmp_path)
    (tmp_path / "b.sql").write_text("-- name: x_put\n-- nothing here\n")
    with pytest.raises(ValueError, match="no SQL"):
        load_queries(tmp_path)
    (tmp_path / "b.sql").unlink()
    assert load_queries(tmp_path) == {"x_get": "-- one\nSELECT 1;"}


def test_the_queries_are_loaded_once_and_read_only() -> None:
    assert dict(QUERIES) == load_queries()
    with pytest.raises(TypeError):
        QUERIES["job_claim"] = "SELECT 1"  # type: ignore[index]
    loaders = sorted(
        p.relative_to(ROOT).as_posix()
        for p in CODE
        for node in ast.walk(ast.parse(p.read_text(encoding="utf-8")))
        if isinstance(node, ast.Call) and ast.unparse(node.func).endswith("load_queries")
    )
    assert loaders == ["db/sql/__init__.py"]


def _params_structs() -> list[tuple[str, type[msgspec.Struct]]]:
    """``JobClaimParams`` -> ``("job_claim", JobClaimParams)``, for every parameter Struct."""
    found = []
    for name in vidjobs.db.leases.__all__:
        obj = getattr(vidjobs.db.leases, name)
        if name.startswith("Job") and name.endswith("Params"):
            assert issubclass(obj, msgspec.Struct)
            query = re.sub(r"(?<!^)(?=[A-Z])", "_", name.removesuffix("Params")).lower()
            found.append((query, obj))
    return found


def test_parameter_structs_name_exactly_their_statements_placeholders() -> None:
    structs = _params_structs()
    assert {q for q, _ in structs} >= {"job_claim", "job_fail", "job_release", "job_heartbeat"}
    for query, struct in structs:
        placeholders = set(re.findall(r"%\((\w+)\)s", QUERIES[query]))
        assert set(struct.__struct_fields__) == placeholders, query
