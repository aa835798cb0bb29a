"""``python -m vidjobs`` delegates to the console script."""

from __future__ import annotations

from vidjobs.cli import main

main()
