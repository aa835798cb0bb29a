"""``/video/results/{id}/…``: a large results document read by pages and exported.

Every route reads the document's byte index (``schema.results_index``: a small sidecar blob the
worker writes beside the document) and then only the bytes of the elements it returns, with
ranged reads of the blob store; no route reads or decodes the whole document. A document
stored without an index (jobs finished before the index existed) gets one on its first paged
read: that one request reads the document whole, builds the index and stores it.

Cursors are opaque (base64 of a position in the document's list), valid with the same filters;
a malformed one is a 422 ``invalid-cursor``.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import csv
import io
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Annotated, Any

import anyio.to_thread
import msgspec
from litestar import Controller, get
from litestar.di import NamedDependency
from litestar.params import QueryParameter
from litestar.response import Stream
from psycopg import AsyncConnection

from vidjobs.api.openapi import ProblemOperation, problem_responses
from vidjobs.api.presenters import JobIdPath, describe_state, tenant_job
from vidjobs.api.problems import ApiError
from vidjobs.api.runtime import ApiRuntime
from vidjobs.blobs import BlobNotFound, BlobStore, results_index_key
from vidjobs.schema import JobState
from vidjobs.schema.api import ResultsPage
from vidjobs.schema.job import Job
from vidjobs.schema.results_index import ResultsIndex, build_index

__all__ = ["ResultsController", "load_index"]

#: Elements per page unless ``limit`` says otherwise, and the most one page may hold.
PAGE_DEFAULT = 100
PAGE_MAX = 1000
#: Frames read per ranged read while an export streams.
_EXPORT_CHUNK = 500

Limit = Annotated[int, QueryParameter(ge=1, le=PAGE_MAX, description="elements per page")]
Cursor = Annotated[
    str | None, QueryParameter(max_length=64, description="next_cursor of the previous page")
]
FromMs = Annotated[int, QueryParameter(ge=0, description="only elements at or after this time")]
ToMs = Annotated[int | None, QueryParameter(ge=0, description="only elements before this time")]

_EMPTY = ResultsIndex(size=0, schema_version=2, sample_fps=1.0, duration_ms=0, frames=())
_DECODE_INDEX = msgspec.json.Decoder(ResultsIndex)
_DECODE_ITEM = msgspec.json.Decoder(dict[str, Any])


def _cursor(kind: str, position: int) -> str:
    return base64.urlsafe_b64encode(f"{kind}:{position}".encode()).decode().rstrip("=")


def _position(kind: str, cursor: str | None, size: int) -> int:
    if cursor is None:
        return 0
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        name, _, number = raw.partition(":")
        position = int(number)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        position = -1
        name = ""
    if name != kind or not 0 <= position <= size:
        raise ApiError(
            422,
            "invalid-cursor",
            f"cursor {cursor!r} is not a {kind} cursor of this document; pass a next_cursor "
            "exactly as a previous page gave it (with the same filters)",
        )
    return position


def load_index(store: BlobStore, job: Job) -> ResultsIndex:
    """The document's index, built and stored on first use when the worker wrote none."""
    if job.output_key is None:
        return _EMPTY  # a pipeline that stores no document (noop): nothing to page
    key = results_index_key(job.job_id)
    try:
        return _DECODE_INDEX.decode(store.get_bytes(key))
    except BlobNotFound:
        pass
    index = build_index(store.get_bytes(job.output_key))
    store.put_bytes(key, msgspec.json.encode(index), content_type="application/json")
    return index


def _read(store: BlobStore, key: str, spans: Sequence[tuple[int, int]]) -> list[dict[str, Any]]:
    """Decode the elements at ``spans`` (offset, length), one ranged read per contiguous run."""
    out: list[dict[str, Any]] = []
    i = 0
    while i < len(spans):
        j = i + 1
        while j < len(spans) and spans[j][0] - (spans[j - 1][0] + spans[j - 1][1]) <= 2:
            j += 1  # the next element follows after a comma (and maybe a space)
        start = spans[i][0]
        end = spans[j - 1][0] + spans[j - 1][1]
        data = store.get_range(key, start, end - start)
        for offset, length in spans[i:j]:
            out.append(_DECODE_ITEM.decode(data[offset - start : offset - start + length]))
        i = j
    return out


