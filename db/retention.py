"""Retention: delete jobs that finished long ago, with their events and their blobs.

Rows go first (one statement per batch, ``job_prune``), then the blobs of exactly those rows.
A run that dies between the two leaves unreferenced blobs behind (storage only, never a row
pointing at a missing blob); the next run does not see them again, so the report counts blob
deletions that failed and the operator can sweep the bucket.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta
from typing import Any

import msgspec
from psycopg import AsyncConnection

from vidjobs.blobs import BlobStore, BlobStoreError, results_index_key, results_key, video_key
from vidjobs.db.jobs import job_prune
from vidjobs.db.webhooks import delivery_prune

__all__ = ["PruneReport", "prune_finished"]

_log = logging.getLogger(__name__)


class PruneReport(msgspec.Struct, frozen=True, kw_only=True):
    """What one prune run did."""

    jobs_deleted: int
    blobs_deleted: int
    blob_errors: int
    deliveries_deleted: int = 0
    """Webhook deliveries (and their attempts) that ended before the same cut-off."""


def _delete_blobs(store: BlobStore, keys: list[str]) -> tuple[int, int]:
    deleted = errors = 0
    for key in keys:
        try:
            store.delete(key)  # idempotent: a blob already gone is fine
            deleted += 1
        except BlobStoreError as exc:
            errors += 1
            _log.warning("could not delete blob %s: %s", key, exc)
    return deleted, errors


async def prune_finished(
    conn: AsyncConnection[Any],
    store: BlobStore,
    *,
    older_than: timedelta,
    batch: int = 1000,
    now: datetime | None = None,
) -> PruneReport:
    """Delete every job finished before ``now - older_than``, in batches, and its blobs; then
    the webhook deliveries that ended before the same cut-off (delivered or failed)."""
    jobs = blobs = errors = 0
    while True:
        pruned = await job_prune(conn, older_than=older_than, limit=batch, now=now)
        keys: set[str] = set()
        for job in pruned:
            keys |= {
                video_key(job.job_id),
                results_key(job.job_id),
                results_index_key(job.job_id),
            }
            keys |= {k for k in (job.input_key, job.output_key) if k}
        deleted, failed = await asyncio.to_thread(_delete_blobs, store, sorted(keys))
        jobs, blobs, errors = jobs + len(pruned), blobs + deleted, errors + failed
        if len(pruned) < batch:
            break
    deliveries = 0
    while True:  # the webhook log ages out with the jobs, whether or not its job still exists
        n = await delivery_prune(conn, older_than=older_than, limit=batch, now=now)
        deliveries += n
        if n < batch:
            return PruneReport(
                jobs_deleted=jobs,
                blobs_deleted=blobs,
                blob_errors=errors,
                deliveries_deleted=deliveries,
            )
