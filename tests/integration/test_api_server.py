"""The API as a user runs it: ``vidjobs keys create`` and ``vidjobs api`` (uvicorn) processes.

Here the upload really streams over a socket, so the size limit is checked while streaming: a
chunked upload with no ``Content-Length`` is cut off at the limit with a 413, and nothing stays.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.support.blobs import stored_keys
from tests.support.db import count_jobs
from tests.support.media import mp4_bytes
from tests.support.postgres import create_empty_database, private_postgres
from tests.support.processes import Processes, Services
from tests.support.s3 import S3Server
from vidjobs.blobs import BlobSettings
from vidjobs.devstack.embedded import free_port

pytestmark = pytest.mark.integration

LIMIT = 1024 * 1024


def _services(processes: Processes, database_url: str, blobs: BlobSettings) -> Services:
    return Services(processes, database_url, blobs, {"VIDJOBS_API_MAX_UPLOAD_BYTES": str(LIMIT)})


@pytest.fixture
def services(processes: Processes, database_url: str, s3_settings: BlobSettings) -> Services:
    """The ``vidjobs`` commands on the test's database and bucket, with a 1 MiB upload limit."""
    return _services(processes, database_url, s3_settings)


@pytest.fixture
def server(services: Services) -> str:
    """Base URL of a running ``vidjobs api`` process (stopped by its PID afterwards)."""
    services.start_api(within=30)
    return services.base_url


def _create_key(services: Services, tenant: str) -> tuple[str, str]:
    done = services.cli("keys", "create", "--tenant", tenant, "--name", "ci")
    assert done.returncode == 0, done.stderr
    key = done.stdout.strip()
    assert key.startswith("vj_")
    assert "shown once" in done.stderr
    key_id = next(
        line.split(": ", 1)[1] for line in done.stderr.splitlines() if line.startswith("key_id")
    )
    return key_id, key


def _multipart_head(boundary: str) -> bytes:
    return (
        f'--{boundary}\r\nContent-Disposition: form-data; name="pipeline"\r\n\r\nnoop\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.mp4"\r\n'
        "Content-Type: video/mp4\r\n\r\n"
    ).encode()


def test_cli_keys_and_streamed_upload_through_uvicorn(
    server: str, services: Services, s3_settings: BlobSettings, s3_server: S3Server
) -> None:
    key_id, key = _create_key(services, "acme")
    listed = services.cli("keys", "list")
    assert key_id in listed.stdout
    assert key not in listed.stdout  # the key itself is never shown again

    boundary = "vidjobs-test-boundary"
    video = mp4_bytes(LIMIT - 1000)

    def body() -> Iterator[bytes]:  # a generator: httpx sends it chunked, no Content-Length
        yield _multipart_head(boundary)
        for i in range(0, len(video), 64 * 1024):
            yield video[i : i + 64 * 1024]
        yield f"\r\n--{boundary}--\r\n".encode()

    resp = httpx.post(
        f"{server}/video/submit",
        content=body(),
        headers={
            "Authorization": f"Bearer {key}",
            "Content-Type": f"multipart/form-data; boundary={boundary}",
        },
        timeout=30,
    )
    assert resp.status_code == 202, resp.text
    job_id = resp.json()["job_id"]
    stored = s3_server.client().stat_object(s3_settings.s3_bucket, f"video_jobs/{job_id}.mp4")
    assert stored.size == len(video)
    status = httpx.get(
        f"{server}{resp.headers['location']}", headers={"Authorization": f"Bearer {key}"}
    )
    assert status.json()["status"] == "pending"

    revoked = services.cli("keys", "revoke", key_id)
    assert revoked.returncode == 0, revoked.stderr
    again = httpx.get(f"{server}/video/jobs", headers={"Authorization": f"Bearer {key}"})
    assert again.status_code == 401
    assert services.cli("keys", "revoke", key_id).returncode == 0
    unknown = services.cli("keys", "revoke", "0" * 8 + "-0000-0000-0000-" + "0" * 12)
    assert unknown.returncode != 0
    assert "no key" in unknown.stderr


