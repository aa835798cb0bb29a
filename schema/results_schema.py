"""The published JSON Schema of the results document, generated from its Structs.

The Structs in ``schema/results.py`` are the one definition; the checked-in
``results.schema.json`` beside this module is what clients validate against, and a unit test
keeps the two equal (regenerate with ``make results-schema``).
"""

from __future__ import annotations

import json
from importlib.resources import files
from typing import Any

import msgspec

from vidjobs.schema.results import SCHEMA_VERSIONS, ResultsDocument

__all__ = [
    "SCHEMA_FILE",
    "generate_results_schema",
    "published_results_schema",
    "render_results_schema",
]

SCHEMA_FILE = "results.schema.json"


def generate_results_schema() -> dict[str, Any]:
    """The JSON Schema of ``ResultsDocument``, ``schema_version`` limited to the known versions.

    msgspec types the field as a plain integer; a validator should refuse a version this
    release cannot read, as ``decode_results`` does.
    """
    schema = msgspec.json.schema(ResultsDocument)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "vidjobs results document"
    props = schema["$defs"]["ResultsDocument"]["properties"]
    props["schema_version"] = {"type": "integer", "enum": list(SCHEMA_VERSIONS)}
    return schema


def published_results_schema() -> bytes:
    """The checked-in schema file's bytes (served by the API as they are)."""
    return files("vidjobs.schema").joinpath(SCHEMA_FILE).read_bytes()


def render_results_schema() -> str:
    """The file's text for ``generate_results_schema()``: sorted keys, two-space indent."""
    return json.dumps(generate_results_schema(), indent=2, sort_keys=True) + "\n"
