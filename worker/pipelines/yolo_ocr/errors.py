"""Errors the pipeline raises on purpose, each with the ``kind`` the job records.

The worker maps ``kind`` to the job's ``error_kind``; the message is written for the person who
submitted the video (``invalid_video``) or the operator who runs the worker (``model_unavailable``).
"""

from __future__ import annotations

__all__ = ["Cancelled", "InvalidParams", "InvalidVideo", "ModelUnavailable", "PipelineError"]


class PipelineError(Exception):
    """Base class: an expected failure with a readable message and a stable ``kind``."""

    kind = "pipeline_error"


class InvalidVideo(PipelineError):
    """The input cannot be analysed: not a video, no video stream, or no frames. Not retried."""

    kind = "invalid_video"


class InvalidParams(PipelineError):
    """The job's params are out of range or unknown (the API normally rejects them first)."""

    kind = "invalid_params"


class ModelUnavailable(PipelineError):
    """The detector weights (or OCR models) cannot be loaded; the message names the setting."""

    kind = "model_unavailable"


class Cancelled(PipelineError):
    """``should_stop()`` returned true between two frames; the analysis stopped early."""

    kind = "cancelled"
