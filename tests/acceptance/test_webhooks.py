"""Webhooks end to end: real ``vidjobs api``, ``vidjobs worker`` and ``vidjobs webhooks`` processes.

A tenant's operator makes its secret and registers an endpoint with the CLI; clients submit
over HTTP with and without ``callback_url``; a loopback receiver verifies every delivery with
the ``standardwebhooks`` package. Each job's ``job.completed`` arrives exactly once per target
(deduplicated by ``webhook-id``). A worker SIGKILLed after committing a completion whose
delivery could not be made yet (its receiver down) loses nothing: the outbox row committed with
the state, and ``vidjobs webhooks dispatch`` delivers it once the receiver is back.
"""

from __future__ import annotations

import json
import time
import uuid

import httpx
import pytest

from tests.support.db import sql
from tests.support.keys import create_key
from tests.support.media import mp4_bytes
from tests.support.processes import Services, run_vidjobs, worker_args
from tests.support.webhook_receiver import WebhookReceiver, webhook_receiver
from vidjobs.webhooks.secrets import generate_key

pytestmark = [pytest.mark.integration, pytest.mark.acceptance]

TENANT = "hooked"


@pytest.fixture
def services(noop_services: Services) -> Services:
    """noop API and workers with webhooks on loopback allowed, quick retries and polls."""
    noop_services.extra_env.update(
        VIDJOBS_WEBHOOK_SECRET_KEYS=generate_key(),
        VIDJOBS_WEBHOOK_ALLOW_HTTP="true",
        VIDJOBS_WEBHOOK_ALLOW_NETWORKS="127.0.0.0/8",
        VIDJOBS_WEBHOOK_RETRY_BASE="0.2",
        VIDJOBS_WEBHOOK_RETRY_MAX_DELAY="0.5",
        VIDJOBS_WEBHOOK_POLL_INTERVAL="0.1",
    )
    return noop_services


def _secret(services: Services) -> str:
    made = services.cli("webhooks", "secret", "--tenant", TENANT)
    assert made.returncode == 0, made.stderr
    secret = made.stdout.strip()
    assert secret.startswith("whsec_")
    assert "shown once" in made.stderr
    return secret


def _submit(base: str, key: str, **fields: str) -> uuid.UUID:
    resp = httpx.post(
        f"{base}/video/submit",
        files={"file": ("clip.mp4", mp4_bytes(4096), "video/mp4")},
        data={"pipeline": "noop", **fields},
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )
    assert resp.status_code == 202, resp.text
    return uuid.UUID(resp.json()["job_id"])


