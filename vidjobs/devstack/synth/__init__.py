"""Synthetic test material: shapes, scenes and videos with exact ground truth."""

from __future__ import annotations
