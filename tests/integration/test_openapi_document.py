"""The OpenAPI document the app serves says what the server really sends.

Walks ``/schema/openapi.json``: every error response of every operation is an RFC 9457 problem
(``application/problem+json``, the ``Problem`` schema) with the headers the server sets on it;
submit documents its 202, its idempotent 200 replay, their headers and the ``Idempotency-Key``
request header; and no operation documents a 400 the server never sends (Litestar adds a
``{status_code, detail, extra}`` 400 to every handler with a parameter; this API answers bad
parameters with 422 problems). The inputs that could plausibly draw a 400 are sent to check it.
schemathesis (``tests/robustness/test_schemathesis.py``) checks the rest against the document,
and a client generated from it runs the lifecycle (``tests/acceptance/test_generated_client.py``).
"""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from litestar import Litestar
from litestar.testing import TestClient

from tests.support.keys import Keys
from tests.support.media import mp4_bytes
from vidjobs.schema.api import Problem

pytestmark = pytest.mark.integration

PROBLEM = "application/problem+json"
PROBLEM_CONTENT = {PROBLEM: {"schema": {"$ref": "#/components/schemas/Problem"}}}
_METHODS = ("get", "post", "put", "patch", "delete")


@pytest.fixture
def doc(client: TestClient[Litestar]) -> dict[str, Any]:
    """The document as served."""
    resp = client.get("/schema/openapi.json")
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


def _operations(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """operationId -> operation, with its path and method under ``_path`` / ``_method``."""
    return {
        op["operationId"]: {**op, "_path": path, "_method": method}
        for path, item in doc["paths"].items()
        for method, op in item.items()
        if method in _METHODS
    }


def _as_problem(resp: Any, status: int) -> Problem:
    """The body as the ``Problem`` struct the document's schema is made from (strict)."""
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith(PROBLEM), resp.headers
    problem = msgspec.json.decode(resp.content, type=Problem)
    assert problem.status == status
    return problem


def test_every_error_response_is_a_problem_with_its_headers(doc: dict[str, Any]) -> None:
    ops = _operations(doc)
    assert len(ops) == 16, sorted(ops)
    errors = 0
    for name, op in ops.items():
        for code, response in op["responses"].items():
            if int(code) < 400:
                continue
            errors += 1
            assert response["content"] == PROBLEM_CONTENT, (name, code, response)
            headers = response.get("headers", {})
            if code in ("429", "503"):
                assert headers["Retry-After"]["schema"] == {"type": "integer"}, (name, code)
                assert headers["Retry-After"]["required"] is True
            if code == "401":
                assert "WWW-Authenticate" in headers, name
    assert errors == 58  # 9 on submit, 4-5 on each job route, 2 on the results schema,
    # 1 each on ready and metrics, 4 on each of the six paged results routes
    problem = doc["components"]["schemas"]["Problem"]
    assert set(problem["required"]) == {"type", "title", "status", "detail"}
    assert {"errors", "job_status", "limit", "limit_value", "usage"} <= problem["properties"].keys()
    assert {"database", "blob_store"} <= problem["properties"].keys()  # /ready's 503
    ready = ops["ready"]["responses"]
    assert ready["503"]["content"] == PROBLEM_CONTENT
    assert ready["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Readiness"
    }


def test_submit_documents_200_202_and_the_headers(doc: dict[str, Any]) -> None:
    submit = _operations(doc)["submitVideo"]
    responses = submit["responses"]
    assert set(responses) == {
        "200", "202", "400", "401", "408", "409", "413", "415", "422", "429", "503"
    }  # fmt: skip
    accepted = {"application/json": {"schema": {"$ref": "#/components/schemas/SubmitAccepted"}}}
    assert responses["202"]["content"] == accepted
    assert responses["200"]["content"] == accepted
    assert responses["202"]["headers"]["Location"]["required"] is True
    assert set(responses["200"]["headers"]) == {"Location", "Idempotent-Replayed"}
    assert responses["200"]["headers"]["Idempotent-Replayed"]["schema"]["enum"] == ["true"]
    (param,) = submit["parameters"]
    assert (param["name"], param["in"], param["required"]) == ("Idempotency-Key", "header", False)
    assert (param["schema"]["minLength"], param["schema"]["maxLength"]) == (1, 255)
    form = submit["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert form["required"] == ["file"]
    # The deployment chooses the default pipeline: a documented one would be sent by every
    # generated client as if the caller had chosen it.
    assert "default" not in form["properties"]["pipeline"]


def test_no_operation_documents_a_400_the_server_never_sends(
    doc: dict[str, Any], client: TestClient[Litestar], keys: Keys
) -> None:
    ops = _operations(doc)
    assert [name for name, op in ops.items() if "400" in op["responses"]] == ["submitVideo"]
    assert "status_code" not in str(doc), "Litestar's default error body is documented somewhere"
    auth = Keys.auth(keys.acme)
    # What could draw a framework 400 on the other operations: each is a 422 problem.
    for method, url in [
        ("GET", "/video/status/not-a-uuid"),
        ("GET", "/video/status/%FF%FE"),
        ("GET", "/video/results/%00"),
        ("GET", "/video/jobs?limit=abc"),
        ("GET", "/video/jobs?status=bogus"),
        ("GET", "/video/jobs?cursor=%FF%FE"),
        ("GET", "/video/jobs?%FF=1"),
        ("POST", "/video/jobs/not-a-uuid/cancel"),
        ("DELETE", "/video/jobs/not-a-uuid"),
    ]:
        resp = client.request(method, url, headers=auth)
        assert _as_problem(resp, 422).type.endswith("invalid-input"), (method, url)
    assert client.get("/video/jobs?limit=1&limit=2", headers=auth).status_code == 200  # first
    # Submit's documented 400 is real: a broken multipart body.
    broken = client.post(
        "/video/submit",
        content=b"--b\r\nContent-Disposition: form-data\r\n\r\nx\r\n--b--\r\n",
        headers={**auth, "Content-Type": "multipart/form-data; boundary=b"},
    )
    assert _as_problem(broken, 400).type.endswith("malformed-multipart")


def test_the_documented_submit_headers_are_sent(client: TestClient[Litestar], keys: Keys) -> None:
    headers = {**Keys.auth(keys.acme), "Idempotency-Key": "doc-headers-1"}
    files = {"file": ("v.mp4", mp4_bytes(4096), "video/mp4")}
    first = client.post("/video/submit", data={"pipeline": "noop"}, files=files, headers=headers)
    assert first.status_code == 202, first.text
    assert first.headers["location"] == first.json()["status_url"]
    assert "idempotent-replayed" not in first.headers
    again = client.post("/video/submit", data={"pipeline": "noop"}, files=files, headers=headers)
    assert again.status_code == 200, again.text
    assert again.headers["location"] == first.headers["location"]
    assert again.headers["idempotent-replayed"] == "true"
    bad_key = client.post(
        "/video/submit",
        data={"pipeline": "noop"},
        files=files,
        headers={**Keys.auth(keys.acme), "Idempotency-Key": "x" * 256},
    )
    assert _as_problem(bad_key, 422).errors is not None
    unauthenticated = client.get("/video/jobs")
    assert _as_problem(unauthenticated, 401).type.endswith("unauthorized")
    assert unauthenticated.headers["www-authenticate"].startswith("Bearer")
