"""Webhook benchmark (issue 11 item 4): completions to signed deliveries on a loopback receiver.

    .venv/bin/python bench/webhooks.py                      # embedded durable Postgres
    .venv/bin/python bench/webhooks.py --database-url URL   # an existing, scratch database
    make bench-webhooks ARGS="--n 200"

Everything runs on this machine: an embedded durable Postgres (fsync on; or ``DATABASE_URL`` /
``--database-url``, migrated first: give it a scratch database, since the dispatcher drains
every tenant's outbox there), one tenant with a signing secret (sealed with a fresh Fernet key)
and one endpoint registered on a loopback receiver. The receiver is a raw asyncio HTTP/1.1
server (keep-alive) in a **process of its own** (spawned), so it shares neither the event
loop nor the GIL with the dispatcher; it verifies every request with
``standardwebhooks.Webhook(secret).verify``, answers 400 to a bad signature, records the
arrival time of each ``webhook-id``'s first 2xx and counts the repeats. The dispatcher
(``vidjobs.webhooks.dispatcher.Dispatcher``, loopback allowed, ``--poll-interval``) runs in
this process, on the event loop that completes the jobs, poked after each completion batch as
a worker's is.

1. ``deliveries_per_s``, ``delivery_ms_p50/p99``: ``--n`` jobs inserted and claimed, then
   completed with ``job_complete_many`` in batches of ``--batch`` (the outbox trigger writes one
   delivery each); latency per job = its first 2xx arrival at the receiver minus the job's
   ``finished_at`` (one machine, one clock); rate = n / (last arrival - first ``finished_at``).
2. ``ceiling_per_s``: the baseline, in the same run: ``--n`` signed POSTs of a real event body
   to the same receiver from a plain ``httpx.AsyncClient`` with the same concurrency (the
   HTTP + signing ceiling without the database); ``ratio_to_ceiling`` = 1. / 2.
3. ``delivered_after_flaps``: ``--n`` fresh jobs while the receiver answers 500 to
   ``--fail-ratio`` of the signed requests (seeded random, ``--seed``), the dispatcher retrying
   after ``--retry-base`` doubling up to ``--retry-max-delay``; waits until every event got a
   2xx or ``--flaps-timeout``. Distinct ``webhook-id`` answered 2xx: must be ``--n``. Also the
   attempts (the outbox's count) and the latency percentiles of this phase.

Prints human-readable lines (progress on stderr), then ONE JSON line LAST.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http
import json
import logging
import multiprocessing as mp
import os
import random
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import msgspec
import psycopg
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from vidjobs.db.jobs import NewJob, job_insert_many
from vidjobs.db.leases import job_claim, job_complete_many
from vidjobs.db.pool import open_pool
from vidjobs.db.settings import DatabaseSettings
from vidjobs.db.webhooks import endpoint_add, endpoint_disable, secret_create, snapshot_job
from vidjobs.schema.api import job_status
from vidjobs.webhooks.dispatcher import Dispatcher
from vidjobs.webhooks.secrets import Sealer, generate_key, new_secret
from vidjobs.webhooks.settings import DispatchSettings, TargetPolicy

PIPELINE = "bench-webhooks"
"""The benchmark's jobs' pipeline: its claims take only these (``pipelines=``)."""

LOOPBACK = TargetPolicy(allow_http=True, allow_networks="127.0.0.0/8")


def log(msg: str) -> None:
    """Progress on stderr; stdout carries the results."""
    print(f"[webhooks {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def pct(values: list[float], q: float) -> float | None:
    """The ``q`` quantile (nearest rank), or None without samples."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def ms(value: float | None) -> float | None:
    return None if value is None else round(value * 1000, 2)


# -- the receiver (a process of its own) -----------------------------------------------------


