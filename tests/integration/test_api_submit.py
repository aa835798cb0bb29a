"""POST /video/submit over HTTP against real Postgres and a real S3 server.

Every bad input gets its own clear 4xx problem, and none leaves a row or a blob behind.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest
from litestar import Litestar
from litestar.testing import TestClient

from tests.support.api import MAX_UPLOAD
from tests.support.blobs import stored_keys
from tests.support.db import count_jobs
from tests.support.keys import Keys
from tests.support.media import mp4_bytes
from tests.support.s3 import S3Server
from tests.support.stand_in_worker import stand_in_worker_claims, stand_in_worker_completes
from tests.support.worker import fast_settings, running_worker
from vidjobs.api.settings import ApiSettings
from vidjobs.blobs import BlobSettings

pytestmark = pytest.mark.integration

PROBLEM = "application/problem+json"


def _submit(
    c: TestClient[Litestar],
    key: str | None,
    *,
    data: dict[str, str] | None = None,
    content: bytes | None = None,
    filename: str = "clip.mp4",
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    files = None if content is None else {"file": (filename, content, "video/mp4")}
    h = dict(headers or {})
    if key is not None:
        h.update(Keys.auth(key))
    return c.post("/video/submit", data=data or {}, files=files, headers=h)


def _assert_problem(
    resp: httpx.Response, status: int, type_suffix: str, *words: str
) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith(PROBLEM)
    body: dict[str, Any] = resp.json()
    assert body["status"] == status
    assert body["type"].endswith(type_suffix), body
    for word in words:
        assert word in body["detail"], body
    return body


def _nothing_stored(database_url: str, s3_settings: BlobSettings, s3_server: S3Server) -> None:
    assert count_jobs(database_url) == 0
    assert stored_keys(s3_settings) == []


def test_submit_status_results_end_to_end_with_stand_in_worker(
    client: TestClient[Litestar],
    keys: Keys,
    database_url: str,
    s3_settings: BlobSettings,
    s3_server: S3Server,
) -> None:
    video = mp4_bytes(100_000)
    resp = _submit(client, keys.acme, data={"pipeline": "noop", "sample_fps": "2"}, content=video)
    assert resp.status_code == 202, resp.text
    job_id = uuid.UUID(resp.json()["job_id"])
    assert resp.headers["location"] == f"/video/status/{job_id}"
    assert resp.json()["status"] == "pending"
    # The blob holds exactly the uploaded bytes, under the UUID key.
    assert stored_keys(s3_settings) == [f"video_jobs/{job_id}.mp4"]
    obj = s3_server.client().get_object(s3_settings.s3_bucket, f"video_jobs/{job_id}.mp4")
    try:
        assert obj.read() == video
    finally:
        obj.close()
        obj.release_conn()

    status = client.get(resp.headers["location"], headers=Keys.auth(keys.acme)).json()
    assert status["status"] == "pending"
    assert status["progress"] == 0.0
    assert status["error"] is None
    pending = client.get(f"/video/results/{job_id}", headers=Keys.auth(keys.acme))
    _assert_problem(pending, 404, "results-not-ready", "job is pending")

    claimed = stand_in_worker_claims(database_url, frames_done=21, frames_total=50)
    assert claimed.job_id == job_id
    status = client.get(f"/video/status/{job_id}", headers=Keys.auth(keys.acme)).json()
    assert status["status"] == "running"
    assert status["progress"] == pytest.approx(0.42)
    assert (status["frames_done"], status["frames_total"]) == (21, 50)
    assert status["started_at"] is not None
    running = client.get(f"/video/results/{job_id}", headers=Keys.auth(keys.acme))
    body = _assert_problem(running, 404, "results-not-ready", "job is running (42%)")
    assert body["job_status"] == "running"

    document = {"schema_version": 1, "frames": [], "summary": {"objects": {"car": 3}}}
    stand_in_worker_completes(database_url, s3_settings, claimed, document)
    status = client.get(f"/video/status/{job_id}", headers=Keys.auth(keys.acme)).json()
    assert status["status"] == "completed"
    assert status["progress"] == 1.0
    assert status["attempts"] == 1
    assert status["finished_at"] is not None
    results = client.get(f"/video/results/{job_id}", headers=Keys.auth(keys.acme))
    assert results.status_code == 200, results.text
    body = results.json()
    assert body["job_id"] == str(job_id)
    assert body["results"] == document
    assert set(body) == {"job_id", "results", "created_at", "updated_at"}


def test_a_completed_noop_job_answers_results_200_with_an_empty_document(
    client: TestClient[Litestar], keys: Keys, database_url: str
) -> None:
    """The noop pipeline analyses nothing and stores no document: its results are empty, 200."""
    resp = _submit(client, keys.acme, data={"pipeline": "noop"}, content=mp4_bytes())
    assert resp.status_code == 202, resp.text
    job_id = resp.json()["job_id"]

    async def drain() -> None:  # a real worker loop on the same database
        async with running_worker(database_url, fast_settings(), drain=True) as rw:
            await asyncio.wait_for(rw.task, 30)

    asyncio.run(drain())
    status = client.get(f"/video/status/{job_id}", headers=Keys.auth(keys.acme)).json()
    assert status["status"] == "completed"
    results = client.get(f"/video/results/{job_id}", headers=Keys.auth(keys.acme))
    assert results.status_code == 200, results.text
    assert results.json()["results"] == {}
    assert results.json()["job_id"] == job_id


def test_no_file_part_is_422(
    client: TestClient[Litestar],
    keys: Keys,
    database_url: str,
    s3_settings: BlobSettings,
    s3_server: S3Server,
) -> None:
    # multipart/form-data with a field but no file part (httpx encodes (None, value) as a field)
    resp = client.post(
        "/video/submit", files={"pipeline": (None, "noop")}, headers=Keys.auth(keys.acme)
    )
    body = _assert_problem(resp, 422, "missing-file", "file")
    assert body["errors"] == [{"field": "file", "message": "required"}]
    _nothing_stored(database_url, s3_settings, s3_server)


def test_not_multipart_is_415(
    client: TestClient[Litestar],
    keys: Keys,
    database_url: str,
    s3_settings: BlobSettings,
    s3_server: S3Server,
) -> None:
    resp = client.post(
        "/video/submit",
        content=mp4_bytes(),
        headers={**Keys.auth(keys.acme), "Content-Type": "video/mp4"},
    )
    _assert_problem(resp, 415, "multipart-required", "multipart/form-data")
    form = client.post("/video/submit", data={"pipeline": "noop"}, headers=Keys.auth(keys.acme))
    _assert_problem(form, 415, "multipart-required", "x-www-form-urlencoded")
    _nothing_stored(database_url, s3_settings, s3_server)


def test_empty_file_is_422(
    client: TestClient[Litestar],
    keys: Keys,
    database_url: str,
    s3_settings: BlobSettings,
    s3_server: S3Server,
) -> None:
    _assert_problem(_submit(client, keys.acme, content=b""), 422, "empty-file", "empty")
    _nothing_stored(database_url, s3_settings, s3_server)


def test_text_file_renamed_mp4_is_415(
    client: TestClient[Litestar],
    keys: Keys,
    database_url: str,
    s3_settings: BlobSettings,
    s3_server: S3Server,
) -> None:
    text = b"This is not a video, just some notes.\n" * 100
    resp = _submit(client, keys.acme, content=text, filename="notes.mp4")
    _assert_problem(resp, 415, "not-mp4", "ftyp")
    _nothing_stored(database_url, s3_settings, s3_server)


def test_iso_media_that_is_not_a_video_is_415(
    client: TestClient[Litestar],
    keys: Keys,
    database_url: str,
    s3_settings: BlobSettings,
    s3_server: S3Server,
) -> None:
    heic = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 500
    _assert_problem(_submit(client, keys.acme, content=heic), 415, "not-mp4", "heic")
    _nothing_stored(database_url, s3_settings, s3_server)


def test_mp4_header_followed_by_garbage_is_accepted(
    client: TestClient[Litestar], keys: Keys, database_url: str
) -> None:
    resp = _submit(client, keys.acme, content=mp4_bytes(5000, seed=7))
    assert resp.status_code == 202, resp.text
    assert count_jobs(database_url) == 1


def test_oversize_upload_is_413(
    client: TestClient[Litestar],
    keys: Keys,
    database_url: str,
    s3_settings: BlobSettings,
    s3_server: S3Server,
) -> None:
    resp = _submit(client, keys.acme, content=mp4_bytes(MAX_UPLOAD + 1))
    _assert_problem(resp, 413, "upload-too-large", str(MAX_UPLOAD))
    _nothing_stored(database_url, s3_settings, s3_server)
    # Exactly at the limit is fine.
    assert _submit(client, keys.acme, content=mp4_bytes(MAX_UPLOAD)).status_code == 202


@pytest.mark.parametrize(
    ("fields", "bad"),
    [
        ({"pipeline": "nope"}, "pipeline"),
        ({"sample_fps": "0"}, "sample_fps"),
        ({"sample_fps": "1000"}, "sample_fps"),
        ({"sample_fps": "fast"}, "sample_fps"),
        ({"sample_fps": "nan"}, "sample_fps"),
        ({"min_confidence": "1.5"}, "min_confidence"),
        ({"min_confidence": "-0.1"}, "min_confidence"),
        ({"priority": "1000"}, "priority"),
        ({"priority": "1.5"}, "priority"),
        ({"keep_brief_text": "maybe"}, "keep_brief_text"),
        ({"colour": "blue"}, "colour"),
    ],
)
def test_bad_params_are_422(
    client: TestClient[Litestar],
    keys: Keys,
    database_url: str,
    s3_settings: BlobSettings,
    s3_server: S3Server,
    fields: dict[str, str],
    bad: str,
) -> None:
    resp = _submit(client, keys.acme, data=fields, content=mp4_bytes())
    body = _assert_problem(resp, 422, "invalid-input", bad)
    assert [e["field"] for e in body["errors"]] == [bad]
    _nothing_stored(database_url, s3_settings, s3_server)


def test_field_after_the_file_is_accepted(
    client: TestClient[Litestar],
    keys: Keys,
    database_url: str,
    s3_settings: BlobSettings,
    s3_server: S3Server,
) -> None:
    """A hand-written body, file part first (what curl -F file=@a.mp4 -F pipeline=noop sends)."""
    boundary = "b0undary"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.mp4"\r\n'
            "Content-Type: video/mp4\r\n\r\n"
        ).encode()
        + mp4_bytes(2000)
        + (
            f'\r\n--{boundary}\r\nContent-Disposition: form-data; name="pipeline"\r\n\r\nnoop'
            f"\r\n--{boundary}--\r\n"
        ).encode()
    )
    resp = client.post(
        "/video/submit",
        content=body,
        headers={
            **Keys.auth(keys.acme),
            "Content-Type": f"multipart/form-data; boundary={boundary}",
        },
    )
    assert resp.status_code == 202, resp.text
    job_id = resp.json()["job_id"]
    assert stored_keys(s3_settings) == [f"video_jobs/{job_id}.mp4"]
    import psycopg

    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT pipeline FROM vidjobs.jobs").fetchone()
    assert row == ("noop",)


def test_truncated_multipart_is_400(
    client: TestClient[Litestar],
    keys: Keys,
    database_url: str,
    s3_settings: BlobSettings,
    s3_server: S3Server,
) -> None:
    boundary = "b0undary"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.mp4"\r\n\r\n'
    ).encode() + mp4_bytes(3000)
    resp = client.post(
        "/video/submit",
        content=body,
        headers={
            **Keys.auth(keys.acme),
            "Content-Type": f"multipart/form-data; boundary={boundary}",
        },
    )
    _assert_problem(resp, 400, "malformed-multipart", "closing")
    _nothing_stored(database_url, s3_settings, s3_server)


@pytest.mark.parametrize("kind", ["missing", "not-bearer", "invalid", "revoked"])
def test_submit_without_a_valid_key_is_401(
    client: TestClient[Litestar],
    keys: Keys,
    database_url: str,
    s3_settings: BlobSettings,
    s3_server: S3Server,
    kind: str,
) -> None:
    headers: dict[str, str] = {}
    if kind == "not-bearer":
        headers = {"Authorization": f"Basic {keys.acme}"}
    elif kind == "invalid":
        headers = Keys.auth(keys.acme[:-2] + "xx")
    elif kind == "revoked":
        keys.revoke(keys.acme_id)
        headers = Keys.auth(keys.acme)
    resp = _submit(client, None, content=mp4_bytes(), headers=headers)
    body = _assert_problem(resp, 401, "unauthorized")
    assert resp.headers["www-authenticate"].startswith("Bearer")
    expected = {"missing": "missing API key", "not-bearer": "Bearer <key>"}.get(
        kind, "invalid or revoked"
    )
    assert expected in str(body["detail"])
    _nothing_stored(database_url, s3_settings, s3_server)


def test_idempotency_key_repeat_returns_the_original_job(
    client: TestClient[Litestar],
    keys: Keys,
    database_url: str,
    s3_settings: BlobSettings,
    s3_server: S3Server,
) -> None:
    headers = {"Idempotency-Key": "upload-42"}
    data = {"pipeline": "noop", "priority": "5"}
    first = _submit(client, keys.acme, data=data, content=mp4_bytes(), headers=headers)
    assert first.status_code == 202, first.text
    again = _submit(client, keys.acme, data=data, content=mp4_bytes(), headers=headers)
    assert again.status_code == 200, again.text
    assert again.json()["job_id"] == first.json()["job_id"]
    assert again.headers["idempotent-replayed"] == "true"
    assert again.headers["location"] == first.headers["location"]
    assert count_jobs(database_url) == 1
    assert len(stored_keys(s3_settings)) == 1
    # The same key under another tenant is another request.
    other = _submit(client, keys.other, data=data, content=mp4_bytes(), headers=headers)
    assert other.status_code == 202
    assert other.json()["job_id"] != first.json()["job_id"]


def test_idempotency_key_with_other_params_is_409(
    client: TestClient[Litestar],
    keys: Keys,
    database_url: str,
    s3_settings: BlobSettings,
    s3_server: S3Server,
) -> None:
    headers = {"Idempotency-Key": "upload-43"}
    first = _submit(
        client, keys.acme, data={"pipeline": "noop"}, content=mp4_bytes(), headers=headers
    )
    assert first.status_code == 202
    resp = _submit(
        client,
        keys.acme,
        data={"pipeline": "noop", "sample_fps": "5"},
        content=mp4_bytes(),
        headers=headers,
    )
    body = _assert_problem(resp, 409, "idempotency-key-reused", "upload-43", "new key")
    assert first.json()["job_id"] in str(body["detail"])
    assert count_jobs(database_url) == 1
    assert len(stored_keys(s3_settings)) == 1


def test_invalid_idempotency_key_is_422(
    client: TestClient[Litestar],
    keys: Keys,
    database_url: str,
    s3_settings: BlobSettings,
    s3_server: S3Server,
) -> None:
    resp = _submit(client, keys.acme, content=mp4_bytes(), headers={"Idempotency-Key": "x" * 300})
    _assert_problem(resp, 422, "invalid-input", "Idempotency-Key")
    _nothing_stored(database_url, s3_settings, s3_server)


def test_defaults_are_stored_with_the_job(
    client: TestClient[Litestar], keys: Keys, database_url: str, api_settings: ApiSettings
) -> None:
    import psycopg

    resp = _submit(client, keys.acme, content=mp4_bytes())
    assert resp.status_code == 202
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT tenant, pipeline, params, priority, input_key, state FROM vidjobs.jobs"
        ).fetchone()
    assert row == (
        "acme",
        api_settings.default_pipeline,
        {"sample_fps": 1.0, "min_confidence": 0.25, "keep_brief_text": False},
        0,
        f"video_jobs/{resp.json()['job_id']}.mp4",
        "pending",
    )


def test_keep_brief_text_is_stored_with_the_job(
    client: TestClient[Litestar], keys: Keys, database_url: str
) -> None:
    import psycopg

    resp = _submit(client, keys.acme, data={"keep_brief_text": "true"}, content=mp4_bytes())
    assert resp.status_code == 202
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT params FROM vidjobs.jobs").fetchone()
    assert row is not None
    assert row[0]["keep_brief_text"] is True


def test_end_to_end_on_the_local_directory_store_with_stand_in_worker(
    database_url: str, local_blob_settings: BlobSettings, keys: Keys
) -> None:
    """The same flow on the single-machine backend: upload, oversize cut, results."""

    from vidjobs.api.app import create_app
    from vidjobs.db.settings import DatabaseSettings

    settings = ApiSettings(
        database=DatabaseSettings(url=database_url, pool_max_size=2),
        blobs=local_blob_settings,
        max_upload_bytes=MAX_UPLOAD,
    )
    with TestClient(create_app(settings)) as c:
        too_big = _submit(c, keys.acme, content=mp4_bytes(MAX_UPLOAD + 1))
        _assert_problem(too_big, 413, "upload-too-large")
        assert stored_keys(local_blob_settings) == []
        resp = _submit(c, keys.acme, data={"pipeline": "noop"}, content=mp4_bytes(9000))
        assert resp.status_code == 202, resp.text
        job_id = resp.json()["job_id"]
        assert stored_keys(local_blob_settings) == [f"video_jobs/{job_id}.mp4"]
        claimed = stand_in_worker_claims(database_url, frames_done=1, frames_total=2)
        stand_in_worker_completes(database_url, local_blob_settings, claimed, {"n": 1})
        results = c.get(f"/video/results/{job_id}", headers=Keys.auth(keys.acme))
        assert results.status_code == 200, results.text
        assert results.json()["results"] == {"n": 1}
