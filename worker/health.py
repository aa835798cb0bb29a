"""``vidjobs worker --check``: can a worker run here? For container health checks."""

from __future__ import annotations

import asyncio
import logging

from db.errors import DatabaseUnavailable
from db.migrate import status as migration_status
from db.pool import DatabaseSettings, open_pool

__all__ = ["check_worker"]

log = logging.getLogger(__name__)


async def check_worker(db: DatabaseSettings) -> bool:
    """True when the database answers and is fully migrated; each failure says what to fix."""
    try:
        pool = await open_pool(db)
        await pool.close()
    except DatabaseUnavailable as exc:
        log.error("database: unreachable (check DATABASE_URL): %s", exc)
        return False
    try:
        pending = [
            mid for mid, applied in await asyncio.to_thread(migration_status, db.url) if not applied
        ]
    except Exception as exc:
        log.error("database: cannot read migration status: %s", exc)
        return False
    if pending:
        log.error(
            "database: migrations not applied (run `vidjobs db migrate`): %s", ", ".join(pending)
        )
        return False
    log.info("database: ok")
    return True