async def _completed(conn: AsyncConnection[Any], job_id: str, tenant: str) -> Job:
    job = await tenant_job(conn, job_id, tenant)
    if job.state is not JobState.COMPLETED:
        raise ApiError(404, "results-not-ready", describe_state(job), job_status=job.state)
    return job


def _slice(candidates: Sequence[int], start: int, limit: int) -> tuple[Sequence[int], int | None]:
    """The page of element positions from ``start`` on, and where the next page starts."""
    i = bisect.bisect_left(candidates, start)
    page = candidates[i : i + limit]
    return page, (candidates[i + limit] if i + limit < len(candidates) else None)


def _ms(t: float) -> str:
    ms = max(0, round(t))
    return f"{ms // 3_600_000:02d}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d}.{ms % 1000:03d}"


def _cue_text(text: str) -> str:
    flat = " ".join(text.split()).replace("-->", "->")
    return flat.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class ResultsController(Controller):
    """Paged reads and exports of one completed job's results document."""

    path = "/video/results/{job_id:str}"
    tags = ["videos"]  # noqa: RUF012 - Litestar's declared class attribute
    security = [{"bearer": []}]  # noqa: RUF012

    @get(
        "/frames",
        operation_id="getResultFrames",
        summary="A page of the results' sampled frames, by time and cursor",
        operation_class=ProblemOperation,
        responses=problem_responses(401, 404, 422, 503),
    )
    async def frames(  # noqa: PLR0917 - Litestar injects each parameter by name
        self,
        job_id: JobIdPath,
        db_conn: NamedDependency[AsyncConnection[Any]],
        tenant: NamedDependency[str],
        rt: NamedDependency[ApiRuntime],
        from_ms: FromMs = 0,
        to_ms: ToMs = None,
        cursor: Cursor = None,
        limit: Limit = PAGE_DEFAULT,
    ) -> ResultsPage:
        """Frames with ``from_ms <= t_ms < to_ms`` in time order, ``limit`` a page."""
        job = await _completed(db_conn, job_id, tenant)
        index = await anyio.to_thread.run_sync(load_index, rt.store, job)
        times = [f.t_ms for f in index.frames]
        low = bisect.bisect_left(times, from_ms)
        high = len(times) if to_ms is None else bisect.bisect_left(times, to_ms)
        start = _position("frames", cursor, len(times))
        page, nxt = _slice(range(low, max(low, high)), start, limit)
        spans = [(index.frames[i].offset, index.frames[i].length) for i in page]
        items = await self._items(rt, job, spans)
        return ResultsPage(job_id=job.job_id, items=items, next_cursor=_next("frames", nxt))

    @get(
        "/tracks",
        operation_id="getResultTracks",
        summary="A page of the results' object tracks, by label and length",
        operation_class=ProblemOperation,
        responses=problem_responses(401, 404, 422, 503),
    )
    async def tracks(  # noqa: PLR0917 - Litestar injects each parameter by name
        self,
        job_id: JobIdPath,
        db_conn: NamedDependency[AsyncConnection[Any]],
        tenant: NamedDependency[str],
        rt: NamedDependency[ApiRuntime],
        label: Annotated[
            str | None, QueryParameter(max_length=200, description="only this label")
        ] = None,
        min_frames: Annotated[
            int, QueryParameter(ge=1, description="only tracks seen in this many frames")
        ] = 1,
        cursor: Cursor = None,
        limit: Limit = PAGE_DEFAULT,
    ) -> ResultsPage:
        """Tracks in ``track_id`` order (none for version 1 documents)."""
        job = await _completed(db_conn, job_id, tenant)
        index = await anyio.to_thread.run_sync(load_index, rt.store, job)
        chosen = [
            i
            for i, t in enumerate(index.tracks)
            if (label is None or t.label == label) and t.frames >= min_frames
        ]
        page, nxt = _slice(chosen, _position("tracks", cursor, len(index.tracks)), limit)
        spans = [(index.tracks[i].offset, index.tracks[i].length) for i in page]
        items = await self._items(rt, job, spans)
        return ResultsPage(job_id=job.job_id, items=items, next_cursor=_next("tracks", nxt))

    @get(
        "/text-events",
        operation_id="getResultTextEvents",
        summary="A page of the results' text events, by time",
        operation_class=ProblemOperation,
        responses=problem_responses(401, 404, 422, 503),
    )
    async def text_events(  # noqa: PLR0917 - Litestar injects each parameter by name
        self,
        job_id: JobIdPath,
        db_conn: NamedDependency[AsyncConnection[Any]],
        tenant: NamedDependency[str],
        rt: NamedDependency[ApiRuntime],
        from_ms: FromMs = 0,
        to_ms: ToMs = None,
        cursor: Cursor = None,
        limit: Limit = PAGE_DEFAULT,
    ) -> ResultsPage:
        """Events on screen at some time in ``[from_ms, to_ms)``, in ``event_id`` order."""
        job = await _completed(db_conn, job_id, tenant)
        index = await anyio.to_thread.run_sync(load_index, rt.store, job)
        chosen = [
            i
            for i, e in enumerate(index.text_events)
            if e.last_ms >= from_ms and (to_ms is None or e.first_ms < to_ms)
        ]
        events = index.text_events
        page, nxt = _slice(chosen, _position("text-events", cursor, len(events)), limit)
        spans = [(events[i].offset, events[i].length) for i in page]
        items = await self._items(rt, job, spans)
        return ResultsPage(job_id=job.job_id, items=items, next_cursor=_next("text-events", nxt))

    @get(
        "/text.vtt",
        operation_id="getResultTextVtt",
        summary="The text events as WebVTT subtitles",
        media_type="text/vtt",
        operation_class=ProblemOperation,
        responses=problem_responses(401, 404, 422, 503),
    )
    async def text_vtt(
        self,
        job_id: JobIdPath,
        db_conn: NamedDependency[AsyncConnection[Any]],
        tenant: NamedDependency[str],
        rt: NamedDependency[ApiRuntime],
    ) -> Stream:
        """One cue per text event, shown until the next sampled frame after its last read.

        Version 1 documents have no events: their ``summary.texts`` (each distinct string
        with its first and last sighting) become the cues.
        """
        job = await _completed(db_conn, job_id, tenant)
        index = await anyio.to_thread.run_sync(load_index, rt.store, job)
        key = job.output_key or ""
        step = 1000.0 / index.sample_fps if index.sample_fps > 0 else 1000.0

        def cue(first: float, last: float, text: str) -> str:
            end = last + step if index.duration_ms <= 0 else min(last + step, index.duration_ms)
            return f"{_ms(first)} --> {_ms(max(end, first + 1))}\n{_cue_text(text)}\n\n"

        async def body() -> AsyncIterator[str]:
            yield "WEBVTT\n\n"
            if index.text_events:
                for n in range(0, len(index.text_events), _EXPORT_CHUNK):
                    chunk = index.text_events[n : n + _EXPORT_CHUNK]
                    spans = [(e.offset, e.length) for e in chunk]
                    for e in await anyio.to_thread.run_sync(_read, rt.store, key, spans):
                        yield cue(e["first_ms"], e["last_ms"], str(e["text"]))
            elif index.summary[1]:
                summary = (await anyio.to_thread.run_sync(_read, rt.store, key, [index.summary]))[0]
                for t in summary.get("texts", []):
                    yield cue(t["first_seen_ms"], t["last_seen_ms"], str(t["text"]))

        return Stream(body(), media_type="text/vtt; charset=utf-8")

    @get(
        "/detections.csv",
        operation_id="getResultDetectionsCsv",
        summary="Every detection as CSV, one row each",
        media_type="text/csv",
        operation_class=ProblemOperation,
        responses=problem_responses(401, 404, 422, 503),
    )
    async def detections_csv(
        self,
        job_id: JobIdPath,
        db_conn: NamedDependency[AsyncConnection[Any]],
        tenant: NamedDependency[str],
        rt: NamedDependency[ApiRuntime],
    ) -> Stream:
        """``t_ms,frame_index,shot,track_id,label,class_id,confidence,x1,y1,x2,y2``."""
        job = await _completed(db_conn, job_id, tenant)
        index = await anyio.to_thread.run_sync(load_index, rt.store, job)
        header = ["t_ms", "frame_index", "shot", "track_id", "label", "class_id", "confidence"]

        def rows(frame: dict[str, Any]) -> list[list[Any]]:
            return [
                [
                    *(frame["t_ms"], frame["frame_index"], frame.get("shot", 0)),
                    *(d.get("track_id"), d["label"], d["class_id"], d["confidence"], *d["box"]),
                ]
                for d in frame["detections"]
            ]

        return Stream(
            self._frame_rows(rt, job, index, [*header, "x1", "y1", "x2", "y2"], rows),
            media_type="text/csv; charset=utf-8",
        )

    @get(
        "/tracks.mot.txt",
        operation_id="getResultTracksMot",
        summary="The tracks in MOTChallenge format",
        media_type="text/plain",
        operation_class=ProblemOperation,
        responses=problem_responses(401, 404, 422, 503),
    )
    async def tracks_mot(
        self,
        job_id: JobIdPath,
        db_conn: NamedDependency[AsyncConnection[Any]],
        tenant: NamedDependency[str],
        rt: NamedDependency[ApiRuntime],
    ) -> Stream:
        """``frame,id,bb_left,bb_top,bb_width,bb_height,conf,-1,-1,-1``, no header.

        ``frame`` is the video's own frame number, 1-based (``frame_index + 1``): only sampled
        frames have rows. Detections without a track (version 1 documents) are left out.
        """
        job = await _completed(db_conn, job_id, tenant)
        index = await anyio.to_thread.run_sync(load_index, rt.store, job)

        def rows(frame: dict[str, Any]) -> list[list[Any]]:
            out = []
            for d in frame["detections"]:
                if d.get("track_id") is None:
                    continue
                x1, y1, x2, y2 = d["box"]
                width, height = round(x2 - x1, 1), round(y2 - y1, 1)
                out.append([frame["frame_index"] + 1, d["track_id"], x1, y1, width, height])
                out[-1] += [d["confidence"], -1, -1, -1]
            return out

        return Stream(self._frame_rows(rt, job, index, None, rows), media_type="text/plain")

    async def _items(
        self, rt: ApiRuntime, job: Job, spans: list[tuple[int, int]]
    ) -> list[dict[str, Any]]:
        if not spans or job.output_key is None:
            return []
        return await anyio.to_thread.run_sync(_read, rt.store, job.output_key, spans)

    async def _frame_rows(
        self,
        rt: ApiRuntime,
        job: Job,
        index: ResultsIndex,
        header: list[str] | None,
        rows: Callable[[dict[str, Any]], list[list[Any]]],
    ) -> AsyncIterator[str]:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        if header is not None:
            writer.writerow(header)
        for n in range(0, len(index.frames), _EXPORT_CHUNK):
            spans = [(f.offset, f.length) for f in index.frames[n : n + _EXPORT_CHUNK]]
            for frame in await self._items(rt, job, spans):
                writer.writerows(rows(frame))
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
        if buffer.tell():
            yield buffer.getvalue()


def _next(kind: str, position: int | None) -> str | None:
    return None if position is None else _cursor(kind, position)
