"""POST /video/submit with the form fields in any order, and content-aware idempotency.

Clients and generated SDKs do not promise an order of the multipart parts (openapi-python-client
sends ``file`` first; so does ``curl -F file=@x -F sample_fps=2``). Fields may come before or
after the file; whatever is invalid, wherever it sits, gets the same 4xx and leaves no row and
no blob. An ``Idempotency-Key`` repeat is a replay only with the same file (by SHA-256) and the
same parameters. Real Postgres and a real S3 server behind Litestar's test client.
"""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

import httpx
import pytest
from litestar import Litestar
from litestar.testing import TestClient

from tests.support.api import MAX_UPLOAD
from tests.support.blobs import stored_keys
from tests.support.db import count_jobs, sql
from tests.support.keys import Keys
from tests.support.media import mp4_bytes
from tests.support.s3 import S3Server
from vidjobs.blobs import BlobSettings

pytestmark = pytest.mark.integration

PROBLEM = "application/problem+json"
Part = tuple[str, tuple[str | None, bytes | str] | tuple[str, bytes, str]]


def _file(video: bytes) -> Part:
    return ("file", ("clip.mp4", video, "video/mp4"))


def _field(name: str, value: str) -> Part:
    return (name, (None, value))  # httpx: no filename -> a plain form field


def _post(
    c: TestClient[Litestar], key: str, parts: list[Part], headers: dict[str, str] | None = None
) -> httpx.Response:
    """A multipart submit whose parts go out exactly in the order given."""
    return c.post("/video/submit", files=parts, headers={**Keys.auth(key), **(headers or {})})


def _blob(s3_server: S3Server, settings: BlobSettings, key: str) -> bytes:
    obj = s3_server.client().get_object(settings.s3_bucket, key)
    try:
        return obj.read()
    finally:
        obj.close()
        obj.release_conn()


def _row(database_url: str, job_id: str) -> tuple[Any, ...]:
    (row,) = sql(
        database_url,
        "SELECT pipeline, params, priority, input_bytes, input_sha256 FROM vidjobs.jobs"
        " WHERE job_id = %s",
        uuid.UUID(job_id),
    )
    return row


def _problem(resp: httpx.Response, status: int, slug: str) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith(PROBLEM)
    body: dict[str, Any] = resp.json()
    assert body["type"].endswith(slug), body
    return body


def _nothing_stored(database_url: str, s3_settings: BlobSettings) -> None:
    assert count_jobs(database_url) == 0
    assert stored_keys(s3_settings) == []


@pytest.mark.parametrize(
    "order",
    ["file-first", "fields-first", "file-in-the-middle"],
)
def test_fields_in_any_order_make_the_same_job(
    client: TestClient[Litestar],
    keys: Keys,
    database_url: str,
    s3_settings: BlobSettings,
    s3_server: S3Server,
    order: str,
) -> None:
    video = mp4_bytes(200_000, seed=3)
    fields = [_field("pipeline", "noop"), _field("sample_fps", "2"), _field("priority", "5")]
    parts = {
        "file-first": [_file(video), *fields],
        "fields-first": [*fields, _file(video)],
        "file-in-the-middle": [fields[0], _file(video), *fields[1:]],
    }[order]
    resp = _post(client, keys.acme, parts)
    assert resp.status_code == 202, resp.text
    job_id = resp.json()["job_id"]
    assert stored_keys(s3_settings) == [f"video_jobs/{job_id}.mp4"]
    assert _blob(s3_server, s3_settings, f"video_jobs/{job_id}.mp4") == video
    sha = hashlib.sha256(video).hexdigest()
    assert _row(database_url, job_id) == (
        "noop",
        {"sample_fps": 2.0, "min_confidence": 0.25, "keep_brief_text": False},
        5,
        len(video),
        sha,
    )


def test_status_shows_the_sha256_of_the_uploaded_bytes(
    client: TestClient[Litestar], keys: Keys
) -> None:
    video = mp4_bytes(MAX_UPLOAD - 13, seed=11)
    resp = _post(client, keys.acme, [_file(video), _field("pipeline", "noop")])
    assert resp.status_code == 202, resp.text
    status = client.get(resp.headers["location"], headers=Keys.auth(keys.acme)).json()
    assert status["input_sha256"] == hashlib.sha256(video).hexdigest()
    listed = client.get("/video/jobs", headers=Keys.auth(keys.acme)).json()["jobs"]
    assert [j["input_sha256"] for j in listed] == [status["input_sha256"]]


