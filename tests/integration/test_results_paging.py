"""Large results read by pages and exported: real Postgres, real S3, ranged reads only.

The document is a synthetic two-hour result (``long_results_document``: 7,200 frames, 480
tracks, 720 text events, ~3 MB) stored as a worker stores it; no video is analysed.
"""

from __future__ import annotations

import csv
import dataclasses
import io
from collections.abc import Iterator
from typing import Any

import msgspec
import pytest
import webvtt
from litestar import Litestar
from litestar.testing import TestClient

from tests.support.db import run_db
from tests.support.keys import Keys
from tests.support.media import mp4_bytes
from tests.support.stand_in_worker import Claimed, stand_in_worker_claims
from vidjobs.api.runtime import runtime
from vidjobs.api.settings import ApiSettings
from vidjobs.blobs import BlobSettings, BlobStore, open_blob_store, results_index_key, results_key
from vidjobs.db.leases import job_complete
from vidjobs.devstack.synth.long_results import long_results_document
from vidjobs.schema.results_index import build_index

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def long_doc() -> bytes:
    return long_results_document(hours=2.0)


class _CountingStore(BlobStore):
    """The API's real store, counting the bytes each read returns (what a page costs)."""

    def __init__(self, inner: BlobStore) -> None:
        self.inner = inner
        self.read_bytes = 0

    def ensure_ready(self) -> None:
        self.inner.ensure_ready()

    def ping(self) -> None:
        self.inner.ping()

    def _write(self, key: str, source: Any, content_type: str) -> None:
        self.inner._write(key, source, content_type)

    def get_to_tempfile(self, key: str, **kw: Any) -> Any:
        return self.inner.get_to_tempfile(key, **kw)

    def get_bytes(self, key: str) -> bytes:
        data = self.inner.get_bytes(key)
        self.read_bytes += len(data)
        return data

    def get_range(self, key: str, offset: int, length: int) -> bytes:
        data = self.inner.get_range(key, offset, length)
        self.read_bytes += len(data)
        return data

    def size(self, key: str) -> int:
        return self.inner.size(key)

    def readable_location(self, key: str) -> str:
        return self.inner.readable_location(key)

    def exists(self, key: str) -> bool:
        return self.inner.exists(key)

    def delete(self, key: str) -> None:
        self.inner.delete(key)

    def close(self) -> None:
        self.inner.close()


def _completed_job(
    client: TestClient[Litestar],
    key: str,
    database_url: str,
    s3: BlobSettings,
    data: bytes,
    *,
    with_index: bool,
) -> str:
    resp = client.post(
        "/video/submit",
        headers=Keys.auth(key),
        data={"pipeline": "noop"},
        files={"file": ("a.mp4", mp4_bytes(), "video/mp4")},
    )
    assert resp.status_code == 202, resp.text
    claimed: Claimed = stand_in_worker_claims(database_url, frames_done=1, frames_total=1)
    store = open_blob_store(s3)
    try:
        out = results_key(claimed.job_id)
        store.put_bytes(out, data, content_type="application/json")
        if with_index:  # as the worker does; without, the API builds it on first read
            index = msgspec.json.encode(build_index(data))
            store.put_bytes(results_index_key(claimed.job_id), index)
    finally:
        store.close()
    run_db(
        database_url,
        lambda c: job_complete(c, claimed.job_id, claimed.lease_token, output_key=out),
    )
    return str(claimed.job_id)


def _pages(client: TestClient[Litestar], key: str, url: str, **params: Any) -> Iterator[Any]:
    cursor = None
    while True:
        query = dict(params) | ({"cursor": cursor} if cursor else {})
        resp = client.get(url, params=query, headers=Keys.auth(key))
        assert resp.status_code == 200, resp.text
        body = resp.json()
        yield body
        cursor = body["next_cursor"]
        if cursor is None:
            return


@pytest.fixture
def counting(client: TestClient[Litestar]) -> Iterator[_CountingStore]:
    """The app's runtime with its blob store wrapped, so a test sees the bytes read."""
    original = runtime(client.app.state)
    wrapper = _CountingStore(original.store)
    dataclasses.replace(original, store=wrapper).install(client.app.state)
    yield wrapper
    original.install(client.app.state)