class _Receiver:
    """What the receiver process knows: the secret, the failure mode, what arrived."""

    def __init__(self, secret: str) -> None:
        self.webhook = Webhook(secret)
        self.reset(0.0, 0)

    def reset(self, fail_ratio: float, seed: int) -> None:
        self.fail_ratio = fail_ratio
        self.rng = random.Random(seed)
        self.requests = 0
        self.failed = 0  # answered 500 on purpose
        self.bad = 0  # verification failed (answered 400)
        self.repeats = 0  # a 2xx for a webhook-id already answered 2xx
        self.delivered: dict[str, float] = {}  # webhook-id -> arrival (time.time()) of the 2xx
        self.connections = 0  # accepted since the reset (the client's reuse of them)
        self.t0, self.cpu0 = time.monotonic(), time.process_time()

    def stats(self) -> dict[str, Any]:
        cpu_s, wall_s = time.process_time() - self.cpu0, time.monotonic() - self.t0
        return {
            "requests": self.requests, "failed": self.failed, "bad": self.bad,
            "repeats": self.repeats, "unique": len(self.delivered),
            "connections": self.connections,
            # The receiver's share of one core since the reset: well under 1, not the bottleneck.
            "busy": round(cpu_s / wall_s, 2) if wall_s > 0 else None,
        }  # fmt: skip

    def route(
        self, method: str, path: str, headers: dict[str, str], body: bytes, at: float
    ) -> tuple[int, bytes]:
        if path == "/hooks" and method == "POST":
            return self.hook(headers, body, at), b"ok"
        if path == "/_reset" and method == "POST":
            spec = json.loads(body)
            self.reset(float(spec["fail_ratio"]), int(spec["seed"]))
            return 200, b"{}"
        if path == "/_stats":
            return 200, json.dumps(self.stats()).encode()
        if path == "/_results":
            return 200, json.dumps({**self.stats(), "delivered": self.delivered}).encode()
        return 404, b"not found"

    def hook(self, headers: dict[str, str], body: bytes, at: float) -> int:
        self.requests += 1
        try:
            self.webhook.verify(body, headers)
        except WebhookVerificationError:
            self.bad += 1
            return 400
        if self.fail_ratio > 0 and self.rng.random() < self.fail_ratio:
            self.failed += 1
            return 500
        webhook_id = headers["webhook-id"]
        if webhook_id in self.delivered:
            self.repeats += 1
        else:
            self.delivered[webhook_id] = at
        return 200


async def _connection(
    rx: _Receiver, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    """One keep-alive HTTP/1.1 connection: requests with a content-length body, in order."""
    rx.connections += 1
    try:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
                request, *lines = head.decode("latin-1").split("\r\n")
                method, target, _ = request.split(" ", 2)
                headers: dict[str, str] = {}
                for line in lines:
                    if line:
                        name, _, value = line.partition(":")
                        headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                return
            status, answer = rx.route(method, target, headers, body, time.time())
            phrase = http.HTTPStatus(status).phrase
            writer.write(
                f"HTTP/1.1 {status} {phrase}\r\ncontent-length: {len(answer)}\r\n\r\n".encode()
                + answer
            )
            await writer.drain()
            if headers.get("connection", "").lower() == "close":
                return
    except ConnectionError:
        return
    finally:
        writer.close()


def receiver_main(secret: str, port_q: Any) -> None:
    """The receiver process: serve on 127.0.0.1 (a free port, put on ``port_q``) until SIGTERM."""

    async def serve() -> None:
        rx = _Receiver(secret)
        server = await asyncio.start_server(
            lambda r, w: _connection(rx, r, w), "127.0.0.1", 0, backlog=1024
        )
        port_q.put(server.sockets[0].getsockname()[1])
        async with server:
            await server.serve_forever()

    asyncio.run(serve())


@dataclass
class ReceiverProcess:
    """The receiver's process, started and stopped (SIGTERM by its PID) by this one."""

    secret: str
    port: int = 0
    proc: Any = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.base}/hooks"

    def start(self) -> None:
        ctx = mp.get_context("spawn")
        port_q = ctx.Queue()
        self.proc = ctx.Process(target=receiver_main, args=(self.secret, port_q), daemon=True)
        self.proc.start()
        self.port = int(port_q.get(timeout=60))

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.is_alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGTERM)
            self.proc.join(10)
        if self.proc.is_alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.join(10)
        self.proc = None


