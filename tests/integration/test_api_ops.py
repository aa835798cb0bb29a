"""Probes, metrics, the OpenAPI document, framework errors as problems, and outages → 503."""

from __future__ import annotations

import socket
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import TestClient
from psycopg.conninfo import conninfo_to_dict

from tests.support.blobs import stored_keys
from tests.support.db import count_jobs, insert_jobs
from tests.support.keys import Keys
from tests.support.media import mp4_bytes
from tests.support.metrics import Scrape
from tests.support.postgres import drop_database
from tests.support.s3 import S3Server
from tests.support.waiting import wait_for
from vidjobs.api.app import create_app
from vidjobs.api.settings import ApiSettings
from vidjobs.blobs import BlobSettings, BlobStoreUnavailable

pytestmark = pytest.mark.integration


PROBLEM = "application/problem+json"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _upload(c: TestClient[Litestar], key: str) -> Any:
    return c.post(
        "/video/submit",
        data={"pipeline": "noop"},
        files={"file": ("clip.mp4", mp4_bytes(50_000), "video/mp4")},
        headers=Keys.auth(key),
    )


def test_health_and_ready(client: TestClient[Litestar]) -> None:
    assert client.get("/health").json() == {"status": "ok"}
    ready = client.get("/ready")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "database": "ok", "blob_store": "ok"}


def _metrics_when(
    c: TestClient[Litestar],
    name: str,
    value: float,
    /,
    headers: dict[str, str] | None = None,
    **labels: str,
) -> Scrape:
    """/metrics once sample ``name{labels}`` is ``value`` (the depth is read in the background)."""
    got = [Scrape({}, {})]

    def holds() -> bool:
        resp = c.get("/metrics", headers=headers or {})
        assert resp.status_code == 200, resp.text
        got[0] = Scrape.parse(resp.text)
        return got[0].get(name, **labels) == value

    wait_for(holds, 20, f"/metrics shows {name}{labels} {value}")
    return got[0]


def test_metrics_count_requests_and_read_queue_depth(api_settings: ApiSettings, keys: Keys) -> None:
    fast = api_settings.model_copy(update={"metrics_refresh_s": 0.1})
    with TestClient(create_app(fast)) as client:
        for _ in range(2):
            assert _upload(client, keys.acme).status_code == 202
        client.get("/video/status/not-a-uuid", headers=Keys.auth(keys.acme))
        _metrics_when(client, "vidjobs_jobs", 2, state="pending")
        resp = client.get("/metrics")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = resp.text
    m = Scrape.parse(text)
    submit = {"method": "POST", "route": "/video/submit"}
    assert m.get("vidjobs_http_requests_total", **submit, status="202") == 2
    status_route = {"method": "GET", "route": "/video/status/{job_id}"}
    assert m.get("vidjobs_http_requests_total", **status_route, status="422") == 1
    assert m.get("vidjobs_http_request_duration_seconds_bucket", **submit, le="+Inf") == 2
    assert m.get("vidjobs_http_request_duration_seconds_count", **submit) == 2
    assert (m.get("vidjobs_http_request_duration_seconds_sum", **submit) or 0) > 0
    assert m.get("vidjobs_jobs", state="pending") == 2
    assert m.get("vidjobs_jobs", state="running") == 0
    assert m.get("vidjobs_database_up") == 1
    assert (m.get("vidjobs_queue_depth_age_seconds") or -1) >= 0
    # What the alerts watch (deploy/monitoring/alerts.yml), from the same background read.
    assert 0 <= (m.get("vidjobs_queue_oldest_pending_age_seconds") or -1) < 60
    assert m.get("vidjobs_jobs_lease_expired") == 0
    assert m.get("vidjobs_webhook_deliveries_pending") == 0
    assert m.get("vidjobs_webhook_oldest_pending_age_seconds") == 0
    assert m.types["vidjobs_http_request_duration_seconds"] == "histogram"
    assert m.types["vidjobs_http_requests"] == "counter"
    assert "vidjobs_http_requests_created" not in text  # no _created series
    assert "tenant=" not in text  # no token set: /metrics is open and names no tenant


def test_metrics_of_two_apps_in_one_process_are_their_own(
    api_settings: ApiSettings, keys: Keys
) -> None:
    """Each app has its own registry: a second app starts at zero, and no name clashes."""
    with TestClient(create_app(api_settings)) as first:
        first.get("/health")
        first.get("/health")
        with TestClient(create_app(api_settings)) as second:
            second.get("/health")
            two = Scrape.parse(second.get("/metrics").text)
        one = Scrape.parse(first.get("/metrics").text)
    health = {"method": "GET", "route": "/health", "status": "200"}
    assert one.get("vidjobs_http_requests_total", **health) == 2
    assert two.get("vidjobs_http_requests_total", **health) == 1


