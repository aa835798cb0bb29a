"""What the OpenAPI document says beyond what Litestar reads off the handlers.

Litestar derives each operation from its handler: parameters, the success response, and a 400
``{status_code, detail, extra}`` body for every handler with a parameter. This API never sends
that body (its validation errors are 422 problems, ``vidjobs.api.problems``), so the document
would promise a phantom. Each handler therefore names its error responses with
:func:`problem_responses` and uses :class:`ProblemOperation` (Litestar's ``operation_class``
hook), which keeps only those and adds the headers every problem of a status carries
(``Retry-After`` on 429 and 503, ``WWW-Authenticate`` on 401). :class:`SubmitOperation` adds
what the submit handler parses by hand, since it streams: the multipart body, the
``Idempotency-Key`` header, and the headers of the 200 replay.

A test walks the served document and checks it against what the server sends
(``tests/integration/test_openapi_document.py``); a client generated from it runs the whole
lifecycle (``tests/acceptance/test_generated_client.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

from litestar.datastructures import ResponseHeader
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import (
    OpenAPIHeader,
    OpenAPIMediaType,
    OpenAPIResponse,
    Operation,
    Parameter,
    RequestBody,
    Schema,
)
from litestar.openapi.spec.enums import OpenAPIFormat, OpenAPIType

from vidjobs.api.problems import PROBLEM_MEDIA_TYPE, RETRY_AFTER_S
from vidjobs.api.submit import FILE_FIELD
from vidjobs.schema.api import (
    DEFAULT_PIPELINE,
    MAX_IDEMPOTENCY_KEY,
    PIPELINES,
    PRIORITY_MAX,
    PRIORITY_MIN,
    Problem,
    SubmitAccepted,
)
from vidjobs.schema.results import (
    KEEP_BRIEF_TEXT_DEFAULT,
    MIN_CONFIDENCE_DEFAULT,
    MIN_CONFIDENCE_MAX,
    MIN_CONFIDENCE_MIN,
    SAMPLE_FPS_DEFAULT,
    SAMPLE_FPS_MAX,
    SAMPLE_FPS_MIN,
)
from vidjobs.webhooks.targets import MAX_URL_LENGTH

__all__ = [
    "IDEMPOTENCY_KEY_PATTERN",
    "ProblemOperation",
    "SubmitOperation",
    "location_header",
    "problem_responses",
    "submit_replay_response",
]

IDEMPOTENCY_KEY_PATTERN = rf"^[!-~](?:[ -~]{{0,{MAX_IDEMPOTENCY_KEY - 2}}}[!-~])?$"
"""1 to 255 printable ASCII characters, no space at either end (HTTP strips those anyway)."""

_STRING = OpenAPIType.STRING
_NUMBER = OpenAPIType.NUMBER
_INTEGER = OpenAPIType.INTEGER

_DESCRIPTIONS: dict[int, str] = {
    400: "Malformed multipart body, or the client disconnected mid-upload",
    401: "Missing, unknown or revoked API key",
    404: "No such job for this tenant (or no such route)",
    408: "The upload stalled or came slower than the minimum rate; nothing was stored",
    409: "The job's state does not allow this (or an Idempotency-Key was reused)",
    413: "The upload is larger than the limit, or than what the tenant may still store",
    415: "Not multipart/form-data, or the file is not an MP4/MOV video",
    422: "Invalid input: the problem's 'errors' lists each field",
    429: "A tenant limit (submit rate, pending jobs, uploads at once); retry after Retry-After",
    503: "Postgres or the blob store is unavailable; retry after Retry-After seconds",
}


def _header(description: str, schema: Schema) -> OpenAPIHeader:
    return OpenAPIHeader(schema=schema, description=description, required=True)


_PROBLEM_HEADERS: dict[str, dict[str, OpenAPIHeader]] = {
    "401": {
        "WWW-Authenticate": _header('the challenge: Bearer realm="vidjobs"', Schema(type=_STRING))
    },
    "429": {
        "Retry-After": _header(
            "whole seconds to wait before sending the submit again", Schema(type=_INTEGER)
        )
    },
    "503": {
        "Retry-After": _header(
            f"whole seconds to wait before retrying ({RETRY_AFTER_S})", Schema(type=_INTEGER)
        )
    },
}
"""The headers every problem of a status carries (``vidjobs.api.problems`` sets them)."""


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


def location_header() -> ResponseHeader:
    """The submit's ``Location`` header (the success response's, documented by Litestar)."""
    return ResponseHeader(
        name="Location",
        value="/video/status/{job_id}",
        documentation_only=True,
        required=True,
        description="where to poll the job: /video/status/{job_id}, the body's status_url",
    )


def submit_replay_response() -> dict[int, ResponseSpec]:
    """The 200 of an idempotent repeat (its headers are added by :class:`SubmitOperation`)."""
    return {
        200: ResponseSpec(
            data_container=SubmitAccepted,
            description=(
                "A repeat of an earlier submit with the same Idempotency-Key, file and "
                "parameters: the original job; nothing new was stored"
            ),
            generate_examples=False,
        )
    }


@dataclass
class ProblemOperation(Operation):
    """An operation whose error responses are exactly its declared problems, with headers.

    Litestar adds a default 400 body to every operation with a parameter; the server never
    sends it (a bad parameter is a 422 problem), so any error response that is not a problem
    is dropped here rather than promised to clients.
    """

    def __post_init__(self) -> None:
        responses = self.responses or {}
        for code in list(responses):
            response = responses[code]
            if int(code) < 400 or not isinstance(response, OpenAPIResponse):
                continue
            if PROBLEM_MEDIA_TYPE not in (response.content or {}):
                del responses[code]
                continue
            response.headers = {**(response.headers or {}), **_PROBLEM_HEADERS.get(code, {})}


def _bounded(
    kind: OpenAPIType, minimum: float, maximum: float, default: float, description: str
) -> Schema:
    """A numeric form field with its range and default (the API checks the same bounds)."""
    return Schema(
        type=kind, minimum=minimum, maximum=maximum, default=default, description=description
    )


def _submit_form() -> Schema:
    return Schema(
        type=OpenAPIType.OBJECT,
        required=[FILE_FIELD],
        additional_properties=False,  # any other field is a 422
        properties={
            # No default here: it is the deployment's (VIDJOBS_API_DEFAULT_PIPELINE), and a
            # generated client would send a documented default as if the caller had chosen it.
            "pipeline": Schema(
                type=_STRING,
                enum=list(PIPELINES),
                description=(
                    "what to run; omitted: the deployment's default pipeline "
                    f"(VIDJOBS_API_DEFAULT_PIPELINE, {DEFAULT_PIPELINE} unless set)"
                ),
            ),
            "sample_fps": _bounded(
                _NUMBER,
                SAMPLE_FPS_MIN,
                SAMPLE_FPS_MAX,
                SAMPLE_FPS_DEFAULT,
                "frames analysed per second of video",
            ),
            "min_confidence": _bounded(
                _NUMBER,
                MIN_CONFIDENCE_MIN,
                MIN_CONFIDENCE_MAX,
                MIN_CONFIDENCE_DEFAULT,
                "detections below this score are dropped",
            ),
            "keep_brief_text": Schema(
                type=OpenAPIType.BOOLEAN,
                default=KEEP_BRIEF_TEXT_DEFAULT,
                description=(
                    "keep text read in one sampled frame only as a text event even when its "
                    "OCR confidence is low (by default such reads are dropped as noise)"
                ),
            ),
            "priority": _bounded(_INTEGER, PRIORITY_MIN, PRIORITY_MAX, 0, "higher runs first"),
            "callback_url": Schema(
                type=_STRING,
                format=OpenAPIFormat.URI,
                max_length=MAX_URL_LENGTH,
                description=(
                    "where the job's terminal event (job.completed, job.failed, "
                    "job.cancelled) is POSTed, signed as Standard Webhooks with the tenant's "
                    "secret; https:// (http:// where the operator allows it), to a public "
                    "address (422 callback-url-refused otherwise)"
                ),
            ),
            FILE_FIELD: Schema(
                type=_STRING,
                format=OpenAPIFormat.BINARY,
                description="the MP4/MOV video; the other fields may come before or after it",
            ),
        },
    )


@dataclass
class SubmitOperation(ProblemOperation):
    """``submitVideo``: what its handler parses by hand (it streams, so Litestar can't see it).

    The multipart body, the optional ``Idempotency-Key`` request header, and on the 200 replay
    the same ``Location`` as the 202's plus ``Idempotent-Replayed: true``.
    """

    def __post_init__(self) -> None:
        super().__post_init__()
        self.request_body = RequestBody(
            required=True,
            description=(
                "The video and its parameters, in any order; fields sent before the file are "
                "checked before it is read."
            ),
            content={"multipart/form-data": OpenAPIMediaType(schema=_submit_form())},
        )
        self.parameters = [
            *(self.parameters or []),
            Parameter(
                name="Idempotency-Key",
                param_in="header",
                required=False,
                description=(
                    "Makes the submit safe to retry: a repeat with the same key, file and "
                    "parameters answers 200 with the original job; with another file or other "
                    "parameters, 409 idempotency-key-reused"
                ),
                schema=Schema(
                    type=_STRING,
                    min_length=1,
                    max_length=MAX_IDEMPOTENCY_KEY,
                    pattern=IDEMPOTENCY_KEY_PATTERN,
                ),
            ),
        ]
        responses = self.responses or {}
        accepted, replay = responses.get("202"), responses.get("200")
        assert isinstance(accepted, OpenAPIResponse), "the 202 is the handler's own"
        assert isinstance(replay, OpenAPIResponse), "the 200 is submit_replay_response()"
        replay.headers = {
            **(accepted.headers or {}),
            "Idempotent-Replayed": _header(
                "always 'true': this is the original job, not a new one",
                Schema(type=_STRING, enum=["true"]),
            ),
        }
