"""Each API operation as data: what request it sends, and what its answer becomes.

The sync and the async client differ only in how they send and how they sleep, so everything
else lives here once: the paths, the form fields (sent before the file, so that a bad one is
refused before a byte of the video goes out), the ``Idempotency-Key`` of a submit, which
requests may be repeated after a lost answer, and the decoding of every answer into the
Structs of :mod:`vidjobs.schema.api` (an error answer into the exception
:func:`~vidjobs.client.errors.error_for` picks).
"""

from __future__ import annotations

import urllib.parse
import uuid
from dataclasses import dataclass
from typing import IO, NamedTuple, TypeVar, cast

import httpx
import msgspec

from vidjobs.client.errors import UnexpectedAnswer, error_for
from vidjobs.client.upload import Upload
from vidjobs.schema.api import SubmitAccepted
from vidjobs.schema.job import JobState

__all__ = [
    "MAX_WAIT_S",
    "UPLOAD_TIMEOUT",
    "Answer",
    "Call",
    "Submission",
    "cancel_call",
    "decode",
    "delete_call",
    "expect_empty",
    "health_call",
    "list_call",
    "ready_call",
    "results_call",
    "status_call",
    "submit_call",
    "submitted",
]

T = TypeVar("T")

MAX_WAIT_S = 60.0
"""The longest long poll the API holds (``GET /video/status/{id}?wait=S``)."""

UPLOAD_TIMEOUT = httpx.Timeout(30.0, write=None, read=600.0)
"""A submit's timeouts: no bound on sending a large video, and the API may take a while after
the last byte (storing it, inserting the job) before it answers."""


@dataclass(frozen=True, slots=True)
class Call:
    """One request of one operation.

    Attributes:
        method: the HTTP method.
        path: the path under the base URL.
        replay_safe: sending it again after a lost answer does nothing twice.
        params: the query string.
        headers: extra request headers.
        data: form fields (a submit's).
        upload: the video (a submit's).
        retry: False to send it once whatever happens (a readiness probe answers for now).
        holds_s: seconds the API may hold it before answering (a long poll), added to the
            read timeout.
    """

    method: str
    path: str
    replay_safe: bool
    params: dict[str, str | int] | None = None
    headers: dict[str, str] | None = None
    data: dict[str, str] | None = None
    upload: Upload | None = None
    retry: bool = True
    holds_s: float = 0.0

    def timeout(self, default: httpx.Timeout, upload: httpx.Timeout) -> httpx.Timeout:
        """This request's timeouts: a submit's, or the client's plus what a long poll holds."""
        if self.upload is not None:
            return upload
        if self.holds_s and default.read is not None:
            return httpx.Timeout(
                connect=default.connect,
                read=default.read + self.holds_s,
                write=default.write,
                pool=default.pool,
            )
        return default

    def files(self) -> dict[str, tuple[str, IO[bytes], str]] | None:
        """The multipart file part for httpx, or None."""
        if self.upload is None:
            return None
        return {"file": (self.upload.filename, cast(IO[bytes], self.upload), "video/mp4")}


class Answer(NamedTuple):
    """The answer a call ended with, and how many requests it took (retries included)."""

    response: httpx.Response
    attempts: int


class Submission(msgspec.Struct, frozen=True, kw_only=True):
    """What a submit got back.

    Attributes:
        job_id: the job (for a replay, the one the first submit created).
        status: its state when the API answered.
        status_url: where its status is read.
        idempotency_key: the key the submit was sent with (generated unless given); a later
            submit with it and the same video is answered with this job again.
        replayed: True when the API answered a repeat of an earlier submit (200
            ``Idempotent-Replayed``), e.g. after a retry whose first answer was lost.
    """

    job_id: uuid.UUID
    status: JobState
    status_url: str
    idempotency_key: str
    replayed: bool


def _job(job_id: uuid.UUID | str) -> str:
    """The id as one path segment (a malformed one is the API's 422, not ours to guess)."""
    return urllib.parse.quote(str(job_id), safe="")


