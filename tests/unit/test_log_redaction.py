"""Key-like query parameters and API keys are redacted from every log record the API creates."""

from __future__ import annotations

import logging

import pytest

from vidjobs.api.log_redaction import REDACTED, install_log_redaction, redact

KEY = "vj_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789-_abcd"


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (f"/video/jobs?api_key={KEY}", f"/video/jobs?api_key={REDACTED}"),
        (f"/video/jobs?limit=2&token={KEY}&x=1", f"/video/jobs?limit=2&token={REDACTED}&x=1"),
        (
            "/cb?access_token=abc&password=hunter2",
            f"/cb?access_token={REDACTED}&password={REDACTED}",
        ),
        ("/video/jobs?status=failed&limit=5", "/video/jobs?status=failed&limit=5"),
        (f"/video/status/{KEY}", f"/video/status/{KEY[:10]}...{REDACTED}"),
    ],
)
def test_redact(line: str, expected: str) -> None:
    assert redact(line) == expected


def test_every_record_is_redacted_at_creation(caplog: pytest.LogCaptureFixture) -> None:
    previous = logging.getLogRecordFactory()
    try:
        install_log_redaction()
        install_log_redaction()  # once is enough; twice changes nothing
        with caplog.at_level(logging.INFO, logger="uvicorn.access"):
            logging.getLogger("uvicorn.access").info(
                '%s - "%s %s HTTP/%s" %d', "127.0.0.1:5", "GET", f"/video/jobs?api_key={KEY}",
                "1.1", 401,
            )  # fmt: skip
            logging.getLogger("vidjobs.test").warning(f"refused {KEY}")
    finally:
        logging.setLogRecordFactory(previous)
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert KEY not in text
    assert f"GET /video/jobs?api_key={REDACTED} HTTP/1.1" in text
    assert f"refused {KEY[:10]}...{REDACTED}" in text
