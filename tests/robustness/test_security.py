"""Security properties, shown against a real ``vidjobs api`` process (uvicorn) and Postgres.

- Tenant isolation: on every job route, another tenant's job (in every state) answers exactly
  like a job that does not exist: same status, same headers, same body apart from the id.
- Keys: only SHA-256 hashes are stored; a revoked key is refused on the very next request; the
  check is a hash lookup followed by ``hmac.compare_digest`` (never a compare of the secret).
- Uploads: the size limit stops a chunked upload while it streams (413 long before the client
  is done, with flat server memory); client filenames never reach a blob key or a path.
- The read-only DBA role refusing writes is tested in ``tests/integration/test_roles.py``.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import select
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import psycopg
import pytest

from tests.support.api import submit_noop
from tests.support.db import run_db, sql
from tests.support.keys import auth, create_key, revoke_key
from tests.support.media import MP4_HEAD
from tests.support.processes import Services
from tests.support.stand_in_worker import jobs_in_every_state
from vidjobs.db.api_keys import api_key_authenticate
from vidjobs.db.sql import load_queries

pytestmark = [pytest.mark.integration, pytest.mark.acceptance]

MIB = 1024 * 1024


@pytest.fixture
def api(live: Services) -> Iterator[tuple[Services, httpx.Client]]:
    """The API process (no worker: tests move jobs between states themselves)."""
    live.start_api()
    with httpx.Client(base_url=live.base_url, timeout=30) as client:
        yield live, client


_ROUTES = (
    ("GET", "/video/status/{id}"),
    ("GET", "/video/results/{id}"),
    ("POST", "/video/jobs/{id}/cancel"),
    ("DELETE", "/video/jobs/{id}"),
)
_VOLATILE_HEADERS = {"date", "server"}


def _shape(resp: httpx.Response, job_id: str) -> tuple[int, dict[str, str], str]:
    """What a client can observe, with the id (which the client chose) blanked out."""
    headers = {
        k: v.replace(job_id, "{id}")
        for k, v in resp.headers.items()
        if k.lower() not in _VOLATILE_HEADERS
    }
    return resp.status_code, headers, resp.text.replace(job_id, "{id}")


def test_another_tenants_job_is_indistinguishable_from_a_missing_one(
    api: tuple[Services, httpx.Client],
) -> None:
    live, client = api
    _, acme = create_key(live.database_url, "acme")
    _, globex = create_key(live.database_url, "globex")
    assert live.blobs is not None
    jobs = jobs_in_every_state(live.database_url, live.blobs, client, acme)
    before = sql(
        live.database_url, "SELECT job_id::text, state::text, updated_at FROM vidjobs.jobs"
    )
    blobs_before = live.stored_keys()

    for state, job_id in jobs.items():
        for method, template in _ROUTES:
            theirs = client.request(method, template.format(id=job_id), headers=auth(globex))
            missing_id = str(uuid.uuid4())
            missing = client.request(method, template.format(id=missing_id), headers=auth(globex))
            assert theirs.status_code == 404, (state, method, template, theirs.text)
            assert _shape(theirs, job_id) == _shape(missing, missing_id), (state, method, template)
            # The owner's view of a missing id is the same again: nothing depends on who asks.
            own_missing = client.request(method, template.format(id=missing_id), headers=auth(acme))
            assert _shape(own_missing, missing_id) == _shape(missing, missing_id)

    for status in (None, "pending", "running", "completed", "failed", "cancelled"):
        params = {"status": status} if status else {}
        listed = client.get("/video/jobs", headers=auth(globex), params=params)
        assert listed.status_code == 200
        assert listed.json() == {"jobs": [], "next_cursor": None}
        own = client.get("/video/jobs", headers=auth(acme), params=params).json()
        want = set(jobs.values()) if status is None else {jobs[status]}
        assert {j["job_id"] for j in own["jobs"]} == want

    # acme's page cursor shows globex nothing of acme's either.
    acme_cursor = client.get("/video/jobs", headers=auth(acme), params={"limit": 1}).json()
    assert acme_cursor["next_cursor"]
    listed = client.get(
        "/video/jobs", headers=auth(globex), params={"cursor": acme_cursor["next_cursor"]}
    )
    assert listed.status_code == 200
    assert listed.json() == {"jobs": [], "next_cursor": None}

    # globex's cancels and deletes changed nothing of acme's.
    after = sql(live.database_url, "SELECT job_id::text, state::text, updated_at FROM vidjobs.jobs")
    assert sorted(after) == sorted(before)
    assert live.stored_keys() == blobs_before


@pytest.mark.parametrize(
    "header",
    [
        b"",
        b"Bearer",
        b"Bearer ",
        b"bearer vj_nonsense",
        b"Basic dXNlcjpwYXNz",
        b"Bearer vj_\xff\xfe\xfd",
        b"Bearer \xc3\xa9\xc3\xa9",
        b"Bearer " + b"A" * 8000,
        b"Bearer vj_x vj_y",
        b"Bearer vj_%00",
    ],
)
def test_malformed_keys_are_refused_never_a_500(
    api: tuple[Services, httpx.Client], header: bytes
) -> None:
    live, _ = api
    netloc = urlsplit(live.base_url).netloc
    host, port = netloc.split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(
            b"GET /video/jobs HTTP/1.1\r\nHost: " + netloc.encode() + b"\r\n"
            b"Authorization: " + header + b"\r\nConnection: close\r\n\r\n"
        )
        response = _read_response(sock, b"")
    status = int(response.split(b" ", 2)[1])
    assert status in (400, 401), response[:400]


def test_only_key_hashes_are_stored(live: Services) -> None:
    out = live.cli("keys", "create", "--tenant", "acme", "--name", "ci")
    assert out.returncode == 0, out.stderr
    plaintext = out.stdout.strip()
    assert plaintext.startswith("vj_")
    assert len(plaintext) > 40
    secret = plaintext[10:]  # what is not the displayed prefix
    rows = sql(live.database_url, "SELECT row_to_json(k)::text, key_hash FROM vidjobs.api_keys k")
    assert len(rows) == 1
    as_text, key_hash = rows[0]
    assert secret not in as_text
    assert plaintext not in as_text
    assert bytes(key_hash) == hashlib.sha256(plaintext.encode()).digest()
    # Not in any other table either (e.g. an audit or job row).
    dump = sql(
        live.database_url, "SELECT string_agg(row_to_json(e)::text, '') FROM vidjobs.job_events e"
    )
    assert secret not in str(dump)


def test_revoked_key_is_refused_on_the_next_request(api: tuple[Services, httpx.Client]) -> None:
    live, client = api
    key_id, key = create_key(live.database_url, "acme")
    _, other_key = create_key(live.database_url, "acme")
    for _ in range(3):  # warm: any cache would now hold the key
        assert client.get("/video/jobs", headers=auth(key)).status_code == 200
    revoke_key(live.database_url, key_id)
    refused = client.get("/video/jobs", headers=auth(key))
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"].startswith("Bearer")
    assert refused.headers["content-type"].startswith("application/problem+json")
    # The tenant's other key still works.
    assert client.get("/video/jobs", headers=auth(other_key)).status_code == 200


def test_key_check_is_a_hash_lookup_and_a_constant_time_compare(
    live: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = live.database_url
    _, key = create_key(url, "acme")
    # 1. The database is asked by SHA-256, through the unique index: the secret itself is
    #    never compared, so response time says nothing about how many characters matched.
    query = load_queries()["api_key_authenticate"]
    assert "key_hash = %(key_hash)s" in query
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET enable_seqscan = off")
        plan = conn.execute(
            "EXPLAIN " + query, {"key_hash": hashlib.sha256(key.encode()).digest()}
        ).fetchall()
    assert "api_keys_key_hash_key" in " ".join(r[0] for r in plan)
    # 2. The stored hash is then compared with hmac.compare_digest.
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    assert run_db(url, lambda c: api_key_authenticate(c, key)) == "acme"
    assert calls == [(hashlib.sha256(key.encode()).digest(),) * 2]
    # 3. Near misses (one character off at the start or the end) are refused like nonsense.
    for wrong in (key[:-1] + ("A" if key[-1] != "A" else "B"), "x" + key[1:], "vj_nonsense"):
        assert run_db(url, lambda c, w=wrong: api_key_authenticate(c, w)) is None


def _multipart_head(boundary: str, filename: str = "big.mp4") -> bytes:
    return (
        f"--{boundary}\r\n"
        f'Content-Disposition: form-data; name="file"; filename="{filename}"\r\n'
        "Content-Type: video/mp4\r\n\r\n"
    ).encode() + MP4_HEAD


def _http_head(host: str, key: str, boundary: str, extra: str) -> bytes:
    return (
        f"POST /video/submit HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {key}\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\n{extra}\r\n"
    ).encode()


def _chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


def _read_response(sock: socket.socket, got: bytes) -> bytes:
    """The whole response (head and ``Content-Length`` body), whatever arrived already."""
    sock.settimeout(10)
    while True:
        head, sep, body = got.partition(b"\r\n\r\n")
        if sep:
            length = next(
                (int(line.split(b":")[1]) for line in head.split(b"\r\n")
                 if line.lower().startswith(b"content-length:")),
                0,
            )  # fmt: skip
            if len(body) >= length:
                return got
        try:
            more = sock.recv(65536)
        except ConnectionResetError:
            return got
        if not more:
            return got
        got += more


def test_upload_limit_cuts_a_chunked_upload_while_it_streams(live: Services) -> None:
    api = live.start_api(VIDJOBS_API_MAX_UPLOAD_BYTES=str(MIB))
    _, key = create_key(live.database_url, "acme")
    netloc = urlsplit(live.base_url).netloc
    host, port = netloc.split(":")
    peak_before = api.rss_peak_kib()
    budget = 256 * MIB  # what the client is prepared to send: 256x the limit
    piece = os.urandom(256 * 1024)
    boundary = "vidjobsboundary"

    sent = 0
    response = b""
    t0 = time.monotonic()
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(_http_head(netloc, key, boundary, "Transfer-Encoding: chunked\r\n"))
        sock.sendall(_chunk(_multipart_head(boundary)))
        try:
            while sent < budget:
                if select.select([sock], [], [], 0)[0]:
                    response = sock.recv(65536)
                    break
                sock.sendall(_chunk(piece))
                sent += len(piece)
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            pass  # the server closed the connection or stopped reading: also "cut off"
        response = _read_response(sock, response)
    elapsed = time.monotonic() - t0
    status_line = response.split(b"\r\n", 1)[0]
    assert status_line.startswith(b"HTTP/1.1 413"), response[:300]
    assert b"upload-too-large" in response
    assert sent < budget / 8, f"the server read {sent} bytes before answering"
    growth_mib = (api.rss_peak_kib() - peak_before) / 1024
    assert growth_mib < 32, f"API peak memory grew {growth_mib:.0f} MiB"
    assert api.alive()
    # Nothing was kept: no row, no blob (temporary files included).
    assert sql(live.database_url, "SELECT count(*) FROM vidjobs.jobs") == [(0,)]
    assert live.stored_keys() == []
    print(
        f"\nUPLOAD_LIMIT limit=1MiB client_sent={sent / MIB:.1f}MiB before the 413 "
        f"(budget {budget / MIB:.0f}MiB) in {elapsed:.2f}s; API peak RSS +{growth_mib:.1f}MiB"
    )


def test_announced_oversize_upload_is_refused_before_the_body(live: Services) -> None:
    live.start_api(VIDJOBS_API_MAX_UPLOAD_BYTES=str(MIB))
    _, key = create_key(live.database_url, "acme")
    netloc = urlsplit(live.base_url).netloc
    host, port = netloc.split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(_http_head(netloc, key, "b", f"Content-Length: {10 * 1024**3}\r\n"))
        response = _read_response(sock, b"")  # not one byte of the body was sent
    assert response.startswith(b"HTTP/1.1 413"), response[:300]


@pytest.mark.parametrize(
    "filename",
    [
        "../../etc/passwd",
        "/etc/passwd",
        "..\\..\\windows\\system32\\x.mp4",
        "video_jobs/../../escape.mp4",
        "%2e%2e%2f%2e%2e%2fpasswd",
        "vid\u00e9o \u2603.mp4",
        "a" * 2000 + ".mp4",
    ],
)
def test_client_filenames_never_reach_a_key_or_path(
    api: tuple[Services, httpx.Client], filename: str, tmp_path: Path
) -> None:
    live, client = api
    _, key = create_key(live.database_url, "acme")
    resp = submit_noop(client, key, filename=filename)
    assert resp.status_code == 202, resp.text
    job_id = resp.json()["job_id"]
    assert live.stored_keys() == [f"video_jobs/{job_id}.mp4"]
    rows = sql(live.database_url, "SELECT input_key, row_to_json(j)::text FROM vidjobs.jobs j")
    assert rows[0][0] == f"video_jobs/{job_id}.mp4"
    assert filename not in rows[0][1]
    # Nothing was written anywhere else under the test's directory either.
    strays = [p for p in tmp_path.rglob("*") if "passwd" in p.name or "escape" in p.name]
    assert strays == []


def test_filename_that_is_not_utf8_is_accepted_and_ignored(
    api: tuple[Services, httpx.Client],
) -> None:
    """Was a 500 (UnicodeDecodeError in the multipart parser); the name is unused, so 202."""
    live, client = api
    _, key = create_key(live.database_url, "acme")
    body = (
        b"--bnd\r\n"
        b'Content-Disposition: form-data; name="file"; filename="../\xff\xfe\xfa.mp4"\r\n'
        b"Content-Type: video/mp4\r\n\r\n" + MP4_HEAD + b"\x00" * 512 + b"\r\n--bnd--\r\n"
    )
    resp = client.post(
        "/video/submit",
        headers={**auth(key), "Content-Type": "multipart/form-data; boundary=bnd"},
        content=body,
    )
    assert resp.status_code == 202, resp.text
    assert live.stored_keys() == [f"video_jobs/{resp.json()['job_id']}.mp4"]
