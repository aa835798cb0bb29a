"""docs/operations.md stays true to the settings the code reads.

The settings tables in the doc are generated from the settings declarations and the CLI by
``scripts/settings_table.py``; these tests fail when a variable is added, renamed or removed in
the code but not in the doc, or when the doc names a variable nothing reads.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

from vidjobs.settings import declared

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "operations.md"
_NAME = re.compile(r"\b(VIDJOBS_[A-Z0-9_]*[A-Z0-9]|DATABASE_URL)\b(?!_?\*)")
_FIX = "run `.venv/bin/python scripts/settings_table.py --write` and review the diff"


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "settings_table", ROOT / "scripts" / "settings_table.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("settings_table", module)
    spec.loader.exec_module(module)
    return module


table = _script()


def _doc() -> str:
    return DOC.read_text(encoding="utf-8")


def _read_by_code() -> set[str]:
    """VIDJOBS_*/DATABASE_URL string literals (not docstrings) in product code and test harness."""
    dirs = [ROOT / p for p in ("schema", "db", "blobs", "api", "worker", "vidjobs")]
    dirs += [ROOT / "tests" / "harness", ROOT / "tests" / "browser"]
    names: set[str] = set()
    for path in (f for d in dirs for f in d.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        docstrings = {
            id(node.body[0].value)
            for node in ast.walk(tree)
            if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
            and node.body
            and isinstance(node.body[0], ast.Expr)
        }
        names |= {
            node.value
            for node in ast.walk(tree)
            if isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and id(node) not in docstrings
            and _NAME.fullmatch(node.value)
        }
    return names


def test_the_generated_settings_tables_are_current() -> None:
    doc = _doc()
    assert table.BEGIN in doc, f"docs/operations.md lost its settings-table markers; {_FIX}"
    current = doc[doc.index(table.BEGIN) : doc.index(table.END) + len(table.END)]
    assert current == table.render(), f"the settings tables in docs/operations.md are stale; {_FIX}"


def test_every_variable_the_settings_and_cli_read_is_documented() -> None:
    read: set[str] = set(table.cli_options())
    for _, module_name, _ in table.SETTINGS:
        read |= table.env_literals(importlib.import_module(module_name))
    doc = _doc()
    missing = sorted(name for name in read if f"`{name}`" not in doc)
    assert not missing, f"read by the code but not in docs/operations.md: {missing}; {_FIX}"


def test_every_settings_variable_maps_to_a_field() -> None:
    """A variable a settings module names but that sets no field is a dead or broken setting."""
    for _, module_name, _ in table.SETTINGS:
        module = importlib.import_module(module_name)
        classes = [cls for _, name, cls in table.SETTINGS if name == module_name]
        mapped = {s.env for cls in classes for s in declared(getattr(module, cls))}
        unmapped = table.env_literals(module) - mapped
        assert not unmapped, f"{module_name}: {sorted(unmapped)} set no field of {classes}"


def test_no_variable_sets_two_fields() -> None:
    owners: dict[str, str] = {}
    for _, module_name, class_name in table.SETTINGS:
        for setting in declared(getattr(importlib.import_module(module_name), class_name)):
            if setting.env is not None:
                field = f"{class_name}.{setting.name}"
                assert setting.env not in owners, f"{setting.env}: {owners[setting.env]}, {field}"
                owners[setting.env] = field


def test_every_variable_the_docs_name_is_read_by_the_code() -> None:
    read = _read_by_code()
    named = set(_NAME.findall(_doc()))
    invented = sorted(named - read)
    assert not invented, f"docs/operations.md names variables nothing reads: {invented}"
