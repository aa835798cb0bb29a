"""Secrets never reach the API's log: key-like query parameters and API keys are redacted.

Keys belong in ``Authorization: Bearer``, which nothing logs; but a client may put one in the
URL (``GET /video/jobs?api_key=vj_...``), and uvicorn's access log writes every request line
whole, query string included. Redaction is done when a record is created (a log-record
factory), not by a handler's filter: uvicorn's handlers, the root handler Litestar sets up and
any handler added later all see the redacted record, so no log line can carry the key.

Redacted: the value of every query parameter whose name looks like a credential (``api_key``,
``key``, ``token``, ``access_token``, ``secret``, ``password``, ``signature``, ``auth``...),
and anywhere in a message, an API key (``vj_`` and its random part), kept to the prefix that
``vidjobs keys list`` shows so an operator can tell which key to revoke.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any

from vidjobs.db.api_keys import KEY_MARKER

__all__ = ["REDACTED", "install_log_redaction", "redact"]

REDACTED = "[redacted]"

_SECRET_PARAM = re.compile(
    r"(?P<name>(?:^|[?&;])[^=&;?#\s]*?(?:key|token|secret|passw|pwd|signature|sig|auth|credential)"
    r"[^=&;?#\s]*=)(?P<value>[^&;#\s\"']+)",
    re.IGNORECASE,
)
_KEY_SHOWN = 10  # the stored, non-secret prefix of a key (db/api_keys.py), marker included
_API_KEY = re.compile(re.escape(KEY_MARKER) + r"[A-Za-z0-9_\-]{8,}")


def redact(text: str) -> str:
    """``text`` with key-like query parameter values and API keys replaced."""
    if "=" in text:
        text = _SECRET_PARAM.sub(lambda m: m["name"] + REDACTED, text)
    if KEY_MARKER in text:
        text = _API_KEY.sub(lambda m: m[0][:_KEY_SHOWN] + "..." + REDACTED, text)
    return text


def _redact_arg(value: Any) -> Any:
    return redact(value) if isinstance(value, str) else value


def _redact_record(record: logging.LogRecord) -> None:
    if isinstance(record.msg, str):
        record.msg = redact(record.msg)
    args = record.args
    if isinstance(args, tuple):
        record.args = tuple(_redact_arg(a) for a in args)
    elif isinstance(args, dict):
        record.args = {k: _redact_arg(v) for k, v in args.items()}


def install_log_redaction() -> None:
    """Make every log record of this process redacted at creation; calling it again is a no-op.

    Each API process calls it (``create_app``), so ``--workers N`` covers every process.
    """
    previous: Callable[..., logging.LogRecord] = logging.getLogRecordFactory()
    if getattr(previous, "vidjobs_redacts", False):
        return

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        _redact_record(record)
        return record

    factory.vidjobs_redacts = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)
