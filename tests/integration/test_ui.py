"""The dashboard's switches over HTTP: off by default, read-only unless cancel is allowed,
cancel only from its own pages (same origin); a frame of a job with no stored video is a 404."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from litestar import Litestar
from litestar.testing import TestClient

from tests.support.db import insert_jobs, sql
from vidjobs.api.app import create_app
from vidjobs.api.settings import ApiSettings

pytestmark = pytest.mark.integration


def _client(settings: ApiSettings, **update: bool) -> TestClient[Litestar]:
    return TestClient(create_app(settings.model_copy(update=update)))


@pytest.fixture
def read_only(api_settings: ApiSettings) -> Iterator[TestClient[Litestar]]:
    with _client(api_settings, ui=True) as c:
        yield c


def test_off_by_default(client: TestClient[Litestar]) -> None:
    assert client.get("/ui/").status_code == 404
    assert client.get("/ui/static/ui.css").status_code == 404


def test_read_only_shows_no_cancel_and_refuses_one(
    read_only: TestClient[Litestar], database_url: str
) -> None:
    (job,) = insert_jobs(database_url, 1, tenant="acme")
    page = read_only.get(f"/ui/jobs/{job}")
    assert page.status_code == 200
    assert 'id="cancel"' not in page.text
    assert "acme" in page.text
    refused = read_only.post(
        f"/ui/jobs/{job}/cancel", headers={"Origin": "http://testserver.local"}
    )
    assert refused.status_code == 403
    assert sql(database_url, "SELECT state::text FROM vidjobs.jobs") == [("pending",)]
    assert read_only.get("/ui/static/ui.css").status_code == 200
    assert read_only.get(f"/ui/jobs/{job}/frame?t_ms=0").status_code == 404  # no video
    assert read_only.get("/ui/jobs/not-a-uuid").status_code == 404


def test_cancel_needs_the_same_origin(api_settings: ApiSettings, database_url: str) -> None:
    (job,) = insert_jobs(database_url, 1, tenant="acme")
    with _client(api_settings, ui=True, ui_cancel=True) as c:
        assert 'id="cancel"' in c.get(f"/ui/jobs/{job}").text
        for headers in ({}, {"Origin": "http://evil.example"}):
            assert c.post(f"/ui/jobs/{job}/cancel", headers=headers).status_code == 403
        assert sql(database_url, "SELECT state::text FROM vidjobs.jobs") == [("pending",)]
        done = c.post(
            f"/ui/jobs/{job}/cancel",
            headers={"Origin": "http://testserver.local"},
            follow_redirects=False,
        )
        assert done.status_code == 303
        assert done.headers["location"] == f"/ui/jobs/{job}"
    assert sql(database_url, "SELECT state::text FROM vidjobs.jobs") == [("cancelled",)]


def test_jobs_filters_and_pages(read_only: TestClient[Litestar], database_url: str) -> None:
    insert_jobs(database_url, 60, tenant="acme")
    insert_jobs(database_url, 2, tenant="globex")
    first = read_only.get("/ui/jobs", params={"tenant": "acme"}).text
    assert first.count("data-job=") == 50
    cursor = first.split("cursor=")[1].split('"')[0]
    rest = read_only.get("/ui/jobs", params={"tenant": "acme", "cursor": cursor}).text
    assert rest.count("data-job=") == 10
    assert "next-page" not in rest
    assert read_only.get("/ui/jobs", params={"tenant": "globex"}).text.count("data-job=") == 2
    none = read_only.get("/ui/jobs", params={"status": "running", "pipeline": "noop"})
    assert none.text.count("data-job=") == 0
    assert read_only.get("/ui/jobs", params={"cursor": "junk"}).status_code == 404