async def rx_reset(control: httpx.AsyncClient, fail_ratio: float = 0.0, seed: int = 0) -> None:
    resp = await control.post("/_reset", json={"fail_ratio": fail_ratio, "seed": seed})
    resp.raise_for_status()


async def rx_get(control: httpx.AsyncClient, what: str) -> dict[str, Any]:
    resp = await control.get(f"/_{what}")
    resp.raise_for_status()
    result: dict[str, Any] = resp.json()
    return result


# -- the database ----------------------------------------------------------------------------


@contextlib.contextmanager
def database(url: str | None) -> Iterator[str]:
    """The database's URL, migrated: the given one, or an embedded durable Postgres's."""
    from vidjobs.db.migrate import migrate

    if url:
        migrate(url)
        yield url
        return
    from vidjobs.devstack.embedded import EmbeddedPostgres

    with tempfile.TemporaryDirectory(prefix="vidjobs-bench-webhooks-") as tmp:
        pg = EmbeddedPostgres(Path(tmp) / "pg", durable=True)
        pg.start()
        try:
            with psycopg.connect(pg.url, autocommit=True) as conn:
                conn.execute("CREATE DATABASE vidjobs")
            migrate(pg.url_for("vidjobs"))
            yield pg.url_for("vidjobs")
        finally:
            pg.stop("fast")


async def prepare(url: str, keys: str, secret: str, rx_url: str) -> str:
    """A fresh tenant with ``secret`` (sealed with ``keys``) and an endpoint on the receiver."""
    tenant = f"bench-webhooks-{uuid.uuid4().hex[:8]}"
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        if await secret_create(conn, tenant, Sealer(keys).seal(secret)) is None:
            raise RuntimeError(f"tenant {tenant} already has a signing secret")
        await endpoint_add(conn, tenant, rx_url)
    return tenant


