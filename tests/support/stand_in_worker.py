"""STAND-IN FOR THE WORKER: tests of the API move jobs on with the worker's own db calls.

Each write is one a real worker makes (claim, progress, results blob, fenced completion or
failure), so what the API then shows is what it would show for a real worker's job.
"""

from __future__ import annotations

import uuid
from typing import NamedTuple

import httpx
import msgspec

from tests.support.api import submit_noop
from tests.support.db import Conn, run_db
from tests.support.keys import auth
from vidjobs.blobs import BlobSettings, open_blob_store, results_key
from vidjobs.db.leases import job_claim, job_complete, job_fail, job_progress

__all__ = [
    "Claimed",
    "jobs_in_every_state",
    "stand_in_worker_claims",
    "stand_in_worker_completes",
]


class Claimed(NamedTuple):
    """A job the stand-in worker holds."""

    job_id: uuid.UUID
    lease_token: uuid.UUID


def stand_in_worker_claims(database_url: str, frames_done: int, frames_total: int) -> Claimed:
    """Claim one job and report progress on it."""

    async def go(c: Conn) -> Claimed:
        (job,) = await job_claim(c, worker_id="stand-in", batch_size=1, lease_seconds=60)
        assert job.lease_token is not None
        await job_progress(
            c, job.job_id, job.lease_token, frames_done=frames_done, frames_total=frames_total
        )
        return Claimed(job.job_id, job.lease_token)

    return run_db(database_url, go)


def stand_in_worker_completes(
    database_url: str, settings: BlobSettings, claimed: Claimed, document: dict[str, object]
) -> None:
    """Write the results document, then complete the job (fenced by its lease token)."""
    store = open_blob_store(settings)
    try:
        key = results_key(claimed.job_id)
        store.put_bytes(key, msgspec.json.encode(document), content_type="application/json")
        run_db(
            database_url,
            lambda c: job_complete(c, claimed.job_id, claimed.lease_token, output_key=key),
        )
    finally:
        store.close()


def jobs_in_every_state(
    database_url: str, blobs: BlobSettings, client: httpx.Client, key: str
) -> dict[str, str]:
    """Job ids of ``key``'s tenant in each state, submitted over HTTP and moved one at a time."""
    store = open_blob_store(blobs)
    jobs: dict[str, str] = {}
    try:
        for state in ("running", "completed", "failed", "cancelled", "pending"):
            resp = submit_noop(client, key)
            assert resp.status_code == 202, resp.text
            job_id = str(resp.json()["job_id"])
            jobs[state] = job_id
            if state in ("running", "completed", "failed"):
                (job,) = run_db(
                    database_url,
                    lambda c: job_claim(c, worker_id="w", batch_size=1, lease_seconds=600),
                )
                assert str(job.job_id) == job_id
                token = job.lease_token
                assert token is not None
                if state == "completed":
                    out = results_key(job.job_id)
                    store.put_bytes(out, b'{"frames": []}', content_type="application/json")
                    run_db(
                        database_url,
                        lambda c, j=job.job_id, t=token, o=out: job_complete(c, j, t, output_key=o),
                    )
                elif state == "failed":
                    run_db(
                        database_url,
                        lambda c, j=job.job_id, t=token: job_fail(
                            c, j, t, error_kind="invalid_video", error_message="bad",
                            permanent=True,
                        ),
                    )  # fmt: skip
            elif state == "cancelled":
                assert client.post(f"/video/jobs/{job_id}/cancel", headers=auth(key)).is_success
    finally:
        store.close()
    return jobs