@pytest.mark.parametrize(
    ("after", "bad"),
    [
        ([_field("sample_fps", "1000")], "sample_fps"),
        ([_field("pipeline", "nope")], "pipeline"),
        ([_field("priority", "1.5")], "priority"),
        ([_field("colour", "blue")], "colour"),
        ([_field("pipeline", "noop"), _field("pipeline", "noop")], "pipeline"),
    ],
)
def test_an_invalid_field_after_the_file_is_the_same_422_and_leaves_nothing(
    client: TestClient[Litestar],
    keys: Keys,
    database_url: str,
    s3_settings: BlobSettings,
    after: list[Part],
    bad: str,
) -> None:
    video = mp4_bytes(200_000)
    late = _post(client, keys.acme, [_file(video), *after])
    body = _problem(late, 422, "invalid-input")
    assert [e["field"] for e in body["errors"]] == [bad]
    _nothing_stored(database_url, s3_settings)
    # The same field before the file: the same answer, refused before the file is read.
    early = _post(client, keys.acme, [*after, _file(video)])
    assert _problem(early, 422, "invalid-input")["errors"] == body["errors"]
    _nothing_stored(database_url, s3_settings)


def test_the_same_field_before_and_after_the_file_is_given_twice(
    client: TestClient[Litestar], keys: Keys, database_url: str, s3_settings: BlobSettings
) -> None:
    parts = [_field("sample_fps", "2"), _file(mp4_bytes()), _field("sample_fps", "3")]
    body = _problem(_post(client, keys.acme, parts), 422, "invalid-input")
    assert body["errors"] == [{"field": "sample_fps", "message": "given more than once"}]
    _nothing_stored(database_url, s3_settings)


def test_a_second_file_part_is_422_and_leaves_nothing(
    client: TestClient[Litestar], keys: Keys, database_url: str, s3_settings: BlobSettings
) -> None:
    parts = [_file(mp4_bytes()), ("thumbnail", ("t.mp4", mp4_bytes(500), "video/mp4"))]
    body = _problem(_post(client, keys.acme, parts), 422, "invalid-input")
    assert "only one file part" in body["detail"]
    assert [e["field"] for e in body["errors"]] == ["thumbnail"]
    _nothing_stored(database_url, s3_settings)


def test_same_key_with_another_file_is_409_and_the_first_blob_is_unchanged(
    client: TestClient[Litestar],
    keys: Keys,
    database_url: str,
    s3_settings: BlobSettings,
    s3_server: S3Server,
) -> None:
    key = {"Idempotency-Key": "cam3-2024-06-01"}
    first_video, other_video = mp4_bytes(150_000, seed=1), mp4_bytes(150_000, seed=2)
    first = _post(client, keys.acme, [_field("pipeline", "noop"), _file(first_video)], key)
    assert first.status_code == 202, first.text
    job_id = first.json()["job_id"]

    other = _post(client, keys.acme, [_field("pipeline", "noop"), _file(other_video)], key)
    body = _problem(other, 409, "idempotency-key-reused")
    assert "file content" in body["detail"]
    assert job_id in body["detail"]
    assert "pipeline" not in body["detail"].split("differs:")[1]  # only the file differs
    # Nothing of the second upload is kept; the first job's video is the first file still.
    assert count_jobs(database_url) == 1
    assert stored_keys(s3_settings) == [f"video_jobs/{job_id}.mp4"]
    assert _blob(s3_server, s3_settings, f"video_jobs/{job_id}.mp4") == first_video
    assert _row(database_url, job_id)[4] == hashlib.sha256(first_video).hexdigest()

    # Another file and other parameters: the detail names each difference.
    both = _post(
        client,
        keys.acme,
        [_file(other_video), _field("pipeline", "noop"), _field("sample_fps", "5")],
        key,
    )
    detail = _problem(both, 409, "idempotency-key-reused")["detail"]
    assert "file content" in detail
    assert "sample_fps (1.0 then, 5.0 now)" in detail
    assert stored_keys(s3_settings) == [f"video_jobs/{job_id}.mp4"]


def test_same_key_same_file_same_params_in_another_order_is_a_replay(
    client: TestClient[Litestar], keys: Keys, database_url: str, s3_settings: BlobSettings
) -> None:
    key = {"Idempotency-Key": "upload-77"}
    video = mp4_bytes(120_000, seed=5)
    first = _post(client, keys.acme, [_field("pipeline", "noop"), _file(video)], key)
    assert first.status_code == 202, first.text
    again = _post(client, keys.acme, [_file(video), _field("pipeline", "noop")], key)
    assert again.status_code == 200, again.text
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json()["job_id"] == first.json()["job_id"]
    assert count_jobs(database_url) == 1
    assert stored_keys(s3_settings) == [f"video_jobs/{first.json()['job_id']}.mp4"]
    # An invalid field after the file of a repeat is the same 422, not a replay.
    bad = _post(client, keys.acme, [_file(video), _field("sample_fps", "0")], key)
    _problem(bad, 422, "invalid-input")
    assert stored_keys(s3_settings) == [f"video_jobs/{first.json()['job_id']}.mp4"]
