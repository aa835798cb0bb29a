"""The client's retry decisions and error classes, without a socket (the real ones run in
``tests/acceptance/test_python_client_retries.py``): ``Retry-After`` in both of its forms, the
backoff's bounds, the attempt and time budgets on a controlled clock, and which exception an
error answer becomes.
"""

from __future__ import annotations

import email.utils
import time

import httpx
import pytest

from vidjobs.client import (
    ApiError,
    ApiUnreachable,
    IdempotencyKeyReused,
    NotFound,
    NotReady,
    RateLimited,
    ResultsNotReady,
    RetryPolicy,
    Unavailable,
)
from vidjobs.client.errors import error_for, retry_after_s
from vidjobs.client.retry import Attempts

_REQUEST = httpx.Request("GET", "http://api.test/video/status/x")


def _response(status: int, body: bytes = b"", **headers: str) -> httpx.Response:
    return httpx.Response(status, content=body, headers=headers, request=_REQUEST)


def _problem(status: int, slug: str, **headers: str) -> httpx.Response:
    body = (
        f'{{"type":"https://vidjobs.dev/problems/{slug}","title":"T","status":{status},'
        f'"detail":"why {slug}","job_status":"cancelled"}}'
    ).encode()
    return _response(status, body, **headers)


class Clock:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_retry_after_in_seconds_or_as_an_http_date() -> None:
    assert retry_after_s(_response(503, **{"Retry-After": "3"})) == 3.0
    assert retry_after_s(_response(503, **{"Retry-After": " 0 "})) == 0.0
    assert retry_after_s(_response(503, **{"Retry-After": "-4"})) == 0.0
    assert retry_after_s(_response(503)) is None
    assert retry_after_s(_response(503, **{"Retry-After": "soon"})) is None
    assert retry_after_s(_response(503, **{"Retry-After": "nan"})) is None
    date = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 25 <= (retry_after_s(_response(429, **{"Retry-After": date})) or 0) <= 31


def test_backoff_doubles_with_jitter_up_to_its_ceiling() -> None:
    policy = RetryPolicy(backoff_s=0.5, backoff_max_s=3.0)
    for failures, ceiling in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 3.0), (9, 3.0)]:
        waits = [policy.backoff(failures) for _ in range(200)]
        assert all(ceiling / 2 <= w <= ceiling for w in waits), (failures, min(waits), max(waits))
    with pytest.raises(ValueError, match="attempts"):
        RetryPolicy(attempts=0)


def test_attempts_wait_as_told_then_give_up_at_either_bound() -> None:
    clock = Clock()
    attempts = Attempts(RetryPolicy(attempts=3, budget_s=10), True, "http://api.test", clock=clock)
    attempts.starting()
    # Retry-After, and up to a tenth more (jitter), never less.
    unavailable = _problem(503, "database-unavailable", **{"Retry-After": "4"})
    assert 4 <= (attempts.after_answer(unavailable) or 0) <= 4.4
    clock.now += 4
    attempts.starting()
    limited = _problem(429, "submit-rate-limited", **{"Retry-After": "2"})
    assert 2 <= (attempts.after_answer(limited) or 0) <= 2.2
    clock.now += 2
    attempts.starting()
    with pytest.raises(Unavailable, match=r"gave up after 3 attempts in 6\.0 s") as given_up:
        attempts.after_answer(_problem(503, "database-unavailable", **{"Retry-After": "1"}))
    assert given_up.value.attempts == 3
    assert attempts.after_answer(_response(200)) is None  # anything else is the call's answer

    budget = Attempts(RetryPolicy(attempts=9, budget_s=10), True, "http://api.test", clock=clock)
    budget.starting()
    with pytest.raises(RateLimited, match="would pass the 10 s budget") as too_long:
        budget.after_answer(_problem(429, "submit-rate-limited", **{"Retry-After": "11"}))
    assert too_long.value.retry_after == 11.0


def test_a_lost_answer_is_retried_only_when_a_repeat_is_safe() -> None:
    lost = httpx.RemoteProtocolError("Server disconnected without sending a response.")
    safe = Attempts(RetryPolicy(backoff_s=1, backoff_max_s=1), True, "http://api.test")
    safe.starting()
    assert 0.5 <= safe.after_failure(lost) <= 1.0
    unsafe = Attempts(RetryPolicy(), False, "http://api.test")
    unsafe.starting()
    with pytest.raises(ApiUnreachable, match="may have been carried out"):
        unsafe.after_failure(lost)
    unsafe.starting()  # a connection never made is safe for any request
    assert unsafe.after_failure(httpx.ConnectError("refused")) > 0
    pipe = Attempts(RetryPolicy(), True, "http://api.test", can_resend=lambda: False)
    pipe.starting()
    with pytest.raises(ApiUnreachable, match="cannot be read again"):
        pipe.after_failure(httpx.ConnectError("refused"))


def test_an_error_answer_becomes_the_class_of_its_slug_else_of_its_status() -> None:
    cases = [
        (_problem(404, "results-not-ready"), ResultsNotReady),
        (_problem(404, "job-not-found"), NotFound),
        (_problem(409, "idempotency-key-reused"), IdempotencyKeyReused),
        (_problem(503, "not-ready"), NotReady),
        (_problem(503, "blob-store-unavailable"), Unavailable),
        (_problem(418, "teapot"), ApiError),
    ]
    for response, cls in cases:
        error = error_for(response)
        assert type(error) is cls, (response.status_code, type(error))
        assert error.problem.detail.startswith("why ")
        assert str(error) == f"HTTP {response.status_code}: {error.problem.detail}"
    assert error_for(_problem(404, "results-not-ready")).problem.job_status == "cancelled"

    html = error_for(_response(502, b"<html>Bad Gateway</html>"))  # not a problem document
    assert type(html) is ApiError
    assert (html.status, html.slug, html.problem.detail) == (
        502,
        "about:blank",
        "<html>Bad Gateway</html>",
    )