def _wait(check: object, within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise AssertionError(f"not within {within}s: {what}")


def test_each_job_completed_is_delivered_once_per_target_verified(services: Services) -> None:
    secret = _secret(services)
    services.start_api()
    services.start_worker(*worker_args(concurrency=4))
    _, key = create_key(services.database_url, TENANT)
    with webhook_receiver([secret]) as endpoint, webhook_receiver([secret]) as callback:
        added = services.cli("webhooks", "add", "--tenant", TENANT, "--url", endpoint.url)
        assert added.returncode == 0, added.stderr
        assert "(added)" in added.stdout
        plain = [_submit(services.base_url, key) for _ in range(4)]
        called = [_submit(services.base_url, key, callback_url=callback.url) for _ in range(3)]
        _wait(lambda: len(endpoint.unique_events()) == 7, 60, "7 events at the endpoint")
        _wait(lambda: len(callback.unique_events()) == 3, 60, "3 events at the callback")
        time.sleep(1.0)  # nothing more arrives
        assert len(endpoint.snapshot()) == 7
        assert len(callback.snapshot()) == 3
    for job_id in plain + called:
        event = endpoint.unique_events()["msg_" + job_id.hex]
        assert event["type"] == "job.completed"
        assert event["data"]["job_id"] == str(job_id)
        assert event["data"]["status"] == "completed"
    assert set(callback.unique_events()) == {"msg_" + j.hex for j in called}
    # The delivery log, as the CLI shows it and as a DBA reads it.
    log = services.cli("webhooks", "deliveries", "--job", str(called[0]), "--json", "--attempts")
    assert log.returncode == 0, log.stderr
    rows = [json.loads(line) for line in log.stdout.splitlines()]
    assert sorted(r["url"] for r in rows) == sorted([endpoint.url, callback.url])
    assert {(r["state"], r["attempts"], r["last_status"]) for r in rows} == {("delivered", 1, 200)}
    assert all(len(r["attempts_log"]) == 1 for r in rows)
    ((n,),) = sql(
        services.database_url,
        "SELECT count(*) FROM vidjobs.webhook_deliveries WHERE tenant = %s AND state = 'delivered'",
        TENANT,
    )
    assert n == 10


def test_a_worker_killed_before_delivering_loses_no_event(services: Services) -> None:
    secret = _secret(services)
    receiver = WebhookReceiver([secret])  # registered, but down: connections are refused
    added = services.cli("webhooks", "add", "--tenant", TENANT, "--url", receiver.url)
    assert added.returncode == 0, added.stderr
    # Short timeouts, so an attempt the kill interrupts is leased for 1 + 2 x 1 + 5 s only.
    quick = {"VIDJOBS_WEBHOOK_TIMEOUT": "1", "VIDJOBS_WEBHOOK_CONNECT_TIMEOUT": "1"}
    services.extra_env.update(quick)
    services.start_api()
    worker = services.start_worker(*worker_args())
    _, key = create_key(services.database_url, TENANT)
    job_id = _submit(services.base_url, key)

    def completed() -> bool:
        rows = sql(
            services.database_url, "SELECT state FROM vidjobs.jobs WHERE job_id = %s", job_id
        )
        return rows == [("completed",)]

    _wait(completed, 60, "the job completed")
    worker.kill()  # SIGKILL: no shutdown, nothing flushed
    receiver.start()
    try:
        dispatcher = services.processes.start(
            "dispatch", ["webhooks", "dispatch", "--log-level", "info"], services.env()
        )
        _wait(receiver.unique_events, 40, "delivered by the new dispatcher")
        services.processes.stop(dispatcher)
    finally:
        receiver.stop()
    (event,) = receiver.unique_events().values()
    assert event["data"]["job_id"] == str(job_id)
    assert "exits: " in dispatcher.text()
    ((state, attempts, errors),) = sql(
        services.database_url,
        "SELECT d.state, d.attempts, array_agg(a.error ORDER BY a.attempt)"
        " FROM vidjobs.webhook_deliveries d JOIN vidjobs.webhook_attempts a USING (delivery_id)"
        " WHERE d.job_id = %s GROUP BY d.state, d.attempts",
        job_id,
    )
    assert state == "delivered"
    assert errors[-1] is None, "the last attempt delivered"
    # Before it: the killed worker's refused attempts, if it made any before the kill (an
    # attempt the kill cut short has no row: its lease ran out and it was sent again).
    assert all("ConnectError" in e for e in errors[:-1])
    assert attempts >= len(errors)


def test_the_cli_manages_secrets_and_endpoints(services: Services) -> None:
    secret = _secret(services)
    again = services.cli("webhooks", "secret", "--tenant", TENANT)
    assert again.returncode == 1
    assert "already has a signing secret" in again.stderr
    assert secret not in again.stdout + again.stderr
    rotated = services.cli("webhooks", "secret", "--tenant", TENANT, "--rotate")
    assert rotated.returncode == 0, rotated.stderr
    assert rotated.stdout.strip().startswith("whsec_")
    assert rotated.stdout.strip() != secret
    assert "signs too until" in rotated.stderr
    ((live,),) = sql(
        services.database_url,
        "SELECT count(*) FROM vidjobs.webhook_secrets WHERE tenant = %s"
        " AND (expires_at IS NULL OR expires_at > now())",
        TENANT,
    )
    assert live == 2
    refused = services.cli(
        "webhooks", "add", "--tenant", TENANT, "--url", "https://169.254.169.254/x"
    )
    assert refused.returncode == 2
    assert "link-local" in refused.stderr
    url = "http://127.0.0.1:9/hooks"
    assert services.cli("webhooks", "add", "--tenant", TENANT, "--url", url).returncode == 0
    listed = services.cli("webhooks", "list", "--tenant", TENANT)
    assert url in listed.stdout
    removed = services.cli("webhooks", "remove", "--tenant", TENANT, url)
    assert removed.returncode == 0, removed.stderr
    assert "disabled" in removed.stdout
    assert url not in services.cli("webhooks", "list", "--tenant", TENANT).stdout
    assert "removed by an operator" in services.cli("webhooks", "list", "--all").stdout
    gone = services.cli("webhooks", "remove", "--tenant", TENANT, url)
    assert gone.returncode == 1
    assert "no live endpoint" in gone.stderr
    # A new tenant's first endpoint brings its secret, shown once.
    first = services.cli("webhooks", "add", "--tenant", "fresh", "--url", url)
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip().startswith("whsec_")
    # Without the keys the secret commands refuse, saying how to make them.
    env = services.env(VIDJOBS_WEBHOOK_SECRET_KEYS="")
    keyless = run_vidjobs("webhooks", "secret", "--tenant", "other", env=env)
    assert keyless.returncode == 1
    assert "vidjobs webhooks keygen" in keyless.stderr