def test_oversize_chunked_upload_is_cut_off_with_413_and_leaves_nothing(
    server: str, services: Services, database_url: str, s3_settings: BlobSettings
) -> None:
    _, key = _create_key(services, "acme")
    boundary = "vidjobs-test-boundary"
    port = int(server.rsplit(":", 1)[1])
    chunk = mp4_bytes(64 * 1024)
    total_planned = 8 * LIMIT
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        sock.sendall(
            (
                "POST /video/submit HTTP/1.1\r\nHost: test\r\n"
                f"Authorization: Bearer {key}\r\n"
                f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
                "Transfer-Encoding: chunked\r\n\r\n"
            ).encode()
        )

        def send_chunk(data: bytes) -> None:
            sock.sendall(f"{len(data):x}\r\n".encode() + data + b"\r\n")

        try:
            send_chunk(_multipart_head(boundary))
            while sent < total_planned:
                send_chunk(chunk)
                sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server stopped reading: expected once the limit is crossed
        response = b""
        try:
            while part := sock.recv(65536):
                response += part
        except ConnectionResetError:
            pass
    head, _, payload = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413"), response[:500]
    assert b"application/problem+json" in head
    assert b"upload-too-large" in payload
    assert sent < total_planned  # cut off while streaming, not after reading everything
    # Nothing half-written: no row and no blob (an aborted multipart upload leaves no object).
    time.sleep(0.5)
    assert count_jobs(database_url) == 0
    assert stored_keys(s3_settings) == []


def test_concurrent_idempotent_repeats_keep_one_job_and_one_blob(
    server: str, services: Services, database_url: str, s3_settings: BlobSettings
) -> None:
    """Both repeats pass the look-up before either inserts: the insert race decides."""
    import concurrent.futures

    _, key = _create_key(services, "acme")
    video = mp4_bytes(LIMIT // 2)

    def submit() -> httpx.Response:
        return httpx.post(
            f"{server}/video/submit",
            data={"pipeline": "noop"},
            files={"file": ("clip.mp4", video, "video/mp4")},
            headers={"Authorization": f"Bearer {key}", "Idempotency-Key": "same-upload"},
            timeout=30,
        )

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda _: submit(), range(4)))
    assert all(a.status_code in (200, 202) for a in answers), [a.text for a in answers]
    assert [a.status_code for a in answers].count(202) == 1
    assert len({a.json()["job_id"] for a in answers}) == 1
    assert count_jobs(database_url) == 1
    assert stored_keys(s3_settings) == [f"video_jobs/{answers[0].json()['job_id']}.mp4"]