def submit_call(
    upload: Upload,
    *,
    pipeline: str | None,
    sample_fps: float | None,
    min_confidence: float | None,
    priority: int | None,
    idempotency_key: str | None,
    callback_url: str | None = None,
    keep_brief_text: bool | None = None,
) -> Call:
    """``POST /video/submit``; without ``idempotency_key`` a fresh uuid4, kept for its retries."""
    fields = {
        "pipeline": pipeline,
        "sample_fps": sample_fps,
        "min_confidence": min_confidence,
        "keep_brief_text": None if keep_brief_text is None else str(keep_brief_text).lower(),
        "priority": priority,
        "callback_url": callback_url,
    }
    key = idempotency_key if idempotency_key is not None else str(uuid.uuid4())
    return Call(
        "POST",
        "/video/submit",
        replay_safe=True,  # the key makes a repeat a replay
        data={name: str(value) for name, value in fields.items() if value is not None},
        headers={"Idempotency-Key": key},
        upload=upload,
    )


def submitted(call: Call, answer: Answer) -> Submission:
    """The :class:`Submission` of a submit's answer (202 new, 200 replay)."""
    accepted = decode(answer, SubmitAccepted)
    response = answer.response
    return Submission(
        job_id=accepted.job_id,
        status=accepted.status,
        status_url=accepted.status_url,
        idempotency_key=(call.headers or {})["Idempotency-Key"],
        replayed=response.headers.get("idempotent-replayed", "").lower() == "true",
    )


def status_call(job_id: uuid.UUID | str, wait_s: float = 0.0) -> Call:
    """``GET /video/status/{job_id}``; with ``wait_s``, the long poll (``?wait=``, at most 60)."""
    if wait_s <= 0:
        return Call("GET", f"/video/status/{_job(job_id)}", replay_safe=True)
    wait_s = min(wait_s, MAX_WAIT_S)
    return Call(
        "GET",
        f"/video/status/{_job(job_id)}",
        replay_safe=True,
        params={"wait": f"{wait_s:.3f}"},
        holds_s=wait_s,
    )


def results_call(job_id: uuid.UUID | str) -> Call:
    """``GET /video/results/{job_id}``."""
    return Call("GET", f"/video/results/{_job(job_id)}", replay_safe=True)


def list_call(state: JobState | str | None, limit: int | None, cursor: str | None) -> Call:
    """``GET /video/jobs``, one page."""
    params: dict[str, str | int] = {}
    if state is not None:
        params["status"] = str(state)
    if limit is not None:
        params["limit"] = limit
    if cursor is not None:
        params["cursor"] = cursor
    return Call("GET", "/video/jobs", replay_safe=True, params=params)


def cancel_call(job_id: uuid.UUID | str) -> Call:
    """``POST /video/jobs/{job_id}/cancel``: cancelling a cancelled job again is a 200."""
    return Call("POST", f"/video/jobs/{_job(job_id)}/cancel", replay_safe=True)


def delete_call(job_id: uuid.UUID | str) -> Call:
    """``DELETE /video/jobs/{job_id}``: a repeat after a lost 204 would be a 404, so never one."""
    return Call("DELETE", f"/video/jobs/{_job(job_id)}", replay_safe=False)


def health_call() -> Call:
    """``GET /health``: no key needed."""
    return Call("GET", "/health", replay_safe=True)


def ready_call() -> Call:
    """``GET /ready``, sent once: its 503 is the answer a probe wants, not one to wait out."""
    return Call("GET", "/ready", replay_safe=True, retry=False)


def decode(answer: Answer, kind: type[T]) -> T:
    """The answer's body as ``kind``; an error status raises its :class:`ApiError`."""
    response = answer.response
    if response.status_code >= 400:
        raise error_for(response, attempts=answer.attempts)
    try:
        return msgspec.json.decode(response.content, type=kind)
    except msgspec.DecodeError as exc:
        raise UnexpectedAnswer(
            f"HTTP {response.status_code} from {response.request.url}, but not the answer"
            f" expected: {exc}"
        ) from exc


def expect_empty(answer: Answer) -> None:
    """An answer without a body (delete's 204); an error status raises."""
    if answer.response.status_code >= 400:
        raise error_for(answer.response, attempts=answer.attempts)
