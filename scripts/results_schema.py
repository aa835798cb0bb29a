"""Write schema/results.schema.json from the results Structs (``make results-schema``)."""

from __future__ import annotations

from pathlib import Path

from vidjobs.schema.results_schema import SCHEMA_FILE, render_results_schema

__all__: list[str] = []

if __name__ == "__main__":
    target = Path(__file__).resolve().parent.parent / "schema" / SCHEMA_FILE
    target.write_text(render_results_schema(), encoding="utf-8")
    print(f"wrote {target}")
