"""The HTTP client commands: submit, status, results, jobs, cancel.

They talk to any vidjobs API through the Python client (:mod:`vidjobs.client`; URL and key from
flags or the environment, declared once in ``ClientSettings``), so they work the same against
the embedded demo stack and a production deployment, and ride out a 503 or 429 as the library
does (``Retry-After``, bounded). Exit codes are stable for scripts: see ``ExitCode``; the
library's exceptions become them in one place, :func:`_exit_codes`.
"""

from __future__ import annotations

import contextlib
import enum
import json
import math
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, NoReturn

import click
import msgspec

from vidjobs.cli.options import settings_from_cli, settings_options
from vidjobs.client import (
    ApiError,
    Client,
    ClientSettings,
    InvalidApiUrl,
    NotFound,
    Unauthorized,
    VidjobsError,
)
from vidjobs.schema.api import JobStatus
from vidjobs.schema.job import JobState

__all__ = ["ExitCode", "cancel", "delete", "jobs", "results", "status", "submit"]


class ExitCode(enum.IntEnum):
    """What a script sees: 0 means the thing asked for happened."""

    OK = 0
    JOB_FAILED = 1  # the job ended failed (or cancelled) while we waited for it
    USAGE = 2  # click's own code for bad flags
    NOT_FOUND = 3  # unknown job, or results not available yet
    AUTH = 4  # missing, invalid or revoked API key
    UNAVAILABLE = 5  # API unreachable or answering 503
    REJECTED = 6  # the API refused the request (4xx other than the above)


class _Failure(click.ClickException):
    """One readable line on stderr and an ``ExitCode``.

    Raised rather than exiting on the spot so that an open progress bar closes its line first.
    """

    def __init__(self, code: ExitCode, message: str) -> None:
        super().__init__(message)
        self.exit_code = int(code)  # type: ignore[misc]  # click reads it off the instance

    def show(self, file: IO[Any] | None = None) -> None:
        """Print ``error: <message>`` on stderr."""
        click.echo(f"error: {self.format_message()}", err=True)


def _die(code: ExitCode, message: str) -> NoReturn:
    raise _Failure(code, message)


def _progressbar(length: int, label: str) -> Any:
    """A progress bar on stderr, drawn only on a terminal (logs and pipes get no label lines)."""
    return click.progressbar(
        length=length,
        label=label,
        show_eta=False,
        file=sys.stderr,
        hidden=not sys.stderr.isatty(),
    )


def _client() -> Client:
    """The client of the API the flags or the variables name."""
    settings = settings_from_cli(ClientSettings)
    return Client(settings.api_url, settings.api_key or "")  # "": no key, not the variable again


@contextlib.contextmanager
def _exit_codes() -> Iterator[None]:
    """Every error of the client as one line and its ``ExitCode``."""
    try:
        yield
    except InvalidApiUrl as exc:
        _die(ExitCode.USAGE, str(exc))
    except Unauthorized as exc:
        _die(ExitCode.AUTH, str(exc))
    except NotFound as exc:
        _die(ExitCode.NOT_FOUND, str(exc))
    except ApiError as exc:
        unavailable = exc.status in (502, 503, 504)
        _die(ExitCode.UNAVAILABLE if unavailable else ExitCode.REJECTED, str(exc))
    except VidjobsError as exc:  # ApiUnreachable (no answer), UnexpectedAnswer (not the API's)
        _die(ExitCode.UNAVAILABLE, str(exc))


def _print_status(job: JobStatus) -> None:
    frames = f" ({job.frames_done}/{job.frames_total} frames)" if job.frames_total else ""
    line = f"{job.job_id}  {job.status}  {job.progress * 100:.0f}%{frames}"
    line += f"  attempts={job.attempts}"
    if job.error is not None:
        line += f"  error={job.error.kind}: {job.error.message}"
    click.echo(line)


def _json(value: Any, **dumps: Any) -> str:
    """A body as the API sent it, indented (ids and times as the strings of the JSON)."""
    return json.dumps(msgspec.to_builtins(value), indent=2, **dumps)


def _wait(client: Client, job_id: str, interval: float) -> JobStatus:
    """Follow the job to its end, drawing a progress bar; return the last status."""
    with _progressbar(1000, "processing") as bar:
        shown = 0

        def show(job: JobStatus) -> None:
            nonlocal shown
            done = int(job.progress * 1000)
            if done > shown:
                bar.update(done - shown)
                shown = done

        return client.wait(job_id, timeout=math.inf, poll_interval=interval, on_status=show)


