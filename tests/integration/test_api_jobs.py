"""Status, results, job list, cancel and delete over HTTP; tenants never see each other's jobs."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from litestar import Litestar
from litestar.testing import TestClient

from tests.support.blobs import stored_keys
from tests.support.db import count_jobs
from tests.support.keys import Keys
from tests.support.media import mp4_bytes
from tests.support.s3 import S3Server
from tests.support.stand_in_worker import stand_in_worker_claims, stand_in_worker_completes
from vidjobs.blobs import BlobSettings

pytestmark = pytest.mark.integration


PROBLEM = "application/problem+json"


def _submit(c: TestClient[Litestar], key: str, **fields: str) -> uuid.UUID:
    resp = c.post(
        "/video/submit",
        data={"pipeline": "noop", **fields},
        files={"file": ("clip.mp4", mp4_bytes(), "video/mp4")},
        headers=Keys.auth(key),
    )
    assert resp.status_code == 202, resp.text
    return uuid.UUID(resp.json()["job_id"])


def _problem(resp: httpx.Response, status: int, type_suffix: str) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith(PROBLEM)
    body: dict[str, Any] = resp.json()
    assert body["status"] == status
    assert body["type"].endswith(type_suffix), body
    return body


def _routes(job_id: str) -> list[tuple[str, str]]:
    return [
        ("GET", f"/video/status/{job_id}"),
        ("GET", f"/video/results/{job_id}"),
        ("POST", f"/video/jobs/{job_id}/cancel"),
        ("DELETE", f"/video/jobs/{job_id}"),
    ]


def test_unknown_job_is_404_on_every_route(client: TestClient[Litestar], keys: Keys) -> None:
    job_id = str(uuid.uuid4())
    for method, path in _routes(job_id):
        resp = client.request(method, path, headers=Keys.auth(keys.acme))
        body = _problem(resp, 404, "job-not-found")
        assert job_id in body["detail"]
        assert "no such job" in body["detail"]


def test_malformed_uuid_is_422_on_every_route(client: TestClient[Litestar], keys: Keys) -> None:
    for bad in ("not-a-uuid", "123", "0b6f9a1e-3c4d-4e5f-8a9b-0c1d2e3f4a5", "%20"):
        for method, path in _routes(bad):
            resp = client.request(method, path, headers=Keys.auth(keys.acme))
            body = _problem(resp, 422, "invalid-input")
            assert body["errors"] == [{"field": "job_id", "message": "not a UUID"}]


def test_another_tenants_job_is_404_on_every_route_and_untouched(
    client: TestClient[Litestar],
    keys: Keys,
    database_url: str,
    s3_settings: BlobSettings,
    s3_server: S3Server,
) -> None:
    job_id = _submit(client, keys.acme)
    for method, path in _routes(str(job_id)):
        resp = client.request(method, path, headers=Keys.auth(keys.other))
        _problem(resp, 404, "job-not-found")
    listed = client.get("/video/jobs", headers=Keys.auth(keys.other)).json()
    assert listed == {"jobs": [], "next_cursor": None}
    # Still there, still pending, blob intact: the other tenant changed nothing.
    status = client.get(f"/video/status/{job_id}", headers=Keys.auth(keys.acme)).json()
    assert status["status"] == "pending"
    assert count_jobs(database_url) == 1
    assert stored_keys(s3_settings) == [f"video_jobs/{job_id}.mp4"]


@pytest.mark.parametrize("auth", [None, "Bearer nope", "Token abc"])
def test_every_video_route_needs_a_valid_key(
    client: TestClient[Litestar], keys: Keys, auth: str | None
) -> None:
    job_id = _submit(client, keys.acme)
    headers = {} if auth is None else {"Authorization": auth}
    for method, path in [*_routes(str(job_id)), ("GET", "/video/jobs")]:
        resp = client.request(method, path, headers=headers)
        _problem(resp, 401, "unauthorized")


def test_revoked_key_stops_at_once(client: TestClient[Litestar], keys: Keys) -> None:
    job_id = _submit(client, keys.acme)
    assert client.get(f"/video/status/{job_id}", headers=Keys.auth(keys.acme)).status_code == 200
    keys.revoke(keys.acme_id)
    resp = client.get(f"/video/status/{job_id}", headers=Keys.auth(keys.acme))
    assert "invalid or revoked" in _problem(resp, 401, "unauthorized")["detail"]


def test_list_filters_by_status_and_pages_with_a_cursor(
    client: TestClient[Litestar], keys: Keys, database_url: str
) -> None:
    submitted = [_submit(client, keys.acme) for _ in range(5)]
    _submit(client, keys.other)  # never listed for acme
    auth = Keys.auth(keys.acme)
    cancelled = submitted[1]
    assert client.post(f"/video/jobs/{cancelled}/cancel", headers=auth).status_code == 200

    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        params: dict[str, str | int] = {"limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = client.get("/video/jobs", params=params, headers=auth)
        assert page.status_code == 200, page.text
        body = page.json()
        assert len(body["jobs"]) <= 2
        seen += [j["job_id"] for j in body["jobs"]]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    assert seen == [str(j) for j in reversed(submitted)]  # newest first, each once

    only = client.get("/video/jobs", params={"status": "cancelled"}, headers=auth).json()
    assert [j["job_id"] for j in only["jobs"]] == [str(cancelled)]
    assert only["jobs"][0]["status"] == "cancelled"
    pending = client.get("/video/jobs", params={"status": "pending"}, headers=auth).json()
    assert len(pending["jobs"]) == 4


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"status": "sleeping"}, "status"),
        ({"limit": "0"}, "limit"),
        ({"limit": "1000"}, "limit"),
        ({"limit": "many"}, "limit"),
        ({"cursor": "!!garbage!!"}, "cursor"),
    ],
)
def test_bad_list_params_are_422(
    client: TestClient[Litestar], keys: Keys, params: dict[str, str], field: str
) -> None:
    resp = client.get("/video/jobs", params=params, headers=Keys.auth(keys.acme))
    body = _problem(resp, 422, "invalid-input")
    assert field in [e["field"] for e in body["errors"]], body


def test_a_huge_rejected_cursor_or_parameter_is_not_echoed_back_whole(
    client: TestClient[Litestar], keys: Keys
) -> None:
    huge = "A" * 60_000  # httpx refuses a URL over 64 KiB
    resp = client.get("/video/jobs", params={"cursor": huge}, headers=Keys.auth(keys.acme))
    body = _problem(resp, 422, "invalid-input")
    assert len(resp.content) < 1_000, resp.content[:300]
    (error,) = body["errors"]
    assert error["field"] == "cursor"
    assert "A" * 32 in error["message"]
    assert "(60000 characters)" in error["message"]
    named = client.get("/video/jobs", params={huge: "1"}, headers=Keys.auth(keys.acme))
    assert len(_problem(named, 422, "invalid-input")["detail"]) < 300


def test_cancel_pending_then_again_and_finished_is_409(
    client: TestClient[Litestar], keys: Keys, database_url: str, s3_settings: BlobSettings
) -> None:
    auth = Keys.auth(keys.acme)
    first = _submit(client, keys.acme)
    resp = client.post(f"/video/jobs/{first}/cancel", headers=auth)
    assert resp.status_code == 200, resp.text
    assert resp.json()["status"] == "cancelled"
    assert client.post(f"/video/jobs/{first}/cancel", headers=auth).status_code == 200
    results = client.get(f"/video/results/{first}", headers=auth)
    assert "job was cancelled" in _problem(results, 404, "results-not-ready")["detail"]

    second = _submit(client, keys.acme)
    claimed = stand_in_worker_claims(database_url, frames_done=1, frames_total=4)
    assert claimed.job_id == second
    stand_in_worker_completes(database_url, s3_settings, claimed, {"ok": True})
    resp = client.post(f"/video/jobs/{second}/cancel", headers=auth)
    body = _problem(resp, 409, "job-finished")
    assert body["job_status"] == "completed"
    assert "job completed" in body["detail"]


def test_cancel_running_job(client: TestClient[Litestar], keys: Keys, database_url: str) -> None:
    auth = Keys.auth(keys.acme)
    job_id = _submit(client, keys.acme)
    stand_in_worker_claims(database_url, frames_done=3, frames_total=10)
    resp = client.post(f"/video/jobs/{job_id}/cancel", headers=auth)
    assert resp.status_code == 200, resp.text
    assert resp.json()["status"] == "cancelled"


def test_delete_removes_row_and_blobs_only_when_finished(
    client: TestClient[Litestar],
    keys: Keys,
    database_url: str,
    s3_settings: BlobSettings,
    s3_server: S3Server,
) -> None:
    auth = Keys.auth(keys.acme)
    job_id = _submit(client, keys.acme)
    resp = client.delete(f"/video/jobs/{job_id}", headers=auth)
    body = _problem(resp, 409, "job-not-finished")
    assert "cancel it first" in body["detail"]
    assert count_jobs(database_url) == 1

    claimed = stand_in_worker_claims(database_url, frames_done=2, frames_total=2)
    stand_in_worker_completes(database_url, s3_settings, claimed, {"frames": []})
    assert sorted(stored_keys(s3_settings)) == [
        f"video_jobs/{job_id}.mp4",
        f"video_jobs/{job_id}_results.json",
    ]
    resp = client.delete(f"/video/jobs/{job_id}", headers=auth)
    assert resp.status_code == 204, resp.text
    assert resp.content == b""
    assert count_jobs(database_url) == 0
    assert stored_keys(s3_settings) == []
    again = client.delete(f"/video/jobs/{job_id}", headers=auth)
    _problem(again, 404, "job-not-found")
    _problem(client.get(f"/video/status/{job_id}", headers=auth), 404, "job-not-found")


def test_failed_job_shows_its_error(
    client: TestClient[Litestar], keys: Keys, database_url: str
) -> None:
    import asyncio

    import psycopg

    from vidjobs.db.leases import job_fail

    auth = Keys.auth(keys.acme)
    job_id = _submit(client, keys.acme)
    claimed = stand_in_worker_claims(database_url, frames_done=0, frames_total=10)

    async def fail() -> None:
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as c:
            await job_fail(
                c,
                claimed.job_id,
                claimed.lease_token,
                error_kind="decode_error",
                error_message="the file is not a decodable video (moov atom not found)",
                permanent=True,
            )

    asyncio.run(fail())
    status = client.get(f"/video/status/{job_id}", headers=auth).json()
    assert status["status"] == "failed"
    assert status["error"] == {
        "kind": "decode_error",
        "message": "the file is not a decodable video (moov atom not found)",
    }
    results = client.get(f"/video/results/{job_id}", headers=auth)
    body = _problem(results, 404, "results-not-ready")
    assert body["detail"] == "job failed: the file is not a decodable video (moov atom not found)"
    assert body["job_status"] == "failed"
