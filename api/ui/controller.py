"""``/ui``: the operator dashboard's pages, its frame endpoint and its one write (cancel).

Off unless ``VIDJOBS_API_UI`` (it shows every tenant's jobs without an API key, so it belongs
where only operators reach the API); cancel also needs ``VIDJOBS_API_UI_CANCEL`` and a
same-origin POST (its ``Origin`` or ``Referer`` names this host), so another site cannot make
an operator's browser cancel a job. Pages are Jinja templates rendered here; the results viewer
draws boxes as SVG over the frame image, no script needed.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

import anyio.to_thread
import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.exceptions import NotFoundException, PermissionDeniedException
from litestar.params import QueryParameter
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.response import Redirect, Template
from litestar.template.config import TemplateConfig
from psycopg import AsyncConnection

from vidjobs.api.presenters import JobIdPath
from vidjobs.api.runtime import ApiRuntime
from vidjobs.api.ui.frames import OPENCV_MISSING, FrameCache, FrameUnavailable
from vidjobs.db.errors import InvalidCursor
from vidjobs.db.jobs import job_cancel, job_event_list, job_get
from vidjobs.db.ui import ui_job_list, ui_overview
from vidjobs.schema import JobState

__all__ = ["FRAMES_STATE_KEY", "UI_STATIC_DIR", "UiController", "ui_template_config"]

FRAMES_STATE_KEY = "vidjobs_ui_frames"
_HERE = Path(__file__).parent
UI_STATIC_DIR = _HERE / "static"
_MAX_FRAMES_SHOWN = 24
_Query = Annotated[str, QueryParameter()]


def ui_template_config() -> TemplateConfig[JinjaTemplateEngine]:
    """The dashboard's Jinja templates (autoescaped)."""
    return TemplateConfig(directory=_HERE / "templates", engine=JinjaTemplateEngine)


def _frames(state: State) -> FrameCache:
    cache = state[FRAMES_STATE_KEY]
    assert isinstance(cache, FrameCache)
    return cache


def _same_origin(request: Request[Any, Any, Any]) -> bool:
    source = request.headers.get("origin") or request.headers.get("referer") or ""
    return bool(source) and urlsplit(source).netloc == request.headers.get("host", "")


def _parse_job_id(job_id: str) -> uuid.UUID:
    try:
        return uuid.UUID(job_id)
    except ValueError as exc:
        raise NotFoundException(f"no job {job_id!r}") from exc


class UiController(Controller):
    """The dashboard's routes (left out of the OpenAPI document: they are pages, not API)."""

    path = "/ui"
    include_in_schema = False
    dependencies = {"frames": Provide(_frames, sync_to_thread=False)}  # noqa: RUF012

    @get("/", operation_id="uiOverview")
    async def overview(self, db_conn: NamedDependency[AsyncConnection[Any]]) -> Template:
        """Counts by state and tenant, the oldest pending wait, throughput, live workers."""
        view = await ui_overview(db_conn)
        return Template("overview.html", context={"o": view, "states": list(JobState)})

    @get("/jobs", operation_id="uiJobs")
    async def jobs(
        self,
        db_conn: NamedDependency[AsyncConnection[Any]],
        status: _Query = "",
        tenant_name: Annotated[str, QueryParameter(name="tenant")] = "",
        pipeline: _Query = "",
        cursor: _Query = "",
    ) -> Template:
        """Every tenant's jobs, newest first, 50 a page, filtered by state (``status``, as in
        ``GET /jobs``), tenant and pipeline."""
        chosen = JobState(status) if status in {s.value for s in JobState} else None
        try:
            page = await ui_job_list(
                db_conn, state=chosen, tenant=tenant_name, pipeline=pipeline, cursor=cursor or None
            )
        except InvalidCursor as exc:
            raise NotFoundException(str(exc)) from exc
        filters = {"status": status, "tenant": tenant_name, "pipeline": pipeline}
        return Template(
            "jobs.html",
            context={"page": page, "filters": filters, "states": list(JobState)},
        )

    @get("/jobs/{job_id:str}", operation_id="uiJob")
    async def job(
        self,
        job_id: JobIdPath,
        db_conn: NamedDependency[AsyncConnection[Any]],
        rt: NamedDependency[ApiRuntime],
    ) -> Template:
        """One job: its fields, error, attempts, event timeline and (completed) results."""
        job = await job_get(db_conn, _parse_job_id(job_id))
        if job is None:
            raise NotFoundException(f"no job {job_id}")
        events = await job_event_list(db_conn, job.job_id)
        results: dict[str, Any] | None = None
        if job.state is JobState.COMPLETED and job.output_key is not None:
            data = await anyio.to_thread.run_sync(rt.store.get_bytes, job.output_key)
            results = msgspec.json.decode(data, type=dict[str, Any])
        frames = (results or {}).get("frames", [])
        return Template(
            "job.html",
            context={
                "job": job,
                "events": events,
                "results": results,
                "frames": frames[:_MAX_FRAMES_SHOWN],
                "frames_total": len(frames),
                "can_cancel": rt.settings.ui_cancel and not job.is_terminal,
                "opencv_missing": OPENCV_MISSING,
            },
        )

    @get("/jobs/{job_id:str}/frame", operation_id="uiJobFrame", media_type="image/jpeg")
    async def frame(
        self,
        job_id: JobIdPath,
        t_ms: Annotated[int, QueryParameter(ge=0, description="where in the video, in ms")],
        db_conn: NamedDependency[AsyncConnection[Any]],
        frames: NamedDependency[FrameCache],
    ) -> Response[bytes]:
        """The JPEG of the stored video's frame at ``t_ms`` (404 if it cannot be decoded)."""
        job = await job_get(db_conn, _parse_job_id(job_id))
        if job is None or job.input_key is None or OPENCV_MISSING:
            raise NotFoundException(OPENCV_MISSING or f"job {job_id} has no stored video")
        try:
            jpeg = await frames.frame(job.job_id, job.input_key, max(t_ms, 0))
        except FrameUnavailable as exc:
            raise NotFoundException(str(exc)) from exc
        return Response(
            jpeg, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"}
        )

    @post("/jobs/{job_id:str}/cancel", operation_id="uiJobCancel", status_code=303)
    async def cancel(
        self,
        job_id: JobIdPath,
        request: Request[Any, Any, Any],
        db_conn: NamedDependency[AsyncConnection[Any]],
        rt: NamedDependency[ApiRuntime],
    ) -> Redirect:
        """Cancel a pending or running job, then show its page again (303)."""
        if not rt.settings.ui_cancel:
            raise PermissionDeniedException("the dashboard is read-only (VIDJOBS_API_UI_CANCEL)")
        if not _same_origin(request):
            raise PermissionDeniedException("cancel only from the dashboard's own pages")
        job = await job_cancel(db_conn, _parse_job_id(job_id))
        if job is None:
            raise NotFoundException(f"no job {job_id}")
        return Redirect(f"/ui/jobs/{job.job_id}", status_code=303)