@click.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--pipeline", default=None, help="Pipeline to run (yolo_ocr, noop).")
@click.option("--sample-fps", type=float, default=None, help="Frames per second to analyse.")
@click.option("--min-confidence", type=float, default=None, help="Drop detections below this.")
@click.option(
    "--keep-brief-text/--drop-brief-text",
    default=None,
    help="Keep (or drop, the default) low-confidence text read in one sampled frame only.",
)
@click.option("--priority", type=int, default=None, help="Higher runs first.")
@click.option(
    "--callback-url",
    default=None,
    help="POST the job's end here as a signed webhook (docs/api.md, 'Webhooks').",
)
@click.option(
    "--idempotency-key",
    default=None,
    help="Repeat-safe submit key (default: a fresh one, kept across this submit's retries).",
)
@click.option("--wait/--no-wait", default=False, help="Wait until the job finishes.")
@click.option("--poll-interval", type=float, default=0.5, help="Seconds between polls with --wait.")
@settings_options(ClientSettings)
def submit(
    file: Path,
    pipeline: str | None,
    sample_fps: float | None,
    min_confidence: float | None,
    keep_brief_text: bool | None,
    priority: int | None,
    callback_url: str | None,
    idempotency_key: str | None,
    wait: bool,
    poll_interval: float,
) -> None:
    """Upload FILE (an MP4) and print its job id; with --wait, follow it to the end."""
    with _exit_codes(), _client() as client:
        with _progressbar(file.stat().st_size, "uploading") as bar:
            shown = 0

            def progress(sent: int) -> None:
                nonlocal shown
                if sent > shown:  # a retry reads the file again from 0
                    bar.update(sent - shown)
                    shown = sent

            job = client.submit(
                file,
                pipeline=pipeline,
                sample_fps=sample_fps,
                min_confidence=min_confidence,
                keep_brief_text=keep_brief_text,
                priority=priority,
                callback_url=callback_url,
                idempotency_key=idempotency_key,
                on_progress=progress,
            )
        click.echo(str(job.job_id))
        if not wait:
            return
        final = _wait(client, str(job.job_id), poll_interval)
    _print_status(final)
    if final.status != JobState.COMPLETED:
        sys.exit(int(ExitCode.JOB_FAILED))


@click.command()
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True, help="Print the raw JSON body.")
@settings_options(ClientSettings)
def status(job_id: str, as_json: bool) -> None:
    """Show a job's status; exits 1 if it failed or was cancelled."""
    with _exit_codes(), _client() as client:
        job = client.status(job_id)
    if as_json:
        click.echo(_json(job))
    else:
        _print_status(job)
    if job.status in (JobState.FAILED, JobState.CANCELLED):
        sys.exit(int(ExitCode.JOB_FAILED))


@click.command()
@click.argument("job_id")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the results JSON here instead of stdout.",
)
@settings_options(ClientSettings)
def results(job_id: str, output: Path | None) -> None:
    """Fetch a completed job's results (exit 3 while it is not completed)."""
    with _exit_codes(), _client() as client:
        text = _json(client.results(job_id), sort_keys=True)
    if output is None:
        click.echo(text)
    else:
        output.write_text(text + "\n")
        click.echo(f"results written to {output}", err=True)


@click.command()
@click.option(
    "--status",
    "state",
    default=None,
    type=click.Choice([s.value for s in JobState]),
    help="Only jobs in this state.",
)
@click.option("--limit", type=int, default=20, help="Jobs per page.")
@click.option("--all", "all_pages", is_flag=True, help="Follow the cursor through every page.")
@settings_options(ClientSettings)
def jobs(state: str | None, limit: int, all_pages: bool) -> None:
    """List your jobs, newest first."""
    with _exit_codes(), _client() as client:
        if all_pages:
            for job in client.iter_jobs(status=state, page_size=limit):
                _print_status(job)
        else:
            for job in client.list_jobs(status=state, limit=limit).jobs:
                _print_status(job)


@click.command()
@click.argument("job_id")
@settings_options(ClientSettings)
def cancel(job_id: str) -> None:
    """Cancel a pending or running job."""
    with _exit_codes(), _client() as client:
        job = client.cancel(job_id)
    _print_status(job)


@click.command()
@click.argument("job_id")
@settings_options(ClientSettings)
def delete(job_id: str) -> None:
    """Delete a finished job with its video and results (cancel a live one first)."""
    with _exit_codes(), _client() as client:
        client.delete(job_id)
    click.echo(f"deleted {job_id}")
