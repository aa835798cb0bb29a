"""schemathesis against the running API's own OpenAPI document (``/schema/openapi.json``).

A ``vidjobs api`` process with a valid key: for every documented operation, requests generated
from the document (valid ones, then invalid ones) must never get a 5xx, and every response must
match what the document promises (status code, content type, headers, body schema); every
check schemathesis runs by default applies. Deterministic (``derandomize``) and bounded
(``MAX_EXAMPLES`` per operation and mode) so it runs in about a minute.

Two inputs are valid only in ways a JSON schema cannot say: the uploaded file must be an MP4
(it starts with an ``ftyp`` box) sent as the last part (both in the document's description),
and ``cursor`` must be a ``next_cursor`` the API issued. In
positive mode the generated values are made valid that way before sending (a random PNG is not
"valid data" the API should accept); invalid ones are still sent in negative mode, and
``test_bad_input.py`` sends 76 malformed videos.

schemathesis' pytest loader (``from_fixture``) does not work with pytest 9, so the test drives
Hypothesis itself: one ``@given`` run per operation and mode, every failure collected.
"""

from __future__ import annotations

import zlib
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.generation.modes import GenerationMode

from tests.support.keys import create_key
from tests.support.media import MP4_HEAD, mp4_bytes
from tests.support.processes import Services
from tests.support.stand_in_worker import jobs_in_every_state

pytestmark = [pytest.mark.integration, pytest.mark.acceptance]

MAX_EXAMPLES = 60


def _has_inputs(operation: Any) -> bool:
    parts = (operation.path_parameters, operation.query, operation.headers, operation.cookies)
    return any(len(p) for p in parts) or bool(len(operation.body))


def _issued_cursor(base_url: str, auth: dict[str, str]) -> str:
    """A real ``next_cursor``: two noop jobs, listed one per page."""
    with httpx.Client(base_url=base_url, headers=auth, timeout=30) as client:
        for _ in range(2):
            files = {"file": ("v.mp4", mp4_bytes(128), "video/mp4")}
            resp = client.post("/video/submit", data={"pipeline": "noop"}, files=files)
            assert resp.status_code == 202, resp.text
        cursor = client.get("/video/jobs", params={"limit": 1}).json()["next_cursor"]
    assert isinstance(cursor, str)
    return cursor


def _known_job(case: Any, jobs: list[str]) -> None:
    """Half the generated job ids become the tenant's real jobs (one per state), so the 200,
    204 and 409 answers are checked against the document too, not only the 404s."""
    params = case.path_parameters
    if isinstance(params, dict) and "job_id" in params:
        pick = zlib.crc32(str(params["job_id"]).encode()) % (2 * len(jobs))  # deterministic
        if pick < len(jobs):
            params["job_id"] = jobs[pick]


def _make_semantically_valid(case: Any, cursor: str) -> None:
    if case.operation.label == "POST /video/submit" and isinstance(case.body, dict):
        file = case.body.pop("file", None)
        if isinstance(file, bytes | str):
            raw = file.encode() if isinstance(file, str) else file
            case.body["file"] = MP4_HEAD + raw  # re-inserted last: the file part goes last
    if isinstance(case.query, dict) and "cursor" in case.query:
        case.query["cursor"] = cursor


@pytest.mark.timeout(600)
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_api_conforms_to_its_openapi_document(live: Services, mode: GenerationMode) -> None:
    _, key = create_key(live.database_url, "fuzz")
    api = live.start_api()
    auth = {"Authorization": f"Bearer {key}"}
    assert live.blobs is not None
    with httpx.Client(base_url=live.base_url, timeout=30) as client:
        jobs = list(jobs_in_every_state(live.database_url, live.blobs, client, key).values())
    cursor = _issued_cursor(live.base_url, auth)
    schema = schemathesis.openapi.from_url(f"{live.base_url}/schema/openapi.json")
    failures: dict[str, str] = {}
    checked: list[str] = []
    sent: dict[int, int] = {}
    for result in schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=MAX_EXAMPLES,
            derandomize=True,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def run(case: Any) -> None:
            if mode is GenerationMode.POSITIVE:
                _make_semantically_valid(case, cursor)
                _known_job(case, jobs)
            resp = case.call_and_validate(base_url=live.base_url, headers=auth)
            sent[resp.status_code] = sent.get(resp.status_code, 0) + 1

        try:
            run()
        except Unsatisfiable:
            # Negative mode has nothing to break in an operation without inputs.
            assert mode is GenerationMode.NEGATIVE, operation.label
            assert not _has_inputs(operation), operation.label
        except (Exception, BaseExceptionGroup) as exc:  # every operation is tried; all reported
            failures[operation.label] = str(exc)[:3000]
        checked.append(operation.label)
    assert len(checked) >= 9, checked  # every route of the API is in the document
    assert not failures, "\n\n".join(f"== {op}\n{msg}" for op, msg in failures.items())
    assert api.alive()
    assert not any(code >= 500 for code in sent)
    print(
        f"\nSCHEMATHESIS {mode.value}: {len(checked)} operations, {sum(sent.values())} requests, "
        f"statuses {dict(sorted(sent.items()))}"
    )
