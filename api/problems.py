"""Every error as RFC 9457 problem details, through Litestar's ``ProblemDetailsPlugin``.

:class:`ApiError` is the root of the API's own errors: the plugin answers each with its problem
document. The plugin's map turns the errors of the layers below into one (validation, a bad
cursor, Postgres or the blob store down: 503, retryable). Two handlers need the request itself:
Litestar's own HTTP errors (an unknown route's detail names the path) and anything unexpected
(logged with its route; a 500 that leaks no internals).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.plugins.problem_details import (
    ProblemDetailsConfig,
    ProblemDetailsException,
    ProblemDetailsPlugin,
)
from litestar.types import ExceptionHandlersMap

from vidjobs.blobs import BlobNotFound, BlobStoreError
from vidjobs.db.errors import DatabaseUnavailable, InvalidCursor
from vidjobs.schema.api import FieldError, Problem
from vidjobs.schema.job import JobState

__all__ = [
    "PROBLEM_MEDIA_TYPE",
    "RETRY_AFTER_S",
    "ApiError",
    "InvalidInput",
    "JobNotFound",
    "LimitExceeded",
    "NotReady",
    "Unauthorized",
    "UploadTimeout",
    "exception_handlers",
    "problem_details",
]

PROBLEM_MEDIA_TYPE = "application/problem+json"
_TYPE_BASE = "https://vidjobs.dev/problems/"
RETRY_AFTER_S = 5
"""The ``Retry-After`` of a 503: an outage's end cannot be foreseen, a few seconds is a guess."""
_RETRY_AFTER = {"Retry-After": str(RETRY_AFTER_S)}

log = logging.getLogger(__name__)


class ApiError(ProblemDetailsException):
    """An error the client can do something about, answered as one problem document.

    Args:
        status: the HTTP status code.
        slug: the problem kind; the ``type`` URI ends with it (documented in docs/api.md).
            ``None`` for plain HTTP errors (``about:blank``).
        detail: what went wrong and what to do about it.
        errors: the invalid inputs of a validation problem.
        job_status: the job's state, for problems about one job.
        headers: extra response headers (``Retry-After``, ``Connection``).
        limit: for a refused submit, the tenant limit, its value and the usage
            (:class:`LimitExceeded`).
    """

    def __init__(
        self,
        status: int,
        slug: str | None,
        detail: str,
        *,
        errors: list[FieldError] | None = None,
        job_status: JobState | None = None,
        headers: Mapping[str, str] | None = None,
        limit: tuple[str, float, float] | None = None,
    ) -> None:
        phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error"
        super().__init__(
            detail=detail,
            status_code=status,
            headers=dict(headers or {}),
            type_="about:blank" if slug is None else _TYPE_BASE + slug,
            title=phrase if slug is None else slug.replace("-", " ").capitalize(),
        )
        self.slug = slug
        self.errors = errors
        self.job_status = job_status
        self.limit = limit

    def problem(self, request: Request[Any, Any, Any]) -> Problem:
        """The problem document: the :class:`Problem` struct the OpenAPI document shows."""
        name, value, usage = self.limit if self.limit is not None else (None, None, None)
        return Problem(
            type=self.type_ or "about:blank",
            title=self.title or "Error",
            status=self.status_code,
            detail=self.detail,
            instance=request.url.path,
            errors=self.errors,
            job_status=self.job_status,
            limit=name,
            limit_value=value,
            usage=usage,
        )

    def to_response(self, request: Request[Any, Any, Any]) -> Response[Any]:
        """The problem as ``application/problem+json``, with this error's headers."""
        return Response(
            self.problem(request),
            status_code=self.status_code,
            media_type=PROBLEM_MEDIA_TYPE,
            headers=self.headers,
        )


