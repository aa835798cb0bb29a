"""Every error as RFC 9457 problem details, with a message a person can act on.

Handlers cover our own :class:`ProblemError`, Litestar's HTTP and validation errors (so a 404
for an unknown path or a 405 looks like every other error), outages of Postgres and the blob
store (503, retryable), and, last, anything unexpected (a 500 that leaks no internals).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

import msgspec
import psycopg
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.openapi.datastructures import ResponseSpec
from litestar.types import ExceptionHandlersMap

from vidjobs.blobs import BlobNotFound, BlobStoreError, BlobStoreUnavailable
from vidjobs.db.errors import DatabaseUnavailable, InvalidCursor
from vidjobs.schema.api import FieldError, Problem
from vidjobs.schema.job import JobState

__all__ = [
    "PROBLEM_MEDIA_TYPE",
    "ProblemError",
    "exception_handlers",
    "problem_response",
    "problem_responses",
]

PROBLEM_MEDIA_TYPE = "application/problem+json"
_TYPE_BASE = "https://vidjobs.dev/problems/"
_RETRY_AFTER_S = "5"

log = logging.getLogger(__name__)


class ProblemError(Exception):
    """An error the client can do something about, answered as one problem document.

    Args:
        status: the HTTP status code.
        slug: the problem kind; the ``type`` URI ends with it (documented in docs/api.md).
        detail: what went wrong and what to do about it.
        errors: the invalid inputs of a validation problem.
        job_status: the job's state, for problems about one job.
        headers: extra response headers (``Retry-After``, ``Connection``).
    """

    def __init__(
        self,
        status: int,
        slug: str,
        detail: str,
        *,
        errors: list[FieldError] | None = None,
        job_status: JobState | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.slug = slug
        self.detail = detail
        self.errors = errors
        self.job_status = job_status
        self.headers = dict(headers or {})


def problem_response(
    request: Request[Any, Any, Any] | None,
    *,
    status: int,
    detail: str,
    slug: str | None = None,
    errors: list[FieldError] | None = None,
    job_status: JobState | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response[bytes]:
    """Build the ``application/problem+json`` response; ``slug=None`` means ``about:blank``."""
    phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error"
    title = phrase if slug is None else slug.replace("-", " ").capitalize()
    body = Problem(
        type="about:blank" if slug is None else _TYPE_BASE + slug,
        title=title,
        status=status,
        detail=detail,
        instance=request.url.path if request is not None else None,
        errors=errors,
        job_status=job_status,
    )
    return Response(
        content=msgspec.json.encode(body),
        status_code=status,
        media_type=PROBLEM_MEDIA_TYPE,
        headers=dict(headers or {}),
    )


_DESCRIPTIONS: dict[int, str] = {
    400: "Malformed request (e.g. a broken multipart body)",
    401: "Missing, unknown or revoked API key",
    404: "No such job for this tenant (or no such route)",
    409: "The job's state does not allow this (or an Idempotency-Key was reused)",
    413: "The upload is larger than the limit",
    415: "Not multipart/form-data, or the file is not an MP4/MOV video",
    422: "Invalid input: the problem's 'errors' lists each field",
    503: "Postgres or the blob store is unavailable; retry after Retry-After seconds",
}


def problem_responses(*codes: int) -> dict[int, ResponseSpec]:
    """OpenAPI entries documenting a route's error responses as problem details."""
    return {
        code: ResponseSpec(
            data_container=Problem,
            description=_DESCRIPTIONS[code],
            media_type=PROBLEM_MEDIA_TYPE,
            generate_examples=False,
        )
        for code in codes
    }


def _on_problem(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    assert isinstance(exc, ProblemError)
    return problem_response(
        request,
        status=exc.status,
        detail=exc.detail,
        slug=exc.slug,
        errors=exc.errors,
        job_status=exc.job_status,
        headers=exc.headers,
    )


def _field_errors(extra: Any) -> list[FieldError]:
    """Litestar's validation ``extra`` (a list of {key, message, source}) as field errors."""
    out: list[FieldError] = []
    if isinstance(extra, list):
        for item in extra:
            if isinstance(item, Mapping):
                out.append(
                    FieldError(
                        field=str(item.get("key") or item.get("source") or "body"),
                        message=str(item.get("message", "invalid value")),
                    )
                )
    return out


def _on_validation(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    assert isinstance(exc, ValidationException)
    errors = _field_errors(exc.extra)
    names = ", ".join(e.field for e in errors) or "the request"
    detail = f"invalid input in {names}: " + "; ".join(f"{e.field}: {e.message}" for e in errors)
    return problem_response(
        request,
        status=422,
        slug="invalid-input",
        detail=detail if errors else str(exc.detail),
        errors=errors or None,
    )


def _on_invalid_cursor(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    return problem_response(
        request,
        status=422,
        slug="invalid-input",
        detail="cursor is not a next_cursor from this API; start again without it",
        errors=[FieldError(field="cursor", message=str(exc))],
    )


def _on_http(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    assert isinstance(exc, HTTPException)
    detail = str(exc.detail)
    if exc.status_code == 404 and detail == HTTPStatus.NOT_FOUND.phrase:
        detail = f"no route {request.url.path}; the API's routes are listed at /schema"
    elif exc.status_code == 405:
        detail = f"{request.method} is not allowed on {request.url.path}; see /schema"
    return problem_response(
        request, status=exc.status_code, detail=detail, headers=exc.headers or None
    )


def _on_database_down(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    log.warning("database unavailable: %s", exc)
    return problem_response(
        request,
        status=503,
        slug="database-unavailable",
        detail="the database did not answer; nothing was changed, retry in a few seconds",
        headers={"Retry-After": _RETRY_AFTER_S},
    )


def _on_blob_store_error(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    if isinstance(exc, BlobNotFound):
        log.error("blob missing: %s", exc)
        return problem_response(
            request,
            status=404,
            slug="blob-missing",
            detail="the job's stored data is missing; it may have been deleted",
        )
    log.warning("blob store failed: %s", exc)
    return problem_response(
        request,
        status=503,
        slug="blob-store-unavailable",
        detail="the blob store did not answer; nothing was stored, retry in a few seconds",
        headers={"Retry-After": _RETRY_AFTER_S},
    )


def _on_unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return problem_response(
        request,
        status=500,
        detail="an unexpected error occurred on the server; it has been logged",
    )


def exception_handlers() -> ExceptionHandlersMap:
    """The app's handlers, most specific first (Litestar walks the exception's MRO)."""
    return {
        ProblemError: _on_problem,
        ValidationException: _on_validation,
        HTTPException: _on_http,
        InvalidCursor: _on_invalid_cursor,
        DatabaseUnavailable: _on_database_down,
        psycopg.OperationalError: _on_database_down,  # includes the pool's PoolTimeout
        BlobStoreUnavailable: _on_blob_store_error,
        BlobStoreError: _on_blob_store_error,
        Exception: _on_unexpected,
    }
