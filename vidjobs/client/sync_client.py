"""``Client``: the vidjobs API from ordinary (blocking) Python, one method per operation.

What each operation sends and what its answer becomes is :mod:`vidjobs.client.operations`;
when a request is sent again is :mod:`vidjobs.client.retry`. This module only sends and sleeps,
so it stays the twin of :mod:`vidjobs.client.async_client` line for line.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from types import TracebackType

import httpx

from vidjobs.client import operations as ops
from vidjobs.client.errors import WaitTimeout
from vidjobs.client.operations import UPLOAD_TIMEOUT, Answer, Call, Submission
from vidjobs.client.retry import NO_RETRY, Attempts, RetryPolicy
from vidjobs.client.settings import connection
from vidjobs.client.upload import Upload, Video
from vidjobs.schema.api import Health, JobList, JobResults, JobStatus, Readiness
from vidjobs.schema.job import TERMINAL_STATES, JobState

__all__ = ["Client"]


class Client:
    """A blocking client of one vidjobs API, as one tenant (its key).

    Args:
        api_url: the API's base URL; else ``VIDJOBS_API_URL``, else ``http://127.0.0.1:8000``.
        api_key: the key (``vidjobs keys create``); else ``VIDJOBS_API_KEY``; none for
            ``health()`` and ``ready()`` only.
        retry: how often and how long a call retries a 503, a 429 and a failed connection.
        timeout: the timeouts of every request but a submit's (seconds, or an ``httpx.Timeout``).
        upload_timeout: a submit's timeouts.

    Raises:
        InvalidApiUrl: the URL is not ``http(s)://host...``.

    Use it as a context manager, or call :meth:`close`: it holds a connection pool.
    """

    def __init__(
        self,
        api_url: str | None = None,
        api_key: str | None = None,
        *,
        retry: RetryPolicy | None = None,
        timeout: float | httpx.Timeout = 30.0,
        upload_timeout: httpx.Timeout = UPLOAD_TIMEOUT,
    ) -> None:
        self.api_url, headers = connection(api_url, api_key)
        self.retry = retry if retry is not None else RetryPolicy()
        self._upload_timeout = upload_timeout
        self._http = httpx.Client(base_url=self.api_url, headers=headers, timeout=timeout)

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def _send(self, call: Call) -> Answer:
        """Send ``call``, again as the retry policy allows; the answer and the requests sent."""
        upload = call.upload
        attempts = Attempts(
            self.retry if call.retry else NO_RETRY,
            call.replay_safe,
            self.api_url,
            can_resend=upload.can_resend if upload is not None else (lambda: True),
        )
        timeout = call.timeout(self._http.timeout, self._upload_timeout)
        while True:
            attempts.starting()
            try:
                response = self._http.request(
                    call.method,
                    call.path,
                    params=call.params,
                    headers=call.headers,
                    data=call.data,
                    files=call.files(),
                    timeout=timeout,
                )
            except httpx.TransportError as exc:
                wait = attempts.after_failure(exc)
            else:
                again = attempts.after_answer(response)
                if again is None:
                    return Answer(response, attempts.sent)
                wait = again
            time.sleep(wait)
            if upload is not None:
                upload.rewind()

    def submit(
        self,
        video: Video,
        *,
        pipeline: str | None = None,
        sample_fps: float | None = None,
        min_confidence: float | None = None,
        keep_brief_text: bool | None = None,
        priority: int | None = None,
        callback_url: str | None = None,
        idempotency_key: str | None = None,
        on_progress: Callable[[int], None] | None = None,
    ) -> Submission:
        """Upload a video and queue its job.

        Every submit carries an ``Idempotency-Key`` (a fresh uuid4 unless given), the same on
        each of its retries: a retry whose first answer was lost is answered with the job the
        first one created (``replayed``), never with a second job.

        Args:
            video: a path, the bytes, or a binary file (read from where it stands).
            pipeline: ``yolo_ocr`` or ``noop``; else the deployment's default.
            sample_fps: frames analysed per second of video (0.01 to 30; else 1).
            min_confidence: detections below it are dropped (0 to 1; else 0.25).
            keep_brief_text: keep text read in one sampled frame only, even at low OCR
                confidence, as a text event (else such reads are dropped as noise).
            priority: -100 to 100, higher runs first among the tenant's jobs (else 0).
            callback_url: where the job's end is POSTed as a signed webhook (docs/api.md,
                "Webhooks"); one the deployment refuses raises ``InvalidInput`` (422).
            idempotency_key: reuse one to make a repeat of this submit a replay later too.
            on_progress: called with the bytes of the video sent so far.
        """
        upload = Upload(video, on_progress)
        call = ops.submit_call(
            upload,
            pipeline=pipeline,
            sample_fps=sample_fps,
            min_confidence=min_confidence,
            keep_brief_text=keep_brief_text,
            priority=priority,
            callback_url=callback_url,
            idempotency_key=idempotency_key,
        )
        try:
            answer = self._send(call)
        finally:
            upload.close()
        return ops.submitted(call, answer)

    def status(self, job_id: uuid.UUID | str) -> JobStatus:
        """The job's state and progress."""
        return ops.decode(self._send(ops.status_call(job_id)), JobStatus)

    def results(self, job_id: uuid.UUID | str) -> JobResults:
        """A completed job's results document (:class:`ResultsNotReady` before it completed)."""
        return ops.decode(self._send(ops.results_call(job_id)), JobResults)

    def list_jobs(
        self,
        *,
        status: JobState | str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> JobList:
        """One page of the tenant's jobs, newest first; pass ``next_cursor`` for the next."""
        return ops.decode(self._send(ops.list_call(status, limit, cursor)), JobList)

    def iter_jobs(
        self, *, status: JobState | str | None = None, page_size: int | None = None
    ) -> Iterator[JobStatus]:
        """Every job of the tenant, newest first, page after page as they are read."""
        cursor: str | None = None
        while True:
            page = self.list_jobs(status=status, limit=page_size, cursor=cursor)
            yield from page.jobs
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    def cancel(self, job_id: uuid.UUID | str) -> JobStatus:
        """Cancel a pending or running job (:class:`JobFinished` if it completed or failed)."""
        return ops.decode(self._send(ops.cancel_call(job_id)), JobStatus)

    def delete(self, job_id: uuid.UUID | str) -> None:
        """Delete a finished job, its video and results (:class:`JobNotFinished` before)."""
        ops.expect_empty(self._send(ops.delete_call(job_id)))

    def health(self) -> Health:
        """The API process answers."""
        return ops.decode(self._send(ops.health_call()), Health)

    def ready(self) -> Readiness:
        """Postgres and the blob store answer the API now (else :class:`NotReady`, not retried)."""
        return ops.decode(self._send(ops.ready_call()), Readiness)

    def wait(
        self,
        job_id: uuid.UUID | str,
        *,
        timeout: float = 600.0,
        poll_interval: float = 1.0,
        on_status: Callable[[JobStatus], None] | None = None,
    ) -> JobStatus:
        """Follow the job until it completes, fails or is cancelled; its final status.

        Args:
            job_id: the job.
            timeout: seconds to wait at most (:class:`WaitTimeout` then, with the last status).
            poll_interval: the longest a read of the status waits for the state to change
                (the API's long poll, at most 60 s); progress is reported at least this often.
            on_status: called with every status read, the final one included (progress bars).
        """
        deadline = time.monotonic() + timeout
        current = self.status(job_id)
        while True:
            if on_status is not None:
                on_status(current)
            if current.status in TERMINAL_STATES:
                return current
            left = deadline - time.monotonic()
            if left <= 0:
                raise WaitTimeout(
                    f"job {job_id} still {current.status} after {timeout:g} s", current
                )
            current = self._next_status(job_id, min(poll_interval, left), current)

    def _next_status(self, job_id: uuid.UUID | str, within: float, last: JobStatus) -> JobStatus:
        """The job's status once its state changes, or after ``within`` seconds: how wait polls.

        The API's long poll (``?wait=``) answers as soon as the state changes, so a wait ends
        within a tick of the job's end, not a ``poll_interval`` later. An API without it
        answers at once; the rest of ``within`` is then slept here, so a wait never spins.
        """
        started = time.monotonic()
        current = ops.decode(self._send(ops.status_call(job_id, within)), JobStatus)
        rest = within - (time.monotonic() - started)
        if current.status == last.status and rest > 0:
            time.sleep(rest)
        return current