class InvalidInput(ApiError):
    """422 ``invalid-input``: a bad field, query parameter, header or id (``errors`` names it)."""

    def __init__(
        self,
        detail: str,
        errors: list[FieldError] | None = None,
        *,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(422, "invalid-input", detail, errors=errors, headers=headers)


class Unauthorized(ApiError):
    """401 with the ``WWW-Authenticate`` challenge: a missing, unknown or revoked key."""

    def __init__(self, detail: str) -> None:
        super().__init__(
            401, "unauthorized", detail, headers={"WWW-Authenticate": 'Bearer realm="vidjobs"'}
        )


class JobNotFound(ApiError):
    """404 for unknown ids and for other tenants' jobs alike (no existence oracle)."""

    def __init__(self, job_id: uuid.UUID) -> None:
        super().__init__(
            404, "job-not-found", f"no such job {job_id}; check the id returned by /video/submit"
        )


class LimitExceeded(ApiError):
    """A submit over one of its tenant's limits (429, or 413 for the stored bytes).

    Refused before a byte of the body is read or stored, so the connection is closed rather
    than drained (``Connection: close``). The body names the limit, its value and the usage.

    Args:
        status: 429 (wait and retry) or 413 (free space first).
        slug: the problem kind.
        detail: what was refused and what to do.
        limit: the limit's name (``max_pending``...), its value for the tenant, the usage.
        retry_after_s: the ``Retry-After`` header, when waiting helps.
    """

    def __init__(
        self,
        status: int,
        slug: str,
        detail: str,
        *,
        limit: tuple[str, float, float],
        retry_after_s: int | None = None,
    ) -> None:
        headers = {"Connection": "close"}
        if retry_after_s is not None:
            headers["Retry-After"] = str(retry_after_s)
        super().__init__(status, slug, detail, headers=headers, limit=limit)


class NotReady(ApiError):
    """503 ``not-ready`` of ``/ready``: a dependency did not answer; each one's state is named.

    Args:
        database: ``ok`` or ``unavailable: <error class>``.
        blob_store: the same for the blob store.
    """

    def __init__(self, database: str, blob_store: str) -> None:
        down = [
            what
            for what, state in (("the database", database), ("the blob store", blob_store))
            if state != "ok"
        ]
        super().__init__(
            503,
            "not-ready",
            f"not ready: {' and '.join(down)} did not answer (database: {database}; blob "
            f"store: {blob_store}); send no traffic here until /ready answers 200",
            headers=_RETRY_AFTER,
        )
        self.database = database
        self.blob_store = blob_store

    def problem(self, request: Request[Any, Any, Any]) -> Problem:
        """The problem with the ``database`` and ``blob_store`` members."""
        return msgspec.structs.replace(
            super().problem(request), database=self.database, blob_store=self.blob_store
        )


class UploadTimeout(ApiError):
    """408 ``upload-timeout``: the body stalled or came slower than the minimum rate.

    Nothing of it is kept (no row, no blob); the connection is closed, the rest unread.
    """

    def __init__(self, detail: str) -> None:
        super().__init__(408, "upload-timeout", detail, headers={"Connection": "close"})


def _invalid_input(exc: ValidationException) -> ApiError:
    """Litestar's validation ``extra`` (a list of {key, message, source}) as field errors."""
    errors = [
        FieldError(
            field=str(item.get("key") or item.get("source") or "body"),
            message=str(item.get("message", "invalid value")),
        )
        for item in (exc.extra if isinstance(exc.extra, list) else [])
        if isinstance(item, Mapping)
    ]
    if not errors:
        return InvalidInput(str(exc.detail))
    names = ", ".join(e.field for e in errors)
    listed = "; ".join(f"{e.field}: {e.message}" for e in errors)
    return InvalidInput(f"invalid input in {names}: {listed}", errors)


def _invalid_cursor(exc: InvalidCursor) -> ApiError:
    return InvalidInput(
        "cursor is not a next_cursor from this API; start again without it",
        [FieldError(field="cursor", message=str(exc))],
    )


def _database_down(exc: Exception) -> ApiError:
    log.warning("database unavailable: %s", exc)
    return ApiError(
        503,
        "database-unavailable",
        "the database did not answer; nothing was changed, retry in a few seconds",
        headers=_RETRY_AFTER,
    )


def _blob_store_failed(exc: BlobStoreError) -> ApiError:
    if isinstance(exc, BlobNotFound):
        log.error("blob missing: %s", exc)
        return ApiError(
            404, "blob-missing", "the job's stored data is missing; it may have been deleted"
        )
    log.warning("blob store failed: %s", exc)
    return ApiError(
        503,
        "blob-store-unavailable",
        "the blob store did not answer; nothing was stored, retry in a few seconds",
        headers=_RETRY_AFTER,
    )


def problem_details() -> ProblemDetailsPlugin:
    """The plugin: it answers every :class:`ApiError`, and maps the lower layers' errors to one."""
    return ProblemDetailsPlugin(
        ProblemDetailsConfig(
            exception_to_problem_detail_map={
                ValidationException: _invalid_input,
                InvalidCursor: _invalid_cursor,
                DatabaseUnavailable: _database_down,
                BlobStoreError: _blob_store_failed,
            }
        )
    )


def _on_http(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    """Litestar's own HTTP errors (unknown route, wrong method, bad request) as ``about:blank``."""
    if exc.status_code >= HTTPStatus.INTERNAL_SERVER_ERROR:
        return _on_unexpected(request, exc)
    detail = str(exc.detail)
    if exc.status_code == HTTPStatus.NOT_FOUND and detail == HTTPStatus.NOT_FOUND.phrase:
        detail = f"no route {request.url.path}; the API's routes are listed at /schema"
    elif exc.status_code == HTTPStatus.METHOD_NOT_ALLOWED:
        detail = f"{request.method} is not allowed on {request.url.path}; see /schema"
    return ApiError(exc.status_code, None, detail, headers=exc.headers).to_response(request)


def _on_unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    detail = "an unexpected error occurred on the server; it has been logged"
    return ApiError(500, None, detail).to_response(request)


def exception_handlers() -> ExceptionHandlersMap:
    """The handlers that need the request; the plugin registers the rest (most specific wins)."""
    return {HTTPException: _on_http, Exception: _on_unexpected}
