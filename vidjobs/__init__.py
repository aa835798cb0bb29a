"""vidjobs: a Postgres-backed video-analysis job system; the console script is vidjobs.cli."""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
