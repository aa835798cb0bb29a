"""The published results JSON Schema: generated from the Structs, checked in, and it judges."""

from __future__ import annotations

import json

import pytest

from tests.support.results_schema import assert_valid_results
from vidjobs.schema.results import (
    Detection,
    EngineInfo,
    FrameResult,
    ResultsDocument,
    ResultsParams,
    Summary,
    VideoInfo,
    canonical_json,
)
from vidjobs.schema.results_schema import published_results_schema, render_results_schema


def test_checked_in_schema_is_the_generated_one() -> None:
    assert published_results_schema().decode() == render_results_schema(), (
        "schema/results.schema.json is stale: run `make results-schema`"
    )


def _doc() -> dict[str, object]:
    raw = canonical_json(
        ResultsDocument(
            schema_version=2,
            video=VideoInfo(
                duration_ms=1000, fps=25.0, width=640, height=360, frames=25, codec="h264"
            ),
            detector=EngineInfo(name="yolo", version="1", weights="w", weights_sha256="0"),
            ocr=EngineInfo(name="ocr", version="1", weights="w", weights_sha256="0"),
            params=ResultsParams(sample_fps=1.0, min_confidence=0.25),
            frames=(
                FrameResult(
                    t_ms=0,
                    frame_index=0,
                    detections=(
                        Detection(label="person", class_id=0, confidence=0.9, box=(1, 2, 3, 4)),
                    ),
                    text=(),
                ),
            ),
            summary=Summary(frames_analysed=1, label_counts={"person": 1}, texts=()),
        )
    )
    result: dict[str, object] = json.loads(raw)
    return result


def test_a_canonical_document_is_valid() -> None:
    assert_valid_results(_doc())


@pytest.mark.parametrize("version", [0, 3])
def test_an_unknown_version_is_refused(version: int) -> None:
    doc = _doc() | {"schema_version": version}
    with pytest.raises(AssertionError, match="schema_version"):
        assert_valid_results(doc)


def test_a_missing_field_is_refused() -> None:
    doc = _doc()
    del doc["frames"]
    with pytest.raises(AssertionError, match="frames"):
        assert_valid_results(json.dumps(doc))
