"""Results stage: assemble the results document and encode it canonically.

The document's shape lives in ``schema.results`` (clients and the API read it too); this stage
only puts the pieces together, so the same frames always give the same bytes.
"""

from __future__ import annotations

from collections.abc import Sequence

from vidjobs.schema.results import (
    SCHEMA_VERSION,
    EngineInfo,
    FrameResult,
    ResultsDocument,
    ResultsParams,
    VideoInfo,
    canonical_json,
    summarize,
)

__all__ = ["build_document", "encode_document"]


def build_document(
    video: VideoInfo,
    detector: EngineInfo,
    ocr: EngineInfo,
    params: ResultsParams,
    frames: Sequence[FrameResult],
) -> ResultsDocument:
    """The results document for analysed frames, summary included."""
    ordered = tuple(sorted(frames, key=lambda f: (f.t_ms, f.frame_index)))
    return ResultsDocument(
        schema_version=SCHEMA_VERSION,
        video=video,
        detector=detector,
        ocr=ocr,
        params=params,
        frames=ordered,
        summary=summarize(ordered),
    )


def encode_document(doc: ResultsDocument) -> bytes:
    """Canonical JSON bytes (sorted keys, rounded floats, stable order)."""
    return canonical_json(doc)