def test_client_disconnect_mid_upload_leaves_nothing(
    server: str, services: Services, database_url: str, s3_settings: BlobSettings
) -> None:
    _, key = _create_key(services, "acme")
    boundary = "vidjobs-test-boundary"
    port = int(server.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        body_len = LIMIT  # announced, never sent in full
        sock.sendall(
            (
                "POST /video/submit HTTP/1.1\r\nHost: test\r\n"
                f"Authorization: Bearer {key}\r\n"
                f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
                f"Content-Length: {body_len}\r\n\r\n"
            ).encode()
            + _multipart_head(boundary)
            + mp4_bytes(200_000)
        )
        time.sleep(0.5)  # the upload is streaming into the store now
    deadline = time.monotonic() + 10
    while stored_keys(s3_settings) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert stored_keys(s3_settings) == []
    assert count_jobs(database_url) == 0
    # The server is fine afterwards.
    assert httpx.get(f"{server}/health").status_code == 200


def test_api_starts_while_postgres_is_down_and_recovers_when_it_is_up(
    processes: Processes, s3_settings: BlobSettings
) -> None:
    """Start order must not matter: the API comes up, answers 503 until Postgres does, then 200.

    A Postgres of this test alone, started only after the API, on the port the API was given.
    """
    import uuid

    from vidjobs.db.migrate import migrate

    port = free_port()
    url = f"postgresql://postgres@127.0.0.1:{port}/vidjobs"
    services = _services(processes, url, s3_settings)
    job = f"/video/status/{uuid.uuid4()}"
    with private_postgres(durable=False, port=port) as pg:
        api = services.start_api(within=30)  # /health needs no database
        base = services.base_url
        ready = httpx.get(f"{base}/ready", timeout=30)
        assert ready.status_code == 503, ready.text
        assert ready.json()["database"].startswith("unavailable")
        down = httpx.get(f"{base}{job}", headers={"Authorization": "Bearer vj_x"}, timeout=30)
        assert down.status_code == 503, down.text
        assert down.headers["content-type"].startswith("application/problem+json")
        assert down.json()["type"].endswith("database-unavailable")
        assert down.headers["retry-after"]

        pg.start()
        create_empty_database(pg.url, "vidjobs")
        migrate(url)
        _, key = _create_key(services, "acme")
        api.wait_for(
            lambda: httpx.get(f"{base}/ready", timeout=30).status_code == 200,
            60,
            "the API sees Postgres come back",
            every=0.2,
        )
        up = httpx.get(f"{base}{job}", headers={"Authorization": f"Bearer {key}"}, timeout=30)
        assert up.status_code == 404, up.text  # answered from the database: no such job
        assert api.alive()  # the same process throughout


def test_requests_with_the_file_first_through_uvicorn(
    server: str, services: Services, s3_settings: BlobSettings, s3_server: S3Server
) -> None:
    """``requests`` sends the parts in the order given: the file, then the fields."""
    import hashlib

    import requests

    _, key = _create_key(services, "acme")
    video = mp4_bytes(LIMIT // 2, seed=9)
    resp = requests.post(
        f"{server}/video/submit",
        files=[
            ("file", ("clip.mp4", video, "video/mp4")),
            ("pipeline", (None, "noop")),
            ("sample_fps", (None, "2")),
        ],
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )
    assert resp.status_code == 202, resp.text
    job_id = resp.json()["job_id"]
    stored = s3_server.client().stat_object(s3_settings.s3_bucket, f"video_jobs/{job_id}.mp4")
    assert stored.size == len(video)
    status = requests.get(
        f"{server}/video/status/{job_id}", headers={"Authorization": f"Bearer {key}"}, timeout=10
    ).json()
    assert status["pipeline"] == "noop"
    assert status["input_sha256"] == hashlib.sha256(video).hexdigest()


def test_a_bad_field_before_the_file_is_refused_before_the_file_is_sent(
    server: str, services: Services, database_url: str, s3_settings: BlobSettings
) -> None:
    """The early refusal: the 422 comes while most of the announced body was never sent."""
    _, key = _create_key(services, "acme")
    boundary = "vidjobs-test-boundary"
    port = int(server.rsplit(":", 1)[1])
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="sample_fps"\r\n\r\n1000\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.mp4"\r\n'
        "Content-Type: video/mp4\r\n\r\n"
    ).encode() + mp4_bytes(4096)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(
            (
                "POST /video/submit HTTP/1.1\r\nHost: test\r\n"
                f"Authorization: Bearer {key}\r\n"
                f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
                f"Content-Length: {LIMIT}\r\n\r\n"  # announced, never sent in full
            ).encode()
            + head
        )
        answer = b""
        while b"\r\n\r\n" not in answer or b"}" not in answer:
            chunk = sock.recv(65536)  # times out (test fails) if the server waits for the body
            if not chunk:
                break
            answer += chunk
    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line.startswith(b"HTTP/1.1 422"), answer
    assert b"connection: close" in rest.lower()
    assert b"sample_fps" in rest
    assert count_jobs(database_url) == 0
    assert stored_keys(s3_settings) == []


def test_a_key_in_the_query_string_never_reaches_the_log(services: Services) -> None:
    """``?api_key=vj_...`` is redacted in every line the API process writes (access log too)."""
    api = services.start_api("--log-level", "info", within=30)
    _, key = _create_key(services, "acme")
    base = services.base_url
    assert httpx.get(f"{base}/video/jobs", params={"api_key": key}).status_code == 401
    assert httpx.get(f"{base}/video/jobs?token={key}&limit=2").status_code == 401
    authed = httpx.get(
        f"{base}/video/jobs",
        params={"access_token": key},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert authed.status_code == 422  # an unknown parameter; its name is echoed, not the key
    assert key not in authed.text
    assert httpx.get(f"{base}/video/status/{key}").status_code == 401
    secret_part = key[len("vj_") + 8 :]
    api.wait_for_line(r"GET /video/status/vj_", within=10)  # the last request's access line
    logs = api.text()
    assert "GET /video/jobs?api_key=[redacted]" in logs, logs
    assert "token=[redacted]&limit=2" in logs, logs
    assert key not in logs
    assert secret_part not in logs
