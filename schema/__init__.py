"""Shared contracts of vidjobs: job states and the Structs every other package exchanges.

This package imports nothing from the rest of the project (only the standard library and
msgspec), so every process can depend on it without pulling in a database or ML stack.
"""

from __future__ import annotations

from vidjobs.schema.job import TERMINAL_STATES, Job, JobState
from vidjobs.schema.results import SCHEMA_VERSION, ResultsDocument, canonical_json, decode_results

__all__ = [
    "SCHEMA_VERSION",
    "TERMINAL_STATES",
    "Job",
    "JobState",
    "ResultsDocument",
    "canonical_json",
    "decode_results",
]
