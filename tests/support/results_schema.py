"""Check a results document against the published JSON Schema (``schema/results.schema.json``).

Tests that read a document the pipeline wrote call ``assert_valid_results`` so the published
schema is checked against real output, not only against the Structs it was generated from.
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any

import jsonschema

from vidjobs.schema.results_schema import published_results_schema

__all__ = ["assert_valid_results"]


@cache
def _validator() -> jsonschema.Draft202012Validator:
    schema = json.loads(published_results_schema())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def assert_valid_results(doc: bytes | str | dict[str, Any]) -> None:
    """Fail with every violation listed when ``doc`` does not match the published schema."""
    data = json.loads(doc) if isinstance(doc, bytes | str) else doc
    errors = sorted(_validator().iter_errors(data), key=lambda e: list(e.absolute_path))
    assert not errors, "results document violates the published schema:\n" + "\n".join(
        f"  at {'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}" for e in errors[:20]
    )
