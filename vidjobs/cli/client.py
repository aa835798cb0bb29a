"""The HTTP client commands: submit, status, results, jobs, cancel.

They talk to any vidjobs API over HTTP (URL and key from flags or the environment), so they work
the same against the embedded demo stack and a production deployment. Exit codes are stable for
scripts: see ``ExitCode``.
"""

from __future__ import annotations

import enum
import json
import sys
import time
from pathlib import Path
from typing import IO, Any, NoReturn

import click
import httpx

__all__ = ["ExitCode", "cancel", "jobs", "results", "status", "submit"]


class ExitCode(enum.IntEnum):
    """What a script sees: 0 means the thing asked for happened."""

    OK = 0
    JOB_FAILED = 1  # the job ended failed (or cancelled) while we waited for it
    USAGE = 2  # click's own code for bad flags
    NOT_FOUND = 3  # unknown job, or results not available yet
    AUTH = 4  # missing, invalid or revoked API key
    UNAVAILABLE = 5  # API unreachable or answering 503
    REJECTED = 6  # the API refused the request (4xx other than the above)


_url_option = click.option(
    "--api-url",
    envvar="VIDJOBS_API_URL",
    show_envvar=True,
    default="http://127.0.0.1:8000",
    help="Base URL of the vidjobs API.",
)
_key_option = click.option(
    "--api-key",
    envvar="VIDJOBS_API_KEY",
    show_envvar=True,
    default=None,
    help="API key (Bearer); create one with `vidjobs keys create`.",
)


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


