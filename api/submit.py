"""``POST /video/submit``: validate, stream the video to the blob store, then insert the job.

Order matters (docs/architecture.md, "blobs before rows"): nothing is stored until the key,
the tenant's limits (``vidjobs.api.admission``: upload slots, submit rate, pending jobs, stored
bytes), the form fields sent before the file and the file's ``ftyp`` header are valid; fields
sent after the file are checked when the body ends. The blob is written before the row, and
removed again if anything after it fails (a field after the file, a stalled body's 408), so no
row ever points at a missing blob and no blob outlives a failed submit.

Idempotency is content-aware: the upload's SHA-256 is stored with the job, and a repeat of an
``Idempotency-Key`` is a replay (200) only with the same file and parameters, else a 409 that
names what differs. A repeat never writes over the first job's blob: every upload goes to its
own job id's key, and a repeat found before the upload is hashed without being stored.

The handler borrows a pool connection only for the short queries (key check, idempotency
look-up, insert), never across the upload: a slow client must not hold a connection for minutes.
"""

from __future__ import annotations

import contextlib
import logging
import math
import uuid
from dataclasses import dataclass
from functools import partial
from typing import Any, BinaryIO, cast

import anyio.to_thread
from litestar import Request, Response

from vidjobs import tracing
from vidjobs.api.admission import UploadPace, admit, stored_bytes_exceeded
from vidjobs.api.auth import authenticate
from vidjobs.api.problems import ApiError, InvalidInput
from vidjobs.api.runtime import ApiRuntime
from vidjobs.api.uploads import (
    BlobFeed,
    FileStart,
    FormField,
    MultipartStream,
    check_mp4_head,
    multipart_boundary,
    read_head,
    upload_too_large,
)
from vidjobs.blobs import BlobStore, video_key
from vidjobs.db.admission import Admission
from vidjobs.db.jobs import job_get_by_idempotency_key, job_insert
from vidjobs.db.pool import connection
from vidjobs.db.webhooks import secret_info
from vidjobs.schema import Job
from vidjobs.schema.api import (
    MAX_IDEMPOTENCY_KEY,
    PIPELINES,
    PRIORITY_MAX,
    PRIORITY_MIN,
    FieldError,
    SubmitAccepted,
)
from vidjobs.schema.results import validate_params
from vidjobs.webhooks.settings import TargetPolicy
from vidjobs.webhooks.targets import TargetRefused, check_target, check_url

__all__ = ["FILE_FIELD", "SubmitSpec", "submit_video"]

FILE_FIELD = "file"
_FIELDS = (
    "pipeline",
    "sample_fps",
    "min_confidence",
    "keep_brief_text",
    "priority",
    "callback_url",
)
_TRUE = ("true", "1")
_FALSE = ("false", "0")
_ENVELOPE_BYTES = 64 * 1024
"""Multipart boundaries, part headers and form fields around the file, at most."""

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SubmitSpec:
    """A validated submit: what the job will run, and what an idempotent repeat must match."""

    pipeline: str
    params: dict[str, Any]
    priority: int
    callback_url: str | None = None


def status_url(job_id: uuid.UUID) -> str:
    """Where the client polls the job."""
    return f"/video/status/{job_id}"


def _priority(raw: str, errors: list[FieldError]) -> int:
    try:
        priority = int(raw)
    except ValueError:
        priority = PRIORITY_MIN - 1
    if not PRIORITY_MIN <= priority <= PRIORITY_MAX:
        errors.append(
            FieldError(
                field="priority",
                message=f"must be an integer from {PRIORITY_MIN} to {PRIORITY_MAX}, got {raw!r}",
            )
        )
    return priority


def _params(given: dict[str, str], errors: list[FieldError]) -> dict[str, float | bool]:
    """The analysis parameters given as form fields, typed; each bad one added to ``errors``."""
    raw: dict[str, float | bool] = {}
    if "keep_brief_text" in given:
        flag = given["keep_brief_text"].lower()
        if flag in _TRUE + _FALSE:
            raw["keep_brief_text"] = flag in _TRUE
        else:
            errors.append(
                FieldError(
                    field="keep_brief_text",
                    message=f"must be true or false, got {given['keep_brief_text']!r}",
                )
            )
    for name in ("sample_fps", "min_confidence"):
        if name not in given:
            continue
        try:
            number = float(given[name])
            if not math.isfinite(number):
                raise ValueError(given[name])
            validate_params({name: number})
            raw[name] = number
        except ValueError as exc:
            msg = str(exc) if name in str(exc) else f"{name} must be a number, got {given[name]!r}"
            errors.append(FieldError(field=name, message=msg))
    return raw


