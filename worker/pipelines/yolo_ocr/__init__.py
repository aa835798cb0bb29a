"""The ``yolo_ocr`` pipeline: decode → detect → OCR → results document, one module per stage.

Nothing is imported here, so naming this package loads neither OpenCV nor torch: import from
the modules themselves (``analyzer.VideoAnalyzer``, ``settings.PipelineSettings``,
``job.VideoPipeline``); the errors the stages raise are in ``vidjobs.worker.outcome``.
"""

from __future__ import annotations

__all__: list[str] = []
