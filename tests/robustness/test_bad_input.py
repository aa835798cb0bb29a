"""Malformed videos through the real API and a real worker: refused or failed, never fatal.

Every file of ``worker.synth.corpus`` is uploaded to ``vidjobs api``; a ``vidjobs worker``
process (concurrency 1) works through the accepted ones. Each must be refused at submit with a
4xx problem, or end as a failed job whose error is kind ``invalid_video`` and a sentence (no
traceback), after one attempt; only entries marked ``may_complete`` (damage a decoder conceals) may
complete instead. The worker is the same process (same PID) from first to last, it never logged
a traceback, and a good video submitted afterwards completes with results.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest

from tests.support.db import sql
from tests.support.keys import create_key
from tests.support.processes import Services, worker_args
from vidjobs.devstack.synth.corpus import BadInput, build_corpus
from vidjobs.devstack.synth.video import make_sample_video

pytestmark = [pytest.mark.integration, pytest.mark.acceptance, pytest.mark.ml]

TERMINAL = frozenset({"completed", "failed", "cancelled"})
_TRACEBACK_MARKS = ("Traceback (most recent call last)", 'File "/', "\n  File ")


def _submit(client: httpx.Client, key: str, name: str, data: bytes) -> httpx.Response:
    return client.post(
        "/video/submit",
        headers={"Authorization": f"Bearer {key}"},
        data={"sample_fps": "5"},  # samples across the whole 1 s file
        files={"file": (f"{name}.mp4", data, "video/mp4")},
    )


def _readable(text: str) -> bool:
    return bool(text.strip()) and not any(mark in text for mark in _TRACEBACK_MARKS)


def _states(url: str, ids: list[str]) -> dict[str, str]:
    rows = sql(
        url, "SELECT job_id::text, state::text FROM vidjobs.jobs WHERE job_id::text = ANY(%s)", ids
    )
    return dict(rows)


@pytest.mark.timeout(600)
def test_every_malformed_file_is_refused_or_fails_readably(live: Services, tmp_path: Path) -> None:
    corpus = build_corpus(tmp_path / "corpus")
    assert len(corpus) >= 50
    assert sum(not e.may_complete for e in corpus) >= 50
    _, key = create_key(live.database_url, "fuzz")
    live.start_api()
    worker = live.start_worker(*worker_args(worker_id="bad-input-worker", concurrency=1))
    worker_pid = worker.pid

    refused: dict[str, int] = {}
    accepted: dict[str, BadInput] = {}
    with httpx.Client(base_url=live.base_url, timeout=60) as client:
        for entry in corpus:
            resp = _submit(client, key, entry.name, entry.data)
            assert resp.status_code < 500, f"{entry.name}: {resp.status_code} {resp.text}"
            if resp.status_code >= 400:
                problem = resp.json()
                assert resp.headers["content-type"].startswith("application/problem+json")
                assert problem["status"] == resp.status_code
                assert _readable(problem["detail"]), f"{entry.name}: {problem}"
                refused[entry.name] = resp.status_code
            else:
                assert resp.status_code == 202, f"{entry.name}: {resp.text}"
                accepted[resp.json()["job_id"]] = entry

        ids = list(accepted)
        t0 = time.monotonic()
        live.processes.wait_for(
            lambda: set(_states(live.database_url, ids).values()) <= TERMINAL,
            300,
            "every accepted malformed upload reached a final state",
            every=0.5,
        )
        drain_s = time.monotonic() - t0
        outcomes: dict[str, str] = {}
        for job_id, entry in accepted.items():
            body = client.get(
                f"/video/status/{job_id}", headers={"Authorization": f"Bearer {key}"}
            ).json()
            outcomes[entry.name] = body["status"]
            if body["status"] == "completed":
                assert entry.may_complete, f"{entry.name} ({entry.description}) completed"
                got = client.get(
                    f"/video/results/{job_id}", headers={"Authorization": f"Bearer {key}"}
                )
                assert got.status_code == 200, f"{entry.name}: {got.text}"
                continue
            assert body["status"] == "failed", f"{entry.name}: {body}"
            error = body["error"]
            assert error is not None, f"{entry.name}: failed without an error: {body}"
            assert error["kind"] == "invalid_video", f"{entry.name}: {error}"
            assert _readable(error["message"]), f"{entry.name}: {error}"
            assert body["attempts"] == 1, f"{entry.name}: a bad video was retried: {body}"

        # Refused uploads left nothing behind: one video blob per accepted job, nothing else.
        results = ("_results.json", "_results.index.json")
        videos = [k for k in live.stored_keys() if not k.endswith(results)]
        assert sorted(videos) == sorted(f"video_jobs/{j}.mp4" for j in accepted)

        # The worker never died and never logged a traceback.
        assert worker.alive(), live.processes.logs("worker")
        assert worker.pid == worker_pid
        assert "Traceback" not in worker.text(), worker.text()[-4000:]
        holders = sql(
            live.database_url,
            "SELECT DISTINCT actor FROM vidjobs.job_events WHERE to_state = 'running'",
        )
        assert holders == [("bad-input-worker",)]

        # And a good video afterwards completes, on the same worker.
        good = tmp_path / "good.mp4"
        make_sample_video(good, seconds=2.0, fps=10, width=320, height=192, seed=5)
        resp = _submit(client, key, "good", good.read_bytes())
        assert resp.status_code == 202, resp.text
        job_id = resp.json()["job_id"]
        live.processes.wait_for(
            lambda: _states(live.database_url, [job_id]).get(job_id) in TERMINAL,
            120,
            "the good video's job finished",
            every=0.3,
        )
        status = client.get(
            f"/video/status/{job_id}", headers={"Authorization": f"Bearer {key}"}
        ).json()
        assert status["status"] == "completed", (status, worker.text()[-3000:])
        results = client.get(
            f"/video/results/{job_id}", headers={"Authorization": f"Bearer {key}"}
        ).json()
        assert results["results"]["frames"], results
        assert worker.alive()
        assert worker.pid == worker_pid

    summary = {
        "files": len(corpus),
        "refused_4xx": len(refused),
        "refused_by_status": {
            str(s): list(refused.values()).count(s) for s in set(refused.values())
        },
        "failed": list(outcomes.values()).count("failed"),
        "completed_may_complete": sorted(n for n, s in outcomes.items() if s == "completed"),
        "drain_seconds": round(drain_s, 1),
    }
    print(f"\nBAD_INPUT {json.dumps(summary, sort_keys=True)}")
