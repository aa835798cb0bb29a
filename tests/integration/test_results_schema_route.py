"""``GET /video/results-schema``: the published results JSON Schema, served as checked in."""

from __future__ import annotations

import json

import pytest
from litestar import Litestar
from litestar.testing import TestClient

from tests.support.keys import Keys, auth
from vidjobs.schema.results_schema import published_results_schema

pytestmark = pytest.mark.integration


def test_the_schema_is_served_as_checked_in(client: TestClient[Litestar], keys: Keys) -> None:
    resp = client.get("/video/results-schema", headers=auth(keys.acme))
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("application/schema+json")
    assert resp.content == published_results_schema()
    schema = json.loads(resp.content)
    version = schema["$defs"]["ResultsDocument"]["properties"]["schema_version"]
    assert version["enum"] == [1, 2]


def test_the_schema_needs_a_key(client: TestClient[Litestar]) -> None:
    resp = client.get("/video/results-schema")
    assert resp.status_code == 401
    assert resp.headers["content-type"].startswith("application/problem+json")


def test_the_route_is_documented_apart_from_a_jobs_results(client: TestClient[Litestar]) -> None:
    paths = client.get("/schema/openapi.json").json()["paths"]
    assert paths["/video/results-schema"]["get"]["operationId"] == "getResultsSchema"
    assert paths["/video/results/{job_id}"]["get"]["operationId"] == "getJobResults"