def test_request_metrics_can_be_turned_off(api_settings: ApiSettings) -> None:
    off = api_settings.model_copy(update={"request_metrics": False, "metrics_refresh_s": 0.1})
    with TestClient(create_app(off)) as c:
        c.get("/health")
        m = _metrics_when(c, "vidjobs_database_up", 1)
    assert m.total("vidjobs_http_requests_total") == 0
    assert m.get("vidjobs_jobs", state="pending") == 0  # the queue depth is still there


def test_metrics_token_guards_metrics_and_shows_tenants(
    api_settings: ApiSettings, keys: Keys, database_url: str
) -> None:
    token = "s3cret-metrics-token"
    guarded = api_settings.model_copy(update={"metrics_refresh_s": 0.1, "metrics_token": token})
    with TestClient(create_app(guarded)) as c:
        assert _upload(c, keys.acme).status_code == 202
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": token}):
            resp = c.get("/metrics", headers=headers)
            assert resp.status_code == 401, headers
            assert resp.headers["content-type"].startswith(PROBLEM)
            assert resp.json()["type"].endswith("/unauthorized")
            assert "VIDJOBS_API_METRICS_TOKEN" in resp.json()["detail"]
            assert resp.headers["www-authenticate"].startswith("Bearer")
        # An API key is not the metrics token.
        assert c.get("/metrics", headers=Keys.auth(keys.acme)).status_code == 401
        m = _metrics_when(
            c, "vidjobs_tenant_jobs", 1, Keys.auth(token), tenant="acme", state="pending"
        )
        assert m.get("vidjobs_tenant_jobs", tenant="acme", state="running") == 0
        assert "globex" not in m.label_values("vidjobs_tenant_jobs", "tenant")  # nothing queued
        assert m.get("vidjobs_jobs", state="pending") == 1


def test_metrics_queue_depth_refreshes_in_the_background(
    api_settings: ApiSettings, database_url: str
) -> None:
    fast = api_settings.model_copy(update={"metrics_refresh_s": 0.1})
    with TestClient(create_app(fast)) as c:
        _metrics_when(c, "vidjobs_jobs", 0, state="pending")
        insert_jobs(database_url, 3, tenant="globex")  # around the API: only a read sees it
        _metrics_when(c, "vidjobs_jobs", 3, state="pending")


def test_a_scrape_never_queries_postgres(api_settings: ApiSettings, database_url: str) -> None:
    slow = api_settings.model_copy(update={"metrics_refresh_s": 3600.0})
    with TestClient(create_app(slow)) as c:
        _metrics_when(c, "vidjobs_database_up", 1)  # the reader's first read, at start
        depth = c.app.state["vidjobs"].metrics.queue_depth
        assert depth.reads == 1
        insert_jobs(database_url, 3, tenant="globex")
        for _ in range(50):
            resp = c.get("/metrics")
            assert resp.status_code == 200
            # the cached reading
            assert Scrape.parse(resp.text).get("vidjobs_jobs", state="pending") == 0
        assert depth.reads == 1


