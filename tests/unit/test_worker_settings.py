"""WorkerSettings: environment parsing and the checks that keep leases alive."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from vidjobs.worker.settings import WorkerSettings

FromEnv = Callable[..., Any]


def test_defaults_suit_a_video_worker(from_env: FromEnv) -> None:
    s = from_env(WorkerSettings, {})
    assert s.concurrency == 1
    assert s.prefetch == 0, "claimed-but-waiting video jobs would starve idle workers"
    assert s.durable_claims is True
    assert s.heartbeat_interval_s < s.lease_seconds


def test_every_variable_is_read(from_env: FromEnv) -> None:
    s = from_env(
        WorkerSettings,
        {
            "VIDJOBS_WORKER_CONCURRENCY": "8",
            "VIDJOBS_WORKER_BATCH_SIZE": "200",
            "VIDJOBS_WORKER_PREFETCH": "200",
            "VIDJOBS_WORKER_LEASE_SECONDS": "30",
            "VIDJOBS_WORKER_HEARTBEAT_INTERVAL": "2.5",
            "VIDJOBS_WORKER_PROGRESS_INTERVAL": "0.25",
            "VIDJOBS_WORKER_GRACE_SECONDS": "12",
            "VIDJOBS_WORKER_POLL_INTERVAL": "0.2",
            "VIDJOBS_WORKER_IDLE_BACKOFF_MAX": "3",
            "VIDJOBS_WORKER_ID": "box-1",
            "VIDJOBS_WORKER_DURABLE_CLAIMS": "off",
        },
    )
    assert s == WorkerSettings(
        concurrency=8,
        batch_size=200,
        prefetch=200,
        lease_seconds=30.0,
        heartbeat_interval_s=2.5,
        progress_interval_s=0.25,
        grace_seconds=12.0,
        poll_interval_s=0.2,
        idle_backoff_max_s=3.0,
        worker_id="box-1",
        durable_claims=False,
    )


def test_empty_variables_keep_the_defaults(from_env: FromEnv) -> None:
    s = from_env(WorkerSettings, {"VIDJOBS_WORKER_CONCURRENCY": " ", "VIDJOBS_WORKER_ID": ""})
    assert s.concurrency == 1
    assert s.worker_id  # hostname-pid


def test_a_value_in_code_beats_the_variable(from_env: FromEnv) -> None:
    s = from_env(WorkerSettings, {"VIDJOBS_WORKER_CONCURRENCY": "8"}, concurrency=2)
    assert s.concurrency == 2


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"VIDJOBS_WORKER_CONCURRENCY": "0"}, "concurrency"),
        ({"VIDJOBS_WORKER_HEARTBEAT_INTERVAL": "60"}, "shorter than lease_seconds"),
        ({"VIDJOBS_WORKER_POLL_INTERVAL": "10"}, "idle_backoff_max_s"),
        ({"VIDJOBS_WORKER_DURABLE_CLAIMS": "maybe"}, "not a boolean"),
    ],
)
def test_impossible_settings_are_refused(
    from_env: FromEnv, env: dict[str, str], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        from_env(WorkerSettings, env)