def validate_fields(
    fields: list[FormField], default_pipeline: str, targets: TargetPolicy | None = None
) -> SubmitSpec:
    """The submit's parameters, or one 422 listing every bad field and what is allowed.

    A ``callback_url`` is checked here as far as it can be without the network (scheme, no
    credentials, length); :func:`check_callback` checks where it points.
    """
    errors: list[FieldError] = []
    given: dict[str, str] = {}
    for f in fields:
        if f.name not in _FIELDS:
            errors.append(
                FieldError(field=f.name, message=f"unknown field; allowed: {', '.join(_FIELDS)}")
            )
        elif f.name in given:
            errors.append(FieldError(field=f.name, message="given more than once"))
        else:
            given[f.name] = f.value.strip()
    pipeline = given.get("pipeline") or default_pipeline
    if pipeline not in PIPELINES:
        errors.append(
            FieldError(field="pipeline", message=f"must be one of {', '.join(PIPELINES)}")
        )
    priority = _priority(given.get("priority", "0"), errors)
    raw = _params(given, errors)
    callback_url = given.get("callback_url") or None
    if callback_url is not None:
        try:
            check_url(callback_url, targets or TargetPolicy())
        except TargetRefused as exc:
            errors.append(FieldError(field="callback_url", message=f"refused: {exc}"))
    if errors:
        raise InvalidInput(
            "invalid submit: " + "; ".join(f"{e.field}: {e.message}" for e in errors),
            errors=errors,
        )
    return SubmitSpec(
        pipeline=pipeline,
        params=validate_params(raw),
        priority=priority,
        callback_url=callback_url,
    )


async def check_callback(spec: SubmitSpec, rt: ApiRuntime, tenant: str) -> None:
    """The rest of a ``callback_url``'s check: every address its host resolves to, and a
    signing secret to sign its events with; 422 ``callback-url-refused`` otherwise."""
    url = spec.callback_url
    if url is None:
        return
    try:
        await check_target(url, rt.settings.webhook_targets)
    except TargetRefused as exc:
        raise _callback_refused(f"callback_url refused: {exc}") from None
    async with connection(rt.pool) as conn:
        secrets = await secret_info(conn, tenant)
    if not secrets:
        raise _callback_refused(
            f"callback_url refused: tenant {tenant!r} has no webhook signing secret, so its "
            f"events could not be signed; an operator makes one with "
            f"`vidjobs webhooks secret --tenant {tenant}`"
        )


def _callback_refused(detail: str) -> ApiError:
    return ApiError(
        422,
        "callback-url-refused",
        detail,
        errors=[FieldError(field="callback_url", message=detail.removeprefix("callback_url "))],
    )


def _idempotency_key(request: Request[Any, Any, Any]) -> str | None:
    key = request.headers.get("idempotency-key")
    if key is None:
        return None
    key = key.strip()
    if not key or len(key) > MAX_IDEMPOTENCY_KEY or not key.isprintable() or not key.isascii():
        raise InvalidInput(
            f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} printable ASCII characters",
            errors=[FieldError(field="Idempotency-Key", message="invalid header value")],
        )
    return key


def _differences(job: Job, spec: SubmitSpec, sha256: str) -> list[str]:
    """What makes this submit another request than ``job``'s, one phrase each; [] if none."""
    diffs: list[str] = []
    if job.input_sha256 is not None and job.input_sha256 != sha256:
        diffs.append(
            f"the file content (sha256 {job.input_sha256[:12]}... then, {sha256[:12]}... now)"
        )
    pairs: list[tuple[str, Any, Any]] = [
        ("pipeline", job.pipeline, spec.pipeline),
        ("priority", job.priority, spec.priority),
        ("callback_url", job.callback_url, spec.callback_url),
    ]
    pairs += [
        (n, job.params.get(n), spec.params.get(n))
        for n in sorted(set(job.params) | set(spec.params))
    ]
    diffs += [f"{name} ({then!r} then, {now!r} now)" for name, then, now in pairs if then != now]
    return diffs