@pytest.mark.parametrize("with_index", [True, False])
def test_two_hours_of_frames_paged_by_cursor_each_once_in_order_reading_only_ranges(
    client: TestClient[Litestar],
    keys: Keys,
    database_url: str,
    s3_settings: BlobSettings,
    long_doc: bytes,
    counting: _CountingStore,
    with_index: bool,
) -> None:
    job = _completed_job(
        client, keys.acme, database_url, s3_settings, long_doc, with_index=with_index
    )
    url = f"/video/results/{job}/frames"
    first = client.get(url, params={"limit": 1000}, headers=Keys.auth(keys.acme))
    assert first.status_code == 200
    counting.read_bytes = 0  # the index exists now (stored by the worker or on first read)
    seen = [f["t_ms"] for page in _pages(client, keys.acme, url, limit=1000) for f in page["items"]]
    assert seen == [s * 1000 for s in range(7200)]
    # Eight pages read about the document once in ranges, plus the ~190 kB index per page:
    assert counting.read_bytes < len(long_doc) + 8 * 250_000
    counting.read_bytes = 0
    page = client.get(url, params={"from_ms": 3_600_000, "limit": 10}, headers=Keys.auth(keys.acme))
    items = page.json()["items"]
    assert [f["t_ms"] for f in items] == list(range(3_600_000, 3_610_000, 1000))
    assert items[0]["detections"][0]["track_id"] is not None
    assert counting.read_bytes < 250_000 + 10 * 2_000  # the index and ten frames, not 3 MB
    window = list(_pages(client, keys.acme, url, from_ms=60_000, to_ms=65_500, limit=2))
    assert [f["t_ms"] for p in window for f in p["items"]] == [
        60_000,
        61_000,
        62_000,
        63_000,
        64_000,
        65_000,
    ]


def test_tracks_and_text_events_filter_and_page(
    client: TestClient[Litestar],
    keys: Keys,
    database_url: str,
    s3_settings: BlobSettings,
    long_doc: bytes,
) -> None:
    job = _completed_job(client, keys.acme, database_url, s3_settings, long_doc, with_index=True)
    tracks = [
        t
        for p in _pages(client, keys.acme, f"/video/results/{job}/tracks", label="star", limit=50)
        for t in p["items"]
    ]
    assert len(tracks) == 120
    assert {t["label"] for t in tracks} == {"star"}
    assert [t["track_id"] for t in tracks] == sorted(t["track_id"] for t in tracks)
    none = client.get(
        f"/video/results/{job}/tracks", params={"min_frames": 31}, headers=Keys.auth(keys.acme)
    )
    assert none.json() == {"job_id": job, "items": [], "next_cursor": None}
    events = [
        e
        for p in _pages(
            client, keys.acme, f"/video/results/{job}/text-events", from_ms=100_000, to_ms=120_000
        )
        for e in p["items"]
    ]
    assert [e["text"] for e in events] == ["CAPTION 11", "CAPTION 12"]


def test_exports_parse_with_real_parsers(
    client: TestClient[Litestar],
    keys: Keys,
    database_url: str,
    s3_settings: BlobSettings,
    long_doc: bytes,
) -> None:
    job = _completed_job(client, keys.acme, database_url, s3_settings, long_doc, with_index=True)
    base = f"/video/results/{job}"
    vtt = client.get(f"{base}/text.vtt", headers=Keys.auth(keys.acme))
    assert vtt.status_code == 200
    assert vtt.headers["content-type"].startswith("text/vtt")
    captions = webvtt.from_string(vtt.text)
    assert len(captions) == 720
    assert (captions[0].start, captions[0].end, captions[0].text) == (
        "00:00:00.000",
        "00:00:10.000",
        "CAPTION 1",
    )
    assert captions[-1].start == "01:59:50.000"
    detections = client.get(f"{base}/detections.csv", headers=Keys.auth(keys.acme))
    rows = list(csv.DictReader(io.StringIO(detections.text)))
    assert len(rows) == 7200 * 2
    assert rows[0] == {
        "t_ms": "0",
        "frame_index": "0",
        "shot": "0",
        "track_id": "1",
        "label": "circle",
        "class_id": "0",
        "confidence": "0.9",
        "x1": "40.0",
        "y1": "60.0",
        "x2": "100.0",
        "y2": "120.0",
    }
    mot = client.get(f"{base}/tracks.mot.txt", headers=Keys.auth(keys.acme))
    lines = [line.split(",") for line in mot.text.splitlines()]
    assert len(lines) == 7200 * 2
    assert all(len(cols) == 10 for cols in lines)
    frame, track, left, top, width, height, conf, *rest = lines[1]
    assert (frame, track, left, top, width, height, conf) == (
        "1",
        "2",
        "340.0",
        "60.0",
        "60.0",
        "60.0",
        "0.9",
    )
    assert rest == ["-1", "-1", "-1"]


