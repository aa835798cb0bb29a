"""OpenTelemetry traces of a job: submit (API) → claim → run → stages → completion (worker).

Off by default and free when off: nothing here builds a span, a processor or an exporter
until :func:`configure` runs with ``enabled`` set, and every helper first checks one module
attribute (``_tracer is None``) and returns. Only ``opentelemetry-api`` is imported at module
level (a base dependency: small, pure Python); the SDK and the OTLP exporter (the ``otel``
extra) are imported inside :func:`configure`, so a process with tracing off never loads them.

The tracer is process-wide state, like the logging configuration: the CLI configures it once
where a process starts (``vidjobs api``, ``vidjobs worker``). It lives here rather than in the
global OpenTelemetry provider so that tests can turn it on and off around one test.

The submit's context crosses the queue as a W3C ``traceparent`` string stored on the job row
(``jobs.trace_context``, migration 0017); the worker extracts it and parents its spans on it,
so one trace runs from the submit to the job's completion.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from opentelemetry import trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from vidjobs.settings import Settings, setting

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter

__all__ = [
    "StageTotals",
    "TracingSettings",
    "annotate",
    "configure",
    "current_traceparent",
    "enabled",
    "shutdown",
    "span",
    "stage_spans",
    "traced_factory",
]

T = TypeVar("T")
_PROPAGATOR = TraceContextTextMapPropagator()
_tracer: trace.Tracer | None = None
_provider: TracerProvider | None = None


class TracingSettings(Settings):
    """Traces (API and worker); the OTLP exporter reads the standard ``OTEL_EXPORTER_OTLP_*``."""

    enabled: bool = setting(
        False,
        env="VIDJOBS_OTEL_ENABLED",
        flag="--otel/--no-otel",
        help="Record OpenTelemetry traces (submit, claim, run, stages, completion) and export "
        "them over OTLP/HTTP to OTEL_EXPORTER_OTLP_ENDPOINT (default http://localhost:4318)",
    )


def configure(
    settings: TracingSettings, *, service: str, exporter: SpanExporter | None = None
) -> bool:
    """Start tracing for this process if the settings say so; returns whether it is on.

    ``exporter`` replaces the OTLP exporter (tests pass an ``InMemorySpanExporter``; it is then
    fed synchronously). Calling it again replaces the previous configuration.
    """
    global _tracer, _provider  # noqa: PLW0603 - one tracer per process, set where it starts
    shutdown()
    if not settings.enabled:
        return False
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    if exporter is None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    else:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    _provider = provider
    _tracer = provider.get_tracer("vidjobs")
    return True


def shutdown() -> None:
    """Flush and stop the tracer (a no-op when tracing is off)."""
    global _tracer, _provider  # noqa: PLW0603 - see configure
    if _provider is not None:
        _provider.shutdown()
    _tracer = None
    _provider = None


def traced_factory(factory: Callable[[], T], settings: TracingSettings, service: str) -> T:
    """``factory()`` after :func:`configure`: for a process that builds its app itself (each
    uvicorn worker process calls it, so each one gets its own exporter thread)."""
    configure(settings, service=service)
    return factory()


def enabled() -> bool:
    """True while this process records traces."""
    return _tracer is not None


@contextlib.contextmanager
def span(
    name: str, attributes: Mapping[str, Any] | None = None, *, parent: str | None = None
) -> Iterator[trace.Span | None]:
    """A span around the block (None, and nothing done, when tracing is off).

    ``parent`` is a stored ``traceparent``: the span continues that trace instead of the
    current one (the worker continuing a submit). An exception leaving the block is recorded.
    """
    if _tracer is None:
        yield None
        return
    ctx = _PROPAGATOR.extract({"traceparent": parent}) if parent else None
    with _tracer.start_as_current_span(name, context=ctx, attributes=attributes) as current:
        yield current


def annotate(attributes: Mapping[str, Any]) -> None:
    """Add attributes to the current span (a no-op when off)."""
    if _tracer is not None:
        trace.get_current_span().set_attributes(attributes)


def current_traceparent() -> str | None:
    """The current span's ``traceparent`` to store on a job row (None when off)."""
    if _tracer is None:
        return None
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier)
    return carrier.get("traceparent")


class StageTotals:
    """Per-stage seconds and calls of one job, summed from ``ctx.stage_time`` (any thread).

    Per-frame spans would be hundreds per job; the stages are kept as one span each, whose
    attributes carry the totals (``vidjobs.stage.seconds``, ``vidjobs.stage.calls``).
    """

    def __init__(self, then: Callable[[str, float], None] | None) -> None:
        self._then = then
        self.seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}

    def __call__(self, stage: str, seconds: float) -> None:
        # dict updates of one key are atomic under the GIL; a lost race costs one sample
        self.seconds[stage] = self.seconds.get(stage, 0.0) + seconds
        self.calls[stage] = self.calls.get(stage, 0) + 1
        if self._then is not None:
            self._then(stage, seconds)


def stage_spans(totals: StageTotals, started_ns: int) -> None:
    """One child span per stage of the current span, laid end to end from ``started_ns``.

    The stages of one frame interleave, so the spans' lengths are the stages' total time
    (their true sum), not their wall-clock extent.
    """
    if _tracer is None:
        return
    at = started_ns
    for stage, seconds in list(totals.seconds.items()):
        end = at + int(seconds * 1e9)
        attrs = {"vidjobs.stage.seconds": seconds, "vidjobs.stage.calls": totals.calls[stage]}
        _tracer.start_span(f"stage {stage}", attributes=attrs, start_time=at).end(end_time=end)
        at = end
