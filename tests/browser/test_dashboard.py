"""The operator dashboard in a real browser: numbers against the database, boxes, cancel, a11y.

One stack (API with ``VIDJOBS_API_UI`` and ``VIDJOBS_API_UI_CANCEL``, a worker with the
fixture detector) and a queue made to hold still while the pages are read: a completed
``yolo_ocr`` job, a ``noop`` job sleeping in a worker, and 52 pending jobs not due for an hour
(more than one page of the jobs table).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from playwright.sync_api import Page

from tests.support import db
from tests.support.processes import Services, worker_args
from vidjobs.devstack.synth.video import make_sample_video

T = TypeVar("T")

pytestmark = [pytest.mark.acceptance, pytest.mark.ml, pytest.mark.browser]

_AXE = Path(__file__).with_name("axe.min.js")


def _off_loop(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a database helper in a thread: Playwright's sync API holds this thread's event loop."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(fn, *args, **kwargs).result()


def sql(url: str, query: str, *params: Any) -> list[tuple[Any, ...]]:
    """``tests.support.db.sql`` beside Playwright."""
    return _off_loop(db.sql, url, query, *params)


def insert_jobs(url: str, n: int, **kwargs: Any) -> list[uuid.UUID]:
    """``tests.support.db.insert_jobs`` beside Playwright."""
    return _off_loop(db.insert_jobs, url, n, **kwargs)


def _shoot(page: Page, folder: Path, name: str) -> None:
    path = folder / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    print(f"screenshot: {path}")


def _no_serious_violations(page: Page) -> None:
    """axe-core in the page: no serious or critical violation."""
    page.add_script_tag(path=str(_AXE))
    found: list[dict[str, Any]] = page.evaluate("async () => (await axe.run()).violations")
    bad = [
        f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']][:3]}"
        for v in found
        if v["impact"] in ("serious", "critical")
    ]
    assert not bad, bad


def _wait_state(url: str, job_id: str, want: str, within: float = 240) -> None:
    deadline = time.monotonic() + within
    while state := sql(url, "SELECT state::text FROM vidjobs.jobs WHERE job_id = %s", job_id):
        if state[0][0] == want:
            return
        assert state[0][0] in ("pending", "running"), f"job {job_id} is {state[0][0]}"
        assert time.monotonic() < deadline, f"job {job_id} still {state[0][0]}"
        time.sleep(0.3)
    raise AssertionError(f"no job {job_id}")


@pytest.mark.timeout(420)
def test_dashboard_pages_results_and_cancel(
    live: Services, database_url: str, page: Page, screenshots: Path, tmp_path: Path
) -> None:
    live.start_api(VIDJOBS_API_UI="1", VIDJOBS_API_UI_CANCEL="1")
    base = live.base_url
    later = insert_jobs(database_url, 52, tenant="gamma")
    sql(
        database_url,
        "UPDATE vidjobs.jobs SET run_after = now() + interval '1 hour' WHERE job_id = ANY(%s)",
        later,
    )
    worker = live.start_worker(*worker_args(30.0), "--worker-id", "ui-worker")
    key = live.cli("keys", "create", "--tenant", "acme", "--name", "ui").stdout.strip()
    video = tmp_path / "clip.mp4"
    make_sample_video(video, seconds=2.0, seed=7)
    with video.open("rb") as f:
        r = httpx.post(
            f"{base}/video/submit",
            headers={"Authorization": f"Bearer {key}"},
            data={"pipeline": "yolo_ocr", "sample_fps": "2"},
            files={"file": ("clip.mp4", f, "video/mp4")},
            timeout=60,
        )
    assert r.status_code == 202, r.text
    done = r.json()["job_id"]
    _wait_state(database_url, done, "completed")
    (sleeper,) = map(str, insert_jobs(database_url, 1, tenant="beta", params={"sleep_s": 300}))
    _wait_state(database_url, sleeper, "running", within=60)
    assert worker.alive()

    # -- overview: every number as the database's views say ---------------------------------
    page.goto(f"{base}/ui/")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "vidjobs"  # skip-free nav
    (view,) = sql(
        database_url,
        "SELECT pending, pending_due, running, leases_expired, completed, failed, cancelled "
        "FROM vidjobs.queue_overview",
    )
    names = ["pending", "pending_due", "running", "leases_expired", "completed", "failed"]
    for name, n in zip([*names, "cancelled"], view, strict=True):
        assert page.locator(f".card[data-state={name}] dd").inner_text() == str(n), name
    assert view[:5] == (52, 0, 1, 0, 1)
    for tenant, state, n in sql(
        database_url, "SELECT tenant, state::text, count(*) FROM vidjobs.jobs GROUP BY 1, 2"
    ):
        cell = page.locator(f"#tenants tr[data-tenant={tenant}] td[data-state={state}]")
        assert cell.inner_text() == str(n), (tenant, state)
    workers = page.locator("#workers tbody tr")
    assert workers.count() == 1
    assert "ui-worker" in workers.inner_text()
    assert sleeper in workers.inner_text()
    (minute_done,) = sql(database_url, "SELECT sum(completed) FROM vidjobs.throughput_per_minute")[
        0
    ]
    shown = page.locator("#throughput tbody tr td:nth-child(4)").all_inner_texts()
    assert sum(int(x) for x in shown) == minute_done == 1
    _no_serious_violations(page)
    _shoot(page, screenshots, "overview")

    # -- jobs: two pages of 50 hold every job once; filters -----------------------------------
    page.goto(f"{base}/ui/jobs")
    seen = page.locator("#jobs tbody tr").evaluate_all("rs => rs.map(r => r.dataset.job)")
    assert len(seen) == 50
    _no_serious_violations(page)
    _shoot(page, screenshots, "jobs")
    page.click("#next-page")
    seen += page.locator("#jobs tbody tr").evaluate_all("rs => rs.map(r => r.dataset.job)")
    every = {str(r[0]) for r in sql(database_url, "SELECT job_id FROM vidjobs.jobs")}
    assert len(seen) == len(every) == 54
    assert set(seen) == every
    page.goto(f"{base}/ui/jobs")
    page.select_option("select[name=status]", "running")
    page.click("button[type=submit]")
    assert page.locator("#jobs tbody tr").evaluate_all("rs => rs.map(r => r.dataset.job)") == [
        sleeper
    ]
    page.goto(f"{base}/ui/jobs?tenant=acme&pipeline=yolo_ocr")
    assert page.locator("#jobs tbody tr").count() == 1

    # -- results viewer: one box drawn per detection of each frame ----------------------------
    results = httpx.get(
        f"{base}/video/results/{done}", headers={"Authorization": f"Bearer {key}"}, timeout=30
    ).json()["results"]
    page.goto(f"{base}/ui/jobs/{done}")
    figures = page.locator("figure.frame")
    assert figures.count() == len(results["frames"]) > 0
    assert sum(len(f["detections"]) for f in results["frames"]) > 0
    for i, frame in enumerate(results["frames"]):
        fig = figures.nth(i)
        assert fig.get_attribute("data-t-ms") == str(frame["t_ms"])
        assert fig.locator("rect.box").count() == len(frame["detections"])
    page.wait_for_function(
        "() => [...document.querySelectorAll('figure.frame img')].every("
        "i => i.complete && i.naturalWidth > 0)"
    )
    width = results["video"]["width"]
    assert page.evaluate("document.querySelector('figure.frame img').naturalWidth") == width
    texts = results["summary"]["texts"]
    assert page.locator("#text-timeline rect").count() == len(texts)
    assert page.locator("#events li").count() == int(
        sql(database_url, "SELECT count(*) FROM vidjobs.job_events WHERE job_id = %s", done)[0][0]
    )
    assert page.locator("#cancel").count() == 0  # a completed job has nothing to cancel
    _no_serious_violations(page)
    _shoot(page, screenshots, "results")

    # -- cancel the running job from its page --------------------------------------------------
    page.goto(f"{base}/ui/jobs/{sleeper}")
    assert page.locator("#job-state").inner_text() == "running"
    _no_serious_violations(page)
    _shoot(page, screenshots, "job-running")
    page.click("#cancel")
    page.wait_for_url(f"{base}/ui/jobs/{sleeper}")
    assert page.locator("#job-state").inner_text() == "cancelled"
    row = sql(
        database_url,
        "SELECT state::text, finished_at IS NOT NULL FROM vidjobs.jobs WHERE job_id = %s",
        sleeper,
    )
    assert row == [("cancelled", True)]
    assert "running → cancelled" in page.locator("#events li").last.inner_text()
    _shoot(page, screenshots, "job-cancelled")
