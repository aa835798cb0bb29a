"""ApiSettings from the environment, and submit-field validation, without any I/O."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from vidjobs.api.problems import ApiError
from vidjobs.api.settings import ApiSettings
from vidjobs.api.submit import validate_fields
from vidjobs.api.uploads import FormField

FromEnv = Callable[..., Any]


def test_every_variable_is_read(from_env: FromEnv) -> None:
    s = from_env(
        ApiSettings,
        {
            "DATABASE_URL": "postgresql://u@h/db",
            "VIDJOBS_API_HOST": "0.0.0.0",
            "VIDJOBS_API_PORT": "9000",
            "VIDJOBS_API_WORKERS": "3",
            "VIDJOBS_API_MAX_UPLOAD_BYTES": "1000",
            "VIDJOBS_API_DEFAULT_PIPELINE": "noop",
            "VIDJOBS_API_MAX_ATTEMPTS": "5",
            "VIDJOBS_API_AUTH_CACHE_SECONDS": "2.5",
            "VIDJOBS_BLOB_BACKEND": "s3",
        },
    )
    assert (s.host, s.port, s.workers, s.max_upload_bytes) == ("0.0.0.0", 9000, 3, 1000)
    assert (s.default_pipeline, s.max_attempts, s.auth_cache_seconds) == ("noop", 5, 2.5)
    assert s.database.url == "postgresql://u@h/db"
    assert s.blobs.backend == "s3"


def test_defaults(from_env: FromEnv) -> None:
    s = from_env(ApiSettings, {"DATABASE_URL": "postgresql://u@h/db"})
    assert s.max_upload_bytes == 2 * 1024**3
    assert s.default_pipeline == "yolo_ocr"
    assert s.auth_cache_seconds == 0


def test_the_database_url_is_required(from_env: FromEnv) -> None:
    with pytest.raises(ValueError, match="DATABASE_URL"):
        from_env(ApiSettings, {})


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("VIDJOBS_API_PORT", "http"),
        ("VIDJOBS_API_PORT", "70000"),
        ("VIDJOBS_API_DEFAULT_PIPELINE", "nope"),
        ("VIDJOBS_API_MAX_UPLOAD_BYTES", "0"),
    ],
)
def test_bad_values_name_the_problem(from_env: FromEnv, var: str, value: str) -> None:
    with pytest.raises(ValueError, match=r"VIDJOBS_API_\*|port|pipeline|at least"):
        from_env(ApiSettings, {"DATABASE_URL": "postgresql://u@h/db", var: value})


def test_validate_fields_fills_defaults() -> None:
    spec = validate_fields([FormField("priority", "7")], "yolo_ocr")
    assert spec.pipeline == "yolo_ocr"
    assert spec.priority == 7
    assert spec.params == {"sample_fps": 1.0, "min_confidence": 0.25, "keep_brief_text": False}


def test_validate_fields_lists_every_bad_field() -> None:
    with pytest.raises(ApiError) as info:
        validate_fields(
            [FormField("pipeline", "x"), FormField("priority", "x"), FormField("pipeline", "y")],
            "noop",
        )
    assert info.value.status_code == 422
    assert [e.field for e in info.value.errors or []] == ["pipeline", "pipeline", "priority"]