async def unregister(url: str, tenant: str, rx_url: str) -> None:
    """Disable the endpoint: later completions of the tenant's jobs send nothing."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await endpoint_disable(conn, tenant, url=rx_url, reason="bench/webhooks.py ended")


# -- phases 1 and 3: jobs completing, the dispatcher delivering ------------------------------


@dataclass
class PhaseResult:
    """What one completion phase measured."""

    n: int
    delivered: int
    latencies_s: list[float]
    span_s: float | None  # first finished_at -> last arrival
    complete_s: float  # the completion batches, first to last
    rx: dict[str, Any]
    outbox: dict[str, Any]
    busy: float  # this process's (the dispatcher's and the completions') share of one core
    example_body: bytes = b""

    @property
    def per_s(self) -> float | None:
        return self.delivered / self.span_s if self.span_s else None


async def completion_phase(
    url: str,
    tenant: str,
    rx: ReceiverProcess,
    settings: DispatchSettings,
    args: argparse.Namespace,
    *,
    fail_ratio: float,
    timeout_s: float,
    label: str,
) -> PhaseResult:
    """Insert, claim and complete ``args.n`` jobs with a dispatcher running; wait for the 2xx."""
    n = args.n
    pool = await open_pool(DatabaseSettings(url=url))
    dispatcher = Dispatcher(
        pool, settings, Sealer(settings.secret_keys), dispatcher_id=f"bench-{label}"
    )
    async with (
        httpx.AsyncClient(base_url=rx.base, timeout=30, trust_env=False) as control,
        await psycopg.AsyncConnection.connect(url, autocommit=True) as conn,
    ):
        ids = await job_insert_many(conn, [NewJob(tenant=tenant, pipeline=PIPELINE)] * n)
        held: list[tuple[uuid.UUID, uuid.UUID, str | None]] = []
        while len(held) < n:
            claimed = await job_claim(
                conn,
                worker_id=f"bench-{label}",
                batch_size=min(200, n - len(held)),
                lease_seconds=900,
                pipelines=[PIPELINE],
            )
            if not claimed:
                raise RuntimeError(f"claimed {len(held)} of {n} jobs, then nothing")
            for job in claimed:
                assert job.lease_token is not None
                held.append((job.job_id, job.lease_token, "out"))
        await rx_reset(control, fail_ratio, args.seed)
        task = asyncio.create_task(dispatcher.run())
        try:
            await asyncio.sleep(0.2)  # the dispatcher is up, polling an empty outbox
            t0, cpu0 = time.perf_counter(), time.process_time()
            for i in range(0, n, args.batch):
                batch = held[i : i + args.batch]
                done = await job_complete_many(conn, batch)
                if len(done) != len(batch):
                    raise RuntimeError(f"completed {len(done)} of a batch of {len(batch)}")
                dispatcher.poke()  # as a worker's queue does after its completions commit
            complete_s = time.perf_counter() - t0
            log(f"  {label}: {n} jobs completed in {complete_s:.2f} s; waiting for the 2xx")
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline:
                if (await rx_get(control, "stats"))["unique"] >= n:
                    break
                await asyncio.sleep(0.05)
            else:
                log(f"  {label}: not every event delivered within {timeout_s:.0f} s")
            busy = (time.process_time() - cpu0) / (time.perf_counter() - t0)
        finally:
            dispatcher.stop()
            await task
            await pool.close()
        got = await rx_get(control, "results")
        cur = await conn.execute(
            "SELECT 'msg_' || replace(job_id::text, '-', ''), extract(epoch FROM finished_at)"
            " FROM vidjobs.jobs WHERE job_id = ANY(%s)",
            (ids,),
        )
        finished = {wid: float(at) for wid, at in await cur.fetchall()}
        cur = await conn.execute(
            "SELECT count(*), count(*) FILTER (WHERE state = 'delivered'),"
            " coalesce(sum(attempts), 0), coalesce(max(attempts), 0)"
            " FROM vidjobs.webhook_deliveries WHERE job_id = ANY(%s)",
            (ids,),
        )
        row = await cur.fetchone()
        assert row is not None
        outbox = {
            "rows": int(row[0]), "delivered": int(row[1]), "attempts": int(row[2]),
            "max_attempts": int(row[3]),
        }  # fmt: skip
        cur = await conn.execute(
            "SELECT job, occurred_at FROM vidjobs.webhook_deliveries WHERE job_id = ANY(%s)"
            " LIMIT 1",
            (ids,),
        )
        sample = await cur.fetchone()
    arrivals: dict[str, float] = {
        wid: at for wid, at in got.pop("delivered").items() if wid in finished
    }
    latencies = [at - finished[wid] for wid, at in arrivals.items()]
    span = max(arrivals.values()) - min(finished.values()) if arrivals else None
    body = b""
    if sample is not None:  # the event exactly as the dispatcher builds it (event_body)
        job, occurred_at = sample
        event = {
            "type": "job.completed",
            "timestamp": occurred_at,
            "data": job_status(snapshot_job(job)),
        }
        body = msgspec.json.encode(event)
    return PhaseResult(
        n=n,
        delivered=len(arrivals),
        latencies_s=latencies,
        span_s=span,
        complete_s=complete_s,
        rx=got,
        outbox=outbox,
        busy=round(busy, 2),
        example_body=body,
    )


# -- phase 2: the HTTP ceiling, no database --------------------------------------------------


async def ceiling_phase(
    rx: ReceiverProcess, secret: str, body: bytes, n: int, concurrency: int
) -> dict[str, Any]:
    """``n`` signed POSTs of ``body`` from a plain client, ``concurrency`` at a time.

    ``2 * concurrency`` unmeasured ones first open the client's connections.
    """
    hook = Webhook(secret)
    text = body.decode()
    latencies: list[float] = []
    codes: dict[int, int] = {}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with (
        httpx.AsyncClient(base_url=rx.base, timeout=30, trust_env=False) as control,
        httpx.AsyncClient(limits=limits, timeout=30, trust_env=False) as client,
    ):
        await rx_reset(control)

        async def loop(todo: Iterator[int]) -> None:
            for i in todo:
                webhook_id = f"msg_ceiling{i:08d}"
                now = datetime.now(UTC)
                headers = {
                    "content-type": "application/json",
                    "webhook-id": webhook_id,
                    "webhook-timestamp": str(int(now.timestamp())),
                    "webhook-signature": hook.sign(webhook_id, now, text),
                }
                t = time.perf_counter()
                resp = await client.post(rx.url, content=body, headers=headers)
                latencies.append(time.perf_counter() - t)
                codes[resp.status_code] = codes.get(resp.status_code, 0) + 1

        warm = iter(range(n, n + 2 * concurrency))  # the connections open, unmeasured
        await asyncio.gather(*(loop(warm) for _ in range(concurrency)))
        latencies.clear()
        codes.clear()
        todo = iter(range(n))
        t0, cpu0 = time.perf_counter(), time.process_time()
        await asyncio.gather(*(loop(todo) for _ in range(concurrency)))
        elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        stats = await rx_get(control, "stats")
    return {
        "per_s": n / elapsed,
        "p50": pct(latencies, 0.5),
        "p99": pct(latencies, 0.99),
        "codes": codes,
        "unique": stats["unique"] - 2 * concurrency,
        "busy": stats["busy"],
        "client_busy": round(cpu / elapsed, 2),  # this process's share of one core
    }


# -- main ------------------------------------------------------------------------------------


def describe(label: str, r: PhaseResult) -> None:
    rate = f"{r.per_s:.0f}" if r.per_s else "-"
    print(
        f"{label}: {r.delivered}/{r.n} delivered, {rate} deliveries/s "
        f"(completions took {r.complete_s:.2f} s), state change -> delivery "
        f"p50 {ms(pct(r.latencies_s, 0.5))} ms, p99 {ms(pct(r.latencies_s, 0.99))} ms, "
        f"max {ms(max(r.latencies_s, default=None))} ms; this process busy {r.busy}; "
        f"receiver {r.rx}; outbox {r.outbox}",
        flush=True,
    )


async def run(url: str, args: argparse.Namespace) -> dict[str, Any]:
    keys = generate_key()
    secret = new_secret()
    rx = ReceiverProcess(secret)  # it verifies with the secret; the endpoint is its URL
    rx.start()
    tenant = ""
    try:
        tenant = await prepare(url, keys, secret, rx.url)
        log(f"receiver pid {rx.proc.pid} on {rx.url}; tenant {tenant}")
        base: dict[str, Any] = {
            "secret_keys": keys, "targets": LOOPBACK, "poll_interval_s": args.poll_interval,
            "concurrency": args.concurrency,
        }  # fmt: skip

        log(f"phase 1: {args.n} jobs completing, a clean receiver")
        clean = await completion_phase(
            url, tenant, rx, DispatchSettings(**base), args,
            fail_ratio=0.0, timeout_s=args.timeout, label="clean",
        )  # fmt: skip
        describe("clean", clean)

        log(f"phase 2: the ceiling, {args.n} signed POSTs from a plain httpx client")
        ceiling = await ceiling_phase(rx, secret, clean.example_body, args.n, args.concurrency)
        print(
            f"ceiling: {ceiling['per_s']:.0f} requests/s at concurrency {args.concurrency} "
            f"(request p50 {ms(ceiling['p50'])} ms, p99 {ms(ceiling['p99'])} ms, "
            f"answers {ceiling['codes']}, {ceiling['unique']} unique at the receiver, "
            f"receiver busy {ceiling['busy']}, client busy {ceiling['client_busy']}); "
            f"body {len(clean.example_body)} bytes",
            flush=True,
        )

        log(f"phase 3: {args.n} jobs completing, the receiver failing {args.fail_ratio:.0%}")
        flappy = DispatchSettings(
            **base, retry_base_s=args.retry_base, retry_max_delay_s=args.retry_max_delay
        )
        flaps = await completion_phase(
            url, tenant, rx, flappy, args,
            fail_ratio=args.fail_ratio, timeout_s=args.flaps_timeout, label="flaps",
        )  # fmt: skip
        describe("flaps", flaps)
    finally:
        if tenant:  # nothing more is sent there, even from a database that outlives this run
            with contextlib.suppress(psycopg.Error):
                await unregister(url, tenant, rx.url)
        rx.stop()

    ratio = clean.per_s / ceiling["per_s"] if clean.per_s else None
    if ratio is not None:
        print(f"ratio: dispatcher {clean.per_s:.0f}/s vs ceiling {ceiling['per_s']:.0f}/s = "
              f"{ratio:.2f}", flush=True)  # fmt: skip
    return {
        "bench": "webhooks",
        "n": args.n,
        "concurrency": args.concurrency,
        "deliveries_per_s": round(clean.per_s, 1) if clean.per_s else None,
        "delivery_ms_p50": ms(pct(clean.latencies_s, 0.5)),
        "delivery_ms_p99": ms(pct(clean.latencies_s, 0.99)),
        "delivered": clean.delivered,
        "ceiling_per_s": round(ceiling["per_s"], 1),
        "ratio_to_ceiling": round(ratio, 3) if ratio is not None else None,
        "completion_s": round(clean.complete_s, 3),
        "clean_attempts": clean.outbox["attempts"],
        "clean_repeats": clean.rx["repeats"],
        "delivered_after_flaps": flaps.delivered,
        "flaps_attempts": flaps.outbox["attempts"],
        "flaps_max_attempts": flaps.outbox["max_attempts"],
        "flaps_answered_500": flaps.rx["failed"],
        "flaps_requests": flaps.rx["requests"],
        "flaps_repeats": flaps.rx["repeats"],
        "flaps_delivery_ms_p50": ms(pct(flaps.latencies_s, 0.5)),
        "flaps_delivery_ms_p99": ms(pct(flaps.latencies_s, 0.99)),
        "flaps_deliveries_per_s": round(flaps.per_s, 1) if flaps.per_s else None,
        "bad_signatures": clean.rx["bad"] + flaps.rx["bad"],
        "receiver_busy": {
            "clean": clean.rx["busy"],
            "ceiling": ceiling["busy"],
            "flaps": flaps.rx["busy"],
        },
        "bench_process_busy": {
            "clean": clean.busy,
            "ceiling": ceiling["client_busy"],
            "flaps": flaps.busy,
        },
        "receiver_connections": {
            "clean": clean.rx["connections"],
            "flaps": flaps.rx["connections"],
        },
        "outbox_delivered": clean.outbox["delivered"] + flaps.outbox["delivered"],
        "args": vars(args) | {"database_url": bool(args.database_url)},
        "t_wall": time.time(),
    }


def main() -> None:
    """Run the phases; print one JSON line last."""
    default_concurrency = DispatchSettings.model_fields["concurrency"].default
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--n", type=int, default=1000, help="jobs per completion phase")
    ap.add_argument("--concurrency", type=int, default=default_concurrency,
                    help="the dispatcher's deliveries in flight, and the ceiling client's "
                         "(default: the product's)")  # fmt: skip
    ap.add_argument("--database-url", default=os.environ.get("DATABASE_URL"),
                    help="a scratch database (default: DATABASE_URL, else an embedded "
                         "durable Postgres)")  # fmt: skip
    ap.add_argument("--batch", type=int, default=100, help="jobs per job_complete_many")
    ap.add_argument("--poll-interval", type=float, default=0.05, help="the dispatcher's, s")
    ap.add_argument("--fail-ratio", type=float, default=0.5, help="phase 3's 500s")
    ap.add_argument("--seed", type=int, default=1, help="seed of phase 3's failures")
    ap.add_argument("--retry-base", type=float, default=0.05, help="phase 3's retry base, s")
    ap.add_argument("--retry-max-delay", type=float, default=0.5, help="phase 3's cap, s")
    ap.add_argument("--timeout", type=float, default=60.0, help="phase 1's wait, s")
    ap.add_argument("--flaps-timeout", type=float, default=120.0, help="phase 3's wait, s")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)

    with database(args.database_url) as url:
        res = asyncio.run(run(url, args))
    if res["delivered_after_flaps"] != args.n:
        log(f"delivered_after_flaps {res['delivered_after_flaps']} != {args.n}")
    print(json.dumps(res), flush=True)


if __name__ == "__main__":
    main()
