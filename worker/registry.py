"""The pipelines a ``vidjobs worker`` process offers."""

from __future__ import annotations

from worker.pipelines import NoopPipeline, PipelineRegistry

__all__ = ["default_registry"]


def default_registry() -> PipelineRegistry:
    """``noop`` (benchmarks, smoke checks) and, where the ML stack is installed, ``yolo_ocr``."""
    return PipelineRegistry({"noop": NoopPipeline})