def test_bad_cursor_other_tenant_and_unfinished_jobs_are_clear_problems(
    client: TestClient[Litestar],
    keys: Keys,
    database_url: str,
    s3_settings: BlobSettings,
    long_doc: bytes,
) -> None:
    job = _completed_job(client, keys.acme, database_url, s3_settings, long_doc, with_index=True)
    for cursor in ("garbage!", "dHJhY2tzOjE", "ZnJhbWVzOjk5OTk5"):  # junk, a tracks cursor, too far
        resp = client.get(
            f"/video/results/{job}/frames", params={"cursor": cursor}, headers=Keys.auth(keys.acme)
        )
        assert resp.status_code == 422, resp.text
        assert resp.json()["type"].endswith("invalid-cursor")
    other = client.get(f"/video/results/{job}/frames", headers=Keys.auth(keys.other))
    assert other.status_code == 404
    resp = client.post(
        "/video/submit",
        headers=Keys.auth(keys.acme),
        data={"pipeline": "noop"},
        files={"file": ("a.mp4", mp4_bytes(), "video/mp4")},
    )
    pending = resp.json()["job_id"]
    for route in ("frames", "tracks", "text-events", "text.vtt", "detections.csv"):
        answer = client.get(f"/video/results/{pending}/{route}", headers=Keys.auth(keys.acme))
        assert answer.status_code == 404
        assert answer.json()["type"].endswith("results-not-ready")


def test_a_version_1_document_is_served_by_every_route(
    client: TestClient[Litestar], keys: Keys, database_url: str, s3_settings: BlobSettings
) -> None:
    v1 = {
        "schema_version": 1,
        "params": {"sample_fps": 1.0, "min_confidence": 0.25},
        "video": {"duration_ms": 3000},
        "frames": [
            {"frame_index": 0, "t_ms": 0, "detections": [], "text": []},
            {
                "frame_index": 25,
                "t_ms": 1000,
                "detections": [
                    {"label": "car", "class_id": 2, "confidence": 0.8, "box": [1, 2, 3, 4]}
                ],
                "text": [],
            },
        ],
        "summary": {
            "frames_analysed": 2,
            "label_counts": {"car": 1},
            "texts": [{"text": "EXIT", "first_seen_ms": 0, "last_seen_ms": 1000, "frames": 2}],
        },
    }
    job = _completed_job(
        client, keys.acme, database_url, s3_settings, msgspec.json.encode(v1), with_index=False
    )
    base = f"/video/results/{job}"
    auth = Keys.auth(keys.acme)
    assert [f["t_ms"] for f in client.get(f"{base}/frames", headers=auth).json()["items"]] == [
        0,
        1000,
    ]
    assert client.get(f"{base}/tracks", headers=auth).json()["items"] == []
    assert client.get(f"{base}/text-events", headers=auth).json()["items"] == []
    cues = webvtt.from_string(client.get(f"{base}/text.vtt", headers=auth).text)
    assert [(c.start, c.end, c.text) for c in cues] == [("00:00:00.000", "00:00:02.000", "EXIT")]
    rows = list(
        csv.DictReader(io.StringIO(client.get(f"{base}/detections.csv", headers=auth).text))
    )
    assert [(r["label"], r["track_id"]) for r in rows] == [("car", "")]
    assert client.get(f"{base}/tracks.mot.txt", headers=auth).text == ""
    assert client.get(f"/video/results/{job}", headers=auth).json()["results"] == v1


def test_the_whole_document_route_refuses_a_document_over_its_limit(
    api_settings: ApiSettings,
    keys: Keys,
    database_url: str,
    s3_settings: BlobSettings,
    long_doc: bytes,
) -> None:
    from vidjobs.api.app import create_app

    small = api_settings.model_copy(update={"results_inline_max_bytes": 1_000_000})
    with TestClient(app=create_app(small)) as client:
        job = _completed_job(
            client, keys.acme, database_url, s3_settings, long_doc, with_index=True
        )
        resp = client.get(f"/video/results/{job}", headers=Keys.auth(keys.acme))
        assert resp.status_code == 422
        body = resp.json()
        assert body["type"].endswith("results-too-large")
        assert f"/video/results/{job}/frames" in body["detail"]
