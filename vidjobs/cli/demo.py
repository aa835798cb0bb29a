"""``vidjobs demo`` and ``vidjobs dev``: the whole product on one machine, no services needed."""

from __future__ import annotations

import json
import math
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import click

from vidjobs.client import Client, VidjobsError
from vidjobs.devstack.stack import LocalStack, StackSettings, StackStartError, default_weights
from vidjobs.schema.api import JobStatus
from vidjobs.schema.job import JobState

__all__ = ["demo", "dev"]

_weights_option = click.option(
    "--weights",
    envvar="VIDJOBS_DETECTOR_WEIGHTS",
    show_envvar=True,
    default=None,
    help="Ultralytics weights for the worker (default: the project's offline fixture detector).",
)


def _step(message: str, started: float) -> None:
    click.echo(f"[{time.monotonic() - started:6.1f}s] {message}")


def _summary_lines(results: dict[str, Any]) -> list[str]:
    """A person-readable digest of the results document."""
    summary = results.get("summary", {})
    video = results.get("video", {})
    lines = [
        f"video: {video.get('width')}x{video.get('height')}, {video.get('fps')} fps, "
        f"{video.get('duration_ms', 0) / 1000:.1f} s, codec {video.get('codec')}; "
        f"{summary.get('frames_analysed', 0)} frames analysed"
    ]
    labels = summary.get("label_counts", {})
    lines.append("objects (detections per label):")
    lines += [f"  {label:<12} {count}" for label, count in sorted(labels.items())] or ["  none"]
    lines.append("text (first seen - last seen):")
    texts = summary.get("texts", [])
    lines += [
        f"  {t['first_seen_ms'] / 1000:6.1f}s - {t['last_seen_ms'] / 1000:6.1f}s  {t['text']!r}"
        for t in texts
    ] or ["  none"]
    return lines


def _run_demo(stack: LocalStack, video: Path, out: Path, started: float) -> None:
    """Submit the video through the Python client, follow it, print its digest."""
    last = ""

    def show(job: JobStatus) -> None:
        nonlocal last
        line = f"{job.status:<9} {job.progress * 100:5.1f}%"
        if job.frames_total:
            line += f"  frames {job.frames_done}/{job.frames_total}"
        if line != last:
            _step(line, started)
            last = line

    try:
        with Client(stack.api_url, stack.api_key, timeout=60) as client:
            job = client.submit(video, sample_fps=2)
            _step(f"submitted {video.name} -> job {job.job_id}", started)
            final = client.wait(job.job_id, timeout=math.inf, poll_interval=0.25, on_status=show)
            if final.status != JobState.COMPLETED:
                err = final.error
                raise click.ClickException(
                    f"job {final.status}: {err and err.kind}: {err and err.message}"
                )
            results = client.results(job.job_id).results
    except VidjobsError as exc:
        raise click.ClickException(f"the demo's API call failed: {exc}") from exc
    out.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    click.echo("")
    for line in _summary_lines(results):
        click.echo(line)
    click.echo(f"\nfull results JSON: {out}")


@click.command()
@_weights_option
@click.option(
    "--keep", is_flag=True, help="Keep the demo's data folder (printed at the end) after exit."
)
def demo(weights: str | None, keep: bool) -> None:
    """Run the whole product once on embedded services and analyse a bundled sample video.

    Starts an embedded Postgres and a local blob store, migrates, starts the API and one worker,
    creates a key, submits a generated sample video (text + the fixture detector's objects), shows
    progress and prints a summary. Everything it started stops on exit or Ctrl+C.
    """
    from vidjobs.devstack.synth.video import make_sample_video

    started = time.monotonic()
    data_dir = Path(tempfile.mkdtemp(prefix="vidjobs-demo-"))
    settings = StackSettings(data_dir=data_dir, weights=weights or str(default_weights()))
    out = Path.cwd() / "vidjobs-demo-results.json"
    try:
        _step("starting embedded Postgres, blob store, API and worker ...", started)
        with LocalStack(settings) as stack:
            _step(f"API ready at {stack.api_url} (tenant 'demo')", started)
            video = data_dir / "sample.mp4"
            make_sample_video(video, seconds=8.0)
            _step(f"generated sample video {video}", started)
            _run_demo(stack, video, out, started)
        _step("stopped everything the demo started", started)
    except StackStartError as exc:
        raise click.ClickException(f"the demo stack did not start: {exc}") from exc
    except KeyboardInterrupt:
        click.echo("\ninterrupted; stopped everything the demo started", err=True)
        sys.exit(130)
    finally:
        if keep:
            click.echo(f"data kept in {data_dir}")
        else:
            shutil.rmtree(data_dir, ignore_errors=True)


@click.command()
@_weights_option
@click.option(
    "--data-dir",
    envvar="VIDJOBS_DEV_DATA_DIR",
    show_envvar=True,
    default=".vidjobs",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where the stack keeps its data.",
)
@click.option(
    "--port",
    envvar="VIDJOBS_DEV_PORT",
    show_envvar=True,
    default=8000,
    type=int,
    help="API port on 127.0.0.1.",
)
@click.option(
    "--concurrency",
    envvar="VIDJOBS_DEV_CONCURRENCY",
    show_envvar=True,
    default=1,
    type=int,
    help="Jobs in flight in the worker.",
)
def dev(weights: str | None, data_dir: Path, port: int, concurrency: int) -> None:
    """Run the local stack (embedded Postgres, blob dir, API, one worker) until Ctrl+C.

    Data stays in --data-dir, so a restart keeps the jobs.
    """
    settings = StackSettings(
        data_dir=data_dir.resolve(),
        api_port=port,
        concurrency=concurrency,
        weights=weights or str(default_weights()),
    )
    try:
        _serve(settings)
    except StackStartError as exc:
        raise click.ClickException(f"the dev stack did not start: {exc}") from exc
    click.echo("stopped everything the dev stack started")


def _serve(settings: StackSettings) -> None:
    with LocalStack(settings) as stack:
        click.echo(f"API:      {stack.api_url}   (OpenAPI at {stack.api_url}/schema)")
        click.echo(f"API key:  {stack.api_key}   (tenant {settings.tenant})")
        click.echo(f"Postgres: {stack.database_url}")
        if stack.webhook_secret:
            click.echo(
                f"webhooks: signing secret {stack.webhook_secret}   (shown once; submit with "
                "-F callback_url=http://127.0.0.1:PORT/...)"
            )
        click.echo(f"logs:     {stack.logs}")
        click.echo(
            f"try:      VIDJOBS_API_URL={stack.api_url} VIDJOBS_API_KEY={stack.api_key} "
            "vidjobs submit FILE --wait"
        )
        click.echo("Ctrl+C stops everything.")
        try:
            while all(p.poll() is None for p in stack.procs.values()):
                time.sleep(0.5)
            raise click.ClickException(f"a process of the stack exited; see {stack.logs}")
        except KeyboardInterrupt:
            click.echo("\nstopping ...")
