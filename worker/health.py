"""``vidjobs worker --check``: could a worker run here? For container health checks.

The default check is light (well under a second, ~60 MB): it runs every few seconds beside a
worker that holds its own models, so it must not load a second copy of them. It asks the
database, the blob store and the weights file. ``--check-models`` also loads the models, as a
job would, for a one-off diagnosis (seconds and ~1 GB). With a metrics port set it also asks the
worker running there whether it is ready: "loading models" (a failed check) until its models are
loaded and warm and it claims jobs.
"""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import TYPE_CHECKING

from vidjobs.db.errors import DatabaseUnavailable, SchemaNotReady
from vidjobs.db.health import check_worker_schema

if TYPE_CHECKING:
    from vidjobs.blobs import BlobSettings
    from vidjobs.db.settings import DatabaseSettings
    from vidjobs.worker.pipelines.yolo_ocr.settings import PipelineSettings
    from vidjobs.worker.settings import WorkerSettings

__all__ = ["CheckResult", "check_worker"]


@dataclass(frozen=True)
class CheckResult:
    """One check: what was checked, whether it passed, and one line for the operator."""

    name: str
    ok: bool
    detail: str

    def line(self) -> str:
        """``ok database: ...`` or ``FAILED database: ...`` on one line."""
        detail = " ".join(self.detail.split())
        return f"{'ok' if self.ok else 'FAILED'} {self.name}: {detail}"


async def check_worker(
    db: DatabaseSettings,
    blobs: BlobSettings | None = None,
    video: PipelineSettings | None = None,
    *,
    load_models: bool = False,
    worker: WorkerSettings | None = None,
) -> list[CheckResult]:
    """Run every check that applies, at once, and return their results in a fixed order.

    Always the database (reachable, the worker's tables and grants, every migration where
    yoyo's table is readable); with ``blobs`` the blob store; with ``video`` the detector
    weights file, and with ``load_models`` the detector and OCR engine themselves; with
    ``worker`` (and its metrics port set) whether the worker serving that port is ready.
    """
    checks = [_check_database(db)]
    if worker is not None and worker.metrics_port:
        checks.append(asyncio.to_thread(_check_ready, worker.metrics_host, worker.metrics_port))
    if blobs is not None:
        checks.append(asyncio.to_thread(_check_blobs, blobs))
    if video is not None:
        checks.append(asyncio.to_thread(_check_weights, video))
    results = list(await asyncio.gather(*checks))
    weights_ok = all(r.ok for r in results if r.name == "detector weights")
    if video is not None and load_models and weights_ok:
        results.append(await asyncio.to_thread(_check_models, video))
    return results


async def _check_database(db: DatabaseSettings) -> CheckResult:
    name = "database"
    try:
        schema = await check_worker_schema(db.url, db.connect_timeout_s)
    except DatabaseUnavailable as exc:
        return CheckResult(name, False, f"cannot connect (check DATABASE_URL): {exc}")
    except SchemaNotReady as exc:
        return CheckResult(name, False, f"{exc} (DATABASE_URL names the database)")
    if schema.migrations_applied is None:
        return CheckResult(name, True, "reachable; worker tables and grants present")
    return CheckResult(
        name, True, f"reachable; {schema.migrations_applied} migrations applied, none pending"
    )


def _check_blobs(blobs: BlobSettings) -> CheckResult:
    from vidjobs.blobs import BlobStoreError, open_blob_store

    name = f"blob store ({blobs.backend})"
    where = "VIDJOBS_BLOB_DIR" if blobs.backend == "local" else "VIDJOBS_S3_*"
    try:
        store = open_blob_store(blobs)
        try:
            store.ping()
        finally:
            store.close()
    except BlobStoreError as exc:
        return CheckResult(name, False, f"{exc} (check {where})")
    target = blobs.directory if blobs.backend == "local" else blobs.s3_bucket
    return CheckResult(name, True, f"reachable ({target})")


def _check_weights(video: PipelineSettings) -> CheckResult:
    from vidjobs.worker.pipelines.yolo_ocr.weights import check_weights

    found = check_weights(video.detector_weights)
    return CheckResult("detector weights", found.ok, found.detail)


def _check_models(video: PipelineSettings) -> CheckResult:
    name = "models"
    try:
        from vidjobs.worker.pipelines.yolo_ocr.analyzer import VideoAnalyzer

        VideoAnalyzer(video)
    except Exception as exc:  # whatever the loader raises, the operator needs its text
        return CheckResult(name, False, f"{type(exc).__name__}: {exc}")
    return CheckResult(name, True, f"detector and OCR engine loaded ({video.detector_weights})")


def _check_ready(host: str, port: int) -> CheckResult:
    """Read ``vidjobs_worker_ready`` from the worker's metrics port (nothing there: none runs)."""
    name = "worker"
    target = "127.0.0.1" if host in {"", "0.0.0.0", "::"} else host  # noqa: S104 - any -> local
    url = f"http://{target}:{port}/metrics"
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            text = response.read().decode(errors="replace")
    except (urllib.error.URLError, OSError):
        return CheckResult(name, True, f"no worker answers on {target}:{port} (none runs here)")
    ready = [ln for ln in text.splitlines() if ln.startswith("vidjobs_worker_ready ")]
    if not ready:
        return CheckResult(name, False, f"{url} answers but is not a vidjobs worker's metrics")
    if float(ready[0].split()[1]) < 1:
        return CheckResult(name, False, "loading models (not claiming jobs yet)")
    loads = []
    for ln in text.splitlines():
        if ln.startswith('vidjobs_worker_model_load_seconds{pipeline="'):
            labels, _, value = ln.rpartition(" ")
            pipeline = labels.split('"')[1]
            if pipeline != "noop":
                loads.append(f"{pipeline} {float(value):.1f}s")
    return CheckResult(
        name, True, "ready, models loaded" + (f" ({', '.join(loads)})" if loads else "")
    )