def _replay(job: Job, spec: SubmitSpec, sha256: str, key: str) -> Response[Any]:
    """Answer a repeat of an idempotent submit: the original job, or 409 if it differs.

    A repeat is the same request only with the same file (by SHA-256; a job submitted before
    the hash was kept matches on its parameters alone) and the same parameters.
    """
    diffs = _differences(job, spec, sha256)
    if diffs:
        raise ApiError(
            409,
            "idempotency-key-reused",
            f"Idempotency-Key {key!r} was first used for job {job.job_id} with a different "
            f"request; what differs: {'; '.join(diffs)}. Use a new key for a different request",
        )
    return Response(
        SubmitAccepted(job_id=job.job_id, status=job.state, status_url=status_url(job.job_id)),
        status_code=200,
        headers={"Location": status_url(job.job_id), "Idempotent-Replayed": "true"},
    )


async def _discard(store: BlobStore, key: str) -> None:
    """Remove a blob whose submit failed; an error here is logged, not raised over the cause."""
    try:
        await anyio.to_thread.run_sync(store.delete, key)
    except Exception:
        log.exception("could not remove blob %s of a failed submit; remove it by hand", key)


async def _read_fields(parts: MultipartStream) -> tuple[list[FormField], FileStart | None]:
    """The form fields before the file part, and the file part's start (None: no file part)."""
    fields: list[FormField] = []
    while True:
        event = await parts.next()
        if event is None:
            return fields, None
        if isinstance(event, FormField):
            fields.append(event)
        elif isinstance(event, FileStart):
            return fields, event


async def _read_trailing_fields(parts: MultipartStream) -> list[FormField]:
    """The form fields after the file part, to the end of the body; a second file is a 422."""
    fields: list[FormField] = []
    while (event := await parts.next()) is not None:
        if isinstance(event, FormField):
            fields.append(event)
        elif isinstance(event, FileStart):
            raise InvalidInput(
                f"only one file part is allowed: send the video as the part named "
                f"{FILE_FIELD!r}; got another file part named {event.name!r}",
                [FieldError(field=event.name, message="a second file part")],
                headers={"Connection": "close"},
            )
    return fields


async def submit_video(request: Request[Any, Any, Any], rt: ApiRuntime) -> Response[Any]:
    """Run one submit; every failure is a :class:`ApiError` or a 503 outage error.

    The tenant's upload slot is held from admission until the job is inserted (or the submit
    fails); admission and the key check share one pool connection, before the body is read.
    """
    settings = rt.settings
    with contextlib.ExitStack() as held:
        async with connection(rt.pool) as conn:
            tenant = await authenticate(request, conn, rt.auth_cache)
            idempotency_key = _idempotency_key(request)
            boundary = multipart_boundary(request.headers.get("content-type"))
            announced = request.content_length
            if announced is not None and announced > settings.max_upload_bytes + _ENVELOPE_BYTES:
                raise upload_too_large(settings.max_upload_bytes)
            held.enter_context(rt.tenant_uploads.slot(tenant))
            admission = await admit(conn, tenant, settings.tenants, incoming_bytes=announced)
        with tracing.span("job submit", {"vidjobs.tenant": tenant}):
            return await _upload(
                request,
                rt,
                tenant=tenant,
                idempotency_key=idempotency_key,
                boundary=boundary,
                admission=admission,
            )


async def _early_refusal(fields: list[FormField], rt: ApiRuntime, tenant: str) -> SubmitSpec:
    """The fields sent before the file, checked before a byte of it is read."""
    try:
        early = validate_fields(fields, rt.settings.default_pipeline, rt.settings.webhook_targets)
        await check_callback(early, rt, tenant)
    except ApiError as exc:  # the rest of the body is not read: close the connection
        exc.headers = {**(exc.headers or {}), "Connection": "close"}
        raise
    return early