def _client(api_url: str, api_key: str | None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        return httpx.Client(base_url=api_url.rstrip("/"), headers=headers, timeout=30.0)
    except httpx.InvalidURL as exc:
        _die(ExitCode.USAGE, f"invalid API URL {api_url!r}: {exc}")


def _problem_text(resp: httpx.Response) -> str:
    try:
        body = resp.json()
    except ValueError:
        return f"HTTP {resp.status_code}: {resp.text[:200]}"
    if isinstance(body, dict):
        detail = body.get("detail") or body.get("title") or body
        return f"HTTP {resp.status_code}: {detail}"
    return f"HTTP {resp.status_code}: {body}"


def _request(client: httpx.Client, method: str, url: str, **kwargs: Any) -> httpx.Response:
    """Send one request; turn transport errors and error statuses into one readable line."""
    try:
        resp = client.request(method, url, **kwargs)
    except httpx.TransportError as exc:
        _die(ExitCode.UNAVAILABLE, f"cannot reach the API at {client.base_url}: {exc}")
    except httpx.InvalidURL as exc:
        _die(ExitCode.USAGE, f"invalid API URL {str(client.base_url)!r}: {exc}")
    if resp.status_code < 400:
        return resp
    text = _problem_text(resp)
    if resp.status_code == 401:
        _die(ExitCode.AUTH, text)
    if resp.status_code == 404:
        _die(ExitCode.NOT_FOUND, text)
    if resp.status_code in (502, 503, 504):
        _die(ExitCode.UNAVAILABLE, text)
    _die(ExitCode.REJECTED, text)


class _ProgressReader:
    """A file wrapper that advances a progress bar as httpx reads the upload in chunks."""

    def __init__(self, fh: IO[bytes], bar: Any) -> None:
        self._fh = fh
        self._bar = bar

    def read(self, size: int = -1) -> bytes:
        data = self._fh.read(size)
        self._bar.update(len(data))
        return data


def _print_status(body: dict[str, Any]) -> None:
    pct = f"{float(body.get('progress') or 0.0) * 100:.0f}%"
    frames = ""
    if body.get("frames_total"):
        frames = f" ({body.get('frames_done', 0)}/{body['frames_total']} frames)"
    line = f"{body['job_id']}  {body['status']}  {pct}{frames}  attempts={body.get('attempts', 0)}"
    err = body.get("error")
    if err:
        line += f"  error={err.get('kind')}: {err.get('message')}"
    click.echo(line)


def _wait(client: httpx.Client, job_id: str, interval: float) -> dict[str, Any]:
    """Poll status until the job is finished, drawing a progress bar; return the last status."""
    with _progressbar(1000, "processing") as bar:
        shown = 0
        while True:
            body: dict[str, Any] = _request(client, "GET", f"/video/status/{job_id}").json()
            done = int(float(body.get("progress") or 0.0) * 1000)
            if done > shown:
                bar.update(done - shown)
                shown = done
            if body["status"] in ("completed", "failed", "cancelled"):
                return body
            time.sleep(interval)


@click.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--pipeline", default=None, help="Pipeline to run (yolo_ocr, noop).")
@click.option("--sample-fps", type=float, default=None, help="Frames per second to analyse.")
@click.option("--min-confidence", type=float, default=None, help="Drop detections below this.")
@click.option("--priority", type=int, default=None, help="Higher runs first.")
@click.option("--idempotency-key", default=None, help="Repeat-safe submit key.")
@click.option("--wait/--no-wait", default=False, help="Wait until the job finishes.")
@click.option("--poll-interval", type=float, default=0.5, help="Seconds between polls with --wait.")
@_url_option
@_key_option
def submit(
    file: Path,
    pipeline: str | None,
    sample_fps: float | None,
    min_confidence: float | None,
    priority: int | None,
    idempotency_key: str | None,
    wait: bool,
    poll_interval: float,
    api_url: str,
    api_key: str | None,
) -> None:
    """Upload FILE (an MP4) and print its job id; with --wait, follow it to the end."""
    fields = {
        "pipeline": pipeline,
        "sample_fps": sample_fps,
        "min_confidence": min_confidence,
        "priority": priority,
    }
    data = {k: str(v) for k, v in fields.items() if v is not None}
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
    with _client(api_url, api_key) as client:
        size = file.stat().st_size
        with (
            file.open("rb") as fh,
            _progressbar(size, "uploading") as bar,
        ):
            reader = _ProgressReader(fh, bar)
            resp = _request(
                client,
                "POST",
                "/video/submit",
                files={"file": (file.name, reader, "video/mp4")},
                data=data,
                headers=headers,
                timeout=httpx.Timeout(30.0, write=None, read=600.0),
            )
        job_id = str(resp.json()["job_id"])
        click.echo(job_id)
        if not wait:
            return
        final = _wait(client, job_id, poll_interval)
        _print_status(final)
        if final["status"] != "completed":
            sys.exit(int(ExitCode.JOB_FAILED))


@click.command()
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True, help="Print the raw JSON body.")
@_url_option
@_key_option
def status(job_id: str, as_json: bool, api_url: str, api_key: str | None) -> None:
    """Show a job's status; exits 1 if it failed or was cancelled."""
    with _client(api_url, api_key) as client:
        body = _request(client, "GET", f"/video/status/{job_id}").json()
    if as_json:
        click.echo(json.dumps(body, indent=2))
    else:
        _print_status(body)
    if body["status"] in ("failed", "cancelled"):
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
@_url_option
@_key_option
def results(job_id: str, output: Path | None, api_url: str, api_key: str | None) -> None:
    """Fetch a completed job's results (exit 3 while it is not completed)."""
    with _client(api_url, api_key) as client:
        body = _request(client, "GET", f"/video/results/{job_id}").json()
    text = json.dumps(body, indent=2, sort_keys=True)
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
    type=click.Choice(["pending", "running", "completed", "failed", "cancelled"]),
    help="Only jobs in this state.",
)
@click.option("--limit", type=int, default=20, help="Jobs per page.")
@click.option("--all", "all_pages", is_flag=True, help="Follow the cursor through every page.")
@_url_option
@_key_option
def jobs(state: str | None, limit: int, all_pages: bool, api_url: str, api_key: str | None) -> None:
    """List your jobs, newest first."""
    params: dict[str, Any] = {"limit": limit}
    if state:
        params["status"] = state
    with _client(api_url, api_key) as client:
        while True:
            body = _request(client, "GET", "/video/jobs", params=params).json()
            for job in body.get("jobs", []):
                _print_status(job)
            cursor = body.get("next_cursor")
            if not (all_pages and cursor):
                return
            params["cursor"] = cursor


@click.command()
@click.argument("job_id")
@_url_option
@_key_option
def cancel(job_id: str, api_url: str, api_key: str | None) -> None:
    """Cancel a pending or running job."""
    with _client(api_url, api_key) as client:
        body = _request(client, "POST", f"/video/jobs/{job_id}/cancel").json()
    _print_status(body)
