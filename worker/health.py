"""``vidjobs worker --check``: could a worker run here? For container health checks."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from db.errors import DatabaseUnavailable
from db.migrate import status as migration_status
from db.pool import DatabaseSettings, open_pool

if TYPE_CHECKING:
    from db.blobs import BlobSettings
    from worker.pipeline import PipelineSettings

__all__ = ["check_worker"]

log = logging.getLogger(__name__)


async def check_worker(
    db: DatabaseSettings,
    blobs: BlobSettings | None = None,
    video: PipelineSettings | None = None,
) -> bool:
    """True when everything a worker needs answers; each failure is logged with what to fix.

    Checks the database (reachable, every migration applied), then, when given, the blob
    store (reachable, bucket or directory present) and the models (loadable).
    """
    checks = [_check_database(db)]
    if blobs is not None:
        checks.append(asyncio.to_thread(_check_blobs, blobs))
    if video is not None:
        checks.append(asyncio.to_thread(_check_models, video))
    results = await asyncio.gather(*checks)
    return all(results)


async def _check_database(db: DatabaseSettings) -> bool:
    try:
        pool = await open_pool(db)
        await pool.close()
    except DatabaseUnavailable as exc:
        log.error("database: unreachable (check DATABASE_URL): %s", exc)
        return False
    try:
        applied = await asyncio.to_thread(migration_status, db.url)
    except Exception as exc:
        log.error("database: cannot read the migration status: %s", exc)
        return False
    pending = [mid for mid, done in applied if not done]
    if pending:
        log.error("database: migrations not applied (run `vidjobs db migrate`): %s", pending)
        return False
    log.info("database: ok")
    return True


def _check_blobs(blobs: BlobSettings) -> bool:
    from db.blobs import BlobStoreError, open_blob_store

    store = open_blob_store(blobs)
    try:
        store.ping()
    except BlobStoreError as exc:
        log.error("blob store (%s): %s (check VIDJOBS_BLOB_* / VIDJOBS_S3_*)", blobs.backend, exc)
        return False
    finally:
        store.close()
    log.info("blob store (%s): ok", blobs.backend)
    return True


def _check_models(video: PipelineSettings) -> bool:
    try:
        from worker.pipeline import VideoAnalyzer

        VideoAnalyzer(video)
    except Exception as exc:
        log.error("models: %s: %s", type(exc).__name__, exc)
        return False
    log.info("models: ok (%s)", video.detector_weights)
    return True