async def _upload(
    request: Request[Any, Any, Any],
    rt: ApiRuntime,
    *,
    tenant: str,
    idempotency_key: str | None,
    boundary: bytes,
    admission: Admission,
) -> Response[Any]:
    """The admitted submit: read the fields, stream the file to the store, insert the job.

    Fields may come before or after the file. Those before it are checked before a byte of the
    file is read (a bad one is refused at once); the whole set once the body has ended, and if
    it is invalid then, the blob just written is removed before the same 422 is answered. A
    repeat of an idempotent submit found before the file is hashed without being stored.
    """
    settings = rt.settings
    pace = UploadPace(settings.upload_idle_timeout_s, settings.upload_min_bytes_per_s)
    parts = MultipartStream(request.stream(), boundary, pace)
    fields, file_start = await _read_fields(parts)
    if file_start is None or file_start.name != FILE_FIELD:
        got = "no file part" if file_start is None else f"a file part named {file_start.name!r}"
        raise ApiError(
            422,
            "missing-file",
            f"send the video as a multipart file part named {FILE_FIELD!r}, e.g. "
            f"curl -F pipeline=noop -F file=@video.mp4 ...; got {got}",
            errors=[FieldError(field=FILE_FIELD, message="required")],
            headers={"Connection": "close"} if file_start is not None else None,
        )
    early = await _early_refusal(fields, rt, tenant)
    existing = None
    if idempotency_key is not None:
        async with connection(rt.pool) as conn:
            existing = await job_get_by_idempotency_key(conn, tenant, idempotency_key)
    head, eof = await read_head(parts)
    check_mp4_head(head)

    max_bytes, over_limit = settings.max_upload_bytes, None
    left = admission.stored_bytes_left
    if left is not None and left < max_bytes:  # the tenant's quota is the nearer limit
        max_bytes, over_limit = left, partial(stored_bytes_exceeded, admission)
    feed = BlobFeed(
        parts,
        head,
        eof=eof,
        max_bytes=max_bytes,
        read_bytes=settings.upload_read_bytes,
        over_limit=over_limit,
    )
    if existing is not None:  # a repeat: compare its file by hash, store nothing
        assert idempotency_key is not None
        await feed.drain()
        spec = validate_fields(
            fields + await _read_trailing_fields(parts),
            settings.default_pipeline,
            settings.webhook_targets,
        )
        return _replay(existing, spec, feed.sha256, idempotency_key)

    job_id = uuid.uuid4()
    key = video_key(job_id)  # a fresh key: a losing repeat can never overwrite a first blob
    try:
        put = partial(rt.store.put_stream, key, cast(BinaryIO, feed), content_type="video/mp4")
        await anyio.to_thread.run_sync(put, limiter=rt.upload_limiter)
        fields += await _read_trailing_fields(parts)
        spec = validate_fields(fields, settings.default_pipeline, settings.webhook_targets)
        if spec.callback_url != early.callback_url:  # it came after the file
            await check_callback(spec, rt, tenant)
    except BaseException as exc:
        await _discard(rt.store, key)
        if feed.error is not None and exc is not feed.error:
            raise feed.error from exc
        raise
    try:
        async with connection(rt.pool) as conn:
            inserted = await job_insert(
                conn,
                job_id=job_id,
                tenant=tenant,
                pipeline=spec.pipeline,
                params=spec.params,
                priority=spec.priority,
                max_attempts=settings.max_attempts,
                input_key=key,
                input_bytes=feed.total,
                input_sha256=feed.sha256,
                callback_url=spec.callback_url,
                trace_context=tracing.current_traceparent(),
                idempotency_key=idempotency_key,
            )
    except BaseException:
        await _discard(rt.store, key)
        raise
    if not inserted.created:  # lost the race to a concurrent repeat: keep the original
        await _discard(rt.store, key)
        assert idempotency_key is not None
        return _replay(inserted.job, spec, feed.sha256, idempotency_key)
    tracing.annotate({"vidjobs.job_id": str(job_id), "vidjobs.pipeline": spec.pipeline,
                      "vidjobs.state": str(inserted.job.state)})  # fmt: skip
    log.info("job %s submitted by %s (%d bytes)", job_id, tenant, feed.total)
    return Response(
        SubmitAccepted(job_id=job_id, status=inserted.job.state, status_url=status_url(job_id)),
        status_code=202,
        headers={"Location": status_url(job_id)},
    )
