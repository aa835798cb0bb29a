"""``callback_url`` at submit: the SSRF guard's clear 422, before or after the file, nothing kept.

Real Postgres and a real S3 server behind Litestar's test client. The default target policy
(https only, public addresses only) and an operator's allowances (http, a network) are both
exercised; a refused URL leaves no row and no blob, wherever the field sits in the form.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from litestar import Litestar
from litestar.testing import TestClient

from tests.support.blobs import stored_keys
from tests.support.db import count_jobs, sql
from tests.support.keys import Keys
from tests.support.media import mp4_bytes
from vidjobs.api.app import create_app
from vidjobs.api.settings import ApiSettings
from vidjobs.blobs import BlobSettings
from vidjobs.webhooks.secrets import Sealer, generate_key, new_secret
from vidjobs.webhooks.settings import TargetPolicy

pytestmark = pytest.mark.integration

Part = tuple[str, tuple[str | None, bytes | str] | tuple[str, bytes, str]]
VIDEO = mp4_bytes(20_000)


def _post(c: TestClient[Litestar], key: str, parts: list[Part]) -> httpx.Response:
    return c.post("/video/submit", files=parts, headers=Keys.auth(key))


def _file() -> Part:
    return ("file", ("clip.mp4", VIDEO, "video/mp4"))


def _url(value: str) -> Part:
    return ("callback_url", (None, value))


def _refused(resp: httpx.Response, *words: str) -> dict[str, Any]:
    assert resp.status_code == 422, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = resp.json()
    assert body["errors"][0]["field"] == "callback_url", body
    for word in words:
        assert word in body["detail"], body
    return body


def _with_secret(database_url: str, tenant: str = "acme") -> None:
    sealed = Sealer(generate_key()).seal(new_secret())
    sql(
        database_url,
        "INSERT INTO vidjobs.webhook_secrets (tenant, sealed) VALUES (%s, %s)",
        tenant,
        sealed,
    )


@pytest.fixture
def loopback_client(api_settings: ApiSettings) -> Iterator[TestClient[Litestar]]:
    """An app whose operator allows http and loopback receivers (as ``vidjobs dev`` does)."""
    settings = api_settings.model_copy(
        update={"webhook_targets": TargetPolicy(allow_http=True, allow_networks="127.0.0.0/8")}
    )
    with TestClient(create_app(settings)) as c:
        yield c


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://example.com/hook", "must start with https://"),
        ("ftp://example.com/hook", "must start with https://"),
        ("https://169.254.169.254/latest/meta-data/", "link-local"),
        ("https://10.1.2.3/hook", "a private address"),
        ("https://192.168.0.10/hook", "a private address"),
        ("https://127.0.0.1:8080/hook", "a loopback address"),
        ("https://[::1]/hook", "a loopback address"),
        ("https://[::ffff:127.0.0.1]/hook", "a loopback address"),
        ("https://0.0.0.0/hook", "unspecified"),
        ("https://100.64.0.1/hook", "not a public one"),
        ("https://[fd00:ec2::254]/hook", "a private address"),
        ("https://user:pw@example.com/hook", "credentials"),
        ("https://localhost/hook", "resolves to"),
        ("https://no-such-host.invalid/hook", "does not resolve"),
        ("https://example.com/" + "a" * 2100, "longer than 2048"),
        ("not a url", "without spaces"),
        ("//example.com/hook", "must start with https://"),
    ],
)
def test_refused_targets_get_a_clear_422_and_nothing_is_stored(
    client: TestClient[Litestar],
    keys: Keys,
    database_url: str,
    s3_settings: BlobSettings,
    url: str,
    why: str,
) -> None:
    _with_secret(database_url)
    resp = _post(client, keys.acme, [_url(url), _file()])
    _refused(resp, why)
    assert resp.headers.get("connection") == "close", "the file was not read"
    assert count_jobs(database_url) == 0
    assert stored_keys(s3_settings) == []


def test_a_refused_url_after_the_file_is_422_and_the_blob_is_removed(
    client: TestClient[Litestar], keys: Keys, database_url: str, s3_settings: BlobSettings
) -> None:
    _with_secret(database_url)
    resp = _post(client, keys.acme, [_file(), _url("https://169.254.169.254/")])
    body = _refused(resp, "link-local")
    assert body["type"].endswith("/callback-url-refused")
    resp = _post(client, keys.acme, [_file(), _url("http://example.com/")])
    body = _refused(resp, "must start with https://")
    assert body["type"].endswith("/invalid-input")  # malformed for this deployment
    resp = _post(client, keys.acme, [_file(), _url("https://localhost/hook")])
    body = _refused(resp, "resolves to", "loopback")
    assert body["type"].endswith("/callback-url-refused")
    assert count_jobs(database_url) == 0
    assert stored_keys(s3_settings) == []


def test_a_tenant_without_signing_secret_cannot_name_a_callback(
    loopback_client: TestClient[Litestar], keys: Keys, database_url: str
) -> None:
    resp = _post(loopback_client, keys.acme, [_url("http://127.0.0.1:9/hook"), _file()])
    body = _refused(resp, "no webhook signing secret", "vidjobs webhooks secret --tenant acme")
    assert body["type"].endswith("/callback-url-refused")
    assert count_jobs(database_url) == 0


def test_an_allowed_callback_is_stored_on_the_job_and_part_of_idempotency(
    loopback_client: TestClient[Litestar], keys: Keys, database_url: str
) -> None:
    _with_secret(database_url)
    parts = [_file(), _url("http://127.0.0.1:9/hook")]
    first = loopback_client.post(
        "/video/submit", files=parts, headers={**Keys.auth(keys.acme), "Idempotency-Key": "k1"}
    )
    assert first.status_code == 202, first.text
    job_id = uuid.UUID(first.json()["job_id"])
    ((stored,),) = sql(
        database_url, "SELECT callback_url FROM vidjobs.jobs WHERE job_id = %s", job_id
    )
    assert stored == "http://127.0.0.1:9/hook"
    # The same key with another callback_url is another request: 409 naming it.
    other = loopback_client.post(
        "/video/submit",
        files=[_file(), _url("http://127.0.0.1:10/hook")],
        headers={**Keys.auth(keys.acme), "Idempotency-Key": "k1"},
    )
    assert other.status_code == 409, other.text
    assert "callback_url" in other.json()["detail"]
    # Without one, a submit is as before.
    plain = _post(loopback_client, keys.acme, [_file()])
    assert plain.status_code == 202, plain.text


def test_the_default_policy_refuses_loopback_http_that_dev_allows(
    client: TestClient[Litestar],
    loopback_client: TestClient[Litestar],
    keys: Keys,
    database_url: str,
) -> None:
    _with_secret(database_url)
    _refused(_post(client, keys.acme, [_url("http://127.0.0.1:9/hook"), _file()]), "https://")
    assert (
        _post(loopback_client, keys.acme, [_url("http://127.0.0.1:9/h"), _file()]).status_code
        == 202
    )