def test_openapi_schema_documents_every_route(client: TestClient[Litestar]) -> None:
    resp = client.get("/schema/openapi.json")
    assert resp.status_code == 200
    doc = resp.json()
    ops = {
        (path, method): op
        for path, item in doc["paths"].items()
        for method, op in item.items()
        if method in ("get", "post", "delete")
    }
    assert {op["operationId"] for op in ops.values()} == {
        "submitVideo",
        "getJobStatus",
        "getJobResults",
        "getResultsSchema",
        "getResultFrames",
        "getResultTracks",
        "getResultTextEvents",
        "getResultTextVtt",
        "getResultDetectionsCsv",
        "getResultTracksMot",
        "listJobs",
        "cancelJob",
        "deleteJob",
        "health",
        "ready",
        "metrics",
    }
    for (path, _method), op in ops.items():
        if path.startswith("/video"):
            assert "401" in op["responses"], path
            assert op["responses"]["401"]["content"].keys() == {PROBLEM}
            assert op["security"] == [{"bearer": []}]
    submit = ops[("/video/submit", "post")]
    assert {"202", "400", "401", "409", "413", "415", "422", "503"} <= submit["responses"].keys()
    form = submit["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert form["required"] == ["file"]
    assert form["properties"]["file"]["format"] == "binary"
    assert form["properties"]["pipeline"]["enum"] == ["yolo_ocr", "noop"]
    assert doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert "Problem" in doc["components"]["schemas"]


def test_framework_errors_are_problems(client: TestClient[Litestar], keys: Keys) -> None:
    resp = client.get("/no/such/route")
    assert resp.status_code == 404
    assert resp.headers["content-type"].startswith(PROBLEM)
    assert resp.json()["type"] == "about:blank"
    assert "/schema" in resp.json()["detail"]
    resp = client.put("/video/submit", headers=Keys.auth(keys.acme))
    assert resp.status_code == 405
    assert resp.headers["content-type"].startswith(PROBLEM)
    assert "PUT is not allowed" in resp.json()["detail"]


def test_blob_store_down_during_submit_is_503_and_no_row(
    api_settings: ApiSettings, keys: Keys, database_url: str, s3_server: S3Server
) -> None:
    # Start healthy, then point the running app at a closed port: the store "goes down".
    healthy = create_app(api_settings)
    with TestClient(healthy) as c:
        assert _upload(c, keys.acme).status_code == 202
    assert count_jobs(database_url) == 1
    closed = f"127.0.0.1:{_closed_port()}"
    down = api_settings.model_copy(
        update={"blobs": api_settings.blobs.model_copy(update={"s3_endpoint": closed})}
    )
    app = create_app(down)
    # The store is checked at start: an API that cannot reach it refuses to start.
    with pytest.raises(ExceptionGroup) as info, TestClient(app):
        pass
    assert info.group_contains(BlobStoreUnavailable)
    # Down after start: swap the runtime's store for one on a closed port.
    from vidjobs.blobs import open_blob_store

    with TestClient(create_app(api_settings)) as c:
        rt = c.app.state["vidjobs"]
        object.__setattr__(rt, "store", open_blob_store(down.blobs))
        resp = _upload(c, keys.acme)
        assert resp.status_code == 503, resp.text
        assert resp.headers["content-type"].startswith(PROBLEM)
        assert resp.json()["type"].endswith("blob-store-unavailable")
        assert resp.headers["retry-after"]
        ready = c.get("/ready")
        assert ready.status_code == 503
        assert ready.headers["content-type"].startswith(PROBLEM)  # as the document says
        assert ready.json()["type"].endswith("/not-ready")
        assert "the blob store did not answer" in ready.json()["detail"]
        assert ready.headers["retry-after"]
        assert ready.json()["database"] == "ok"
        assert ready.json()["blob_store"].startswith("unavailable")
    assert count_jobs(database_url) == 1  # only the healthy submit


def test_database_down_during_submit_is_503_and_no_blob(
    api_settings: ApiSettings,
    keys: Keys,
    pg_server_url: str,
    database_url: str,
    s3_settings: BlobSettings,
    s3_server: S3Server,
) -> None:
    with TestClient(create_app(api_settings)) as c:
        assert c.get("/ready").status_code == 200
        dbname = str(conninfo_to_dict(database_url)["dbname"])
        drop_database(pg_server_url, dbname)  # the database goes away under the running app
        resp = _upload(c, keys.acme)
        assert resp.status_code == 503, resp.text
        assert resp.json()["type"].endswith("database-unavailable")
        assert resp.headers["retry-after"]
        status = c.get(
            "/video/status/0b6f9a1e-3c4d-4e5f-8a9b-0c1d2e3f4a5b", headers=Keys.auth(keys.acme)
        )
        assert status.status_code == 503
        assert c.get("/ready").json()["database"].startswith("unavailable")
        metrics = c.get("/metrics")
        assert metrics.status_code == 200
        _metrics_when(c, "vidjobs_database_up", 0)  # the next background read fails
    assert stored_keys(s3_settings) == []


class _DropDatabaseAfterUpload:
    """The real store; once an upload has landed, the database goes away (before the insert)."""

    def __init__(self, store: Any, drop: Any) -> None:
        self._store = store
        self._drop = drop

    def put_stream(self, *args: Any, **kwargs: Any) -> int:
        n = int(self._store.put_stream(*args, **kwargs))
        self._drop()
        return n

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


def test_database_down_at_insert_removes_the_uploaded_blob(
    api_settings: ApiSettings,
    keys: Keys,
    pg_server_url: str,
    database_url: str,
    s3_settings: BlobSettings,
    s3_server: S3Server,
) -> None:
    dbname = str(conninfo_to_dict(database_url)["dbname"])
    with TestClient(create_app(api_settings)) as c:
        rt = c.app.state["vidjobs"]
        dropper = _DropDatabaseAfterUpload(rt.store, lambda: drop_database(pg_server_url, dbname))
        object.__setattr__(rt, "store", dropper)
        resp = _upload(c, keys.acme)
        assert resp.status_code == 503, resp.text
        assert resp.json()["type"].endswith("database-unavailable")
    assert stored_keys(s3_settings) == []
