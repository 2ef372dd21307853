"""Acknowledged payments end to end: signed Stripe webhooks into `paybot serve` (web and worker in one process),
each payment matched to its own imported invoice, each customer thanked by email through a local fake SendGrid.

A payment counts when SendGrid has accepted its customer's email, not when its webhook was answered.

    .venv/bin/python benchmarks/throughput.py [--engine sqlite|postgresql] [--ingest-mode inline|deferred|both]
                                              [--rate 1000] [--seconds 60] [--latency-rate 200]
                                              [--latency-seconds 20] [--drain-seconds 60] [--workers 0]
                                              [--deliveries 5000] [--provider-ms 100]
                                              [--scaleout-concurrency 10] [--skip …]

Phases, each on a fresh copy of one seeded database, all stopping by themselves (about 4 minutes per mode):
  ceiling     the same load generator against a bare aiohttp handler (read the body, answer 200): req/s.
  latency     webhooks offered open loop at --latency-rate for --latency-seconds: the webhook's answer p99 and
              webhook → SendGrid call p99 (the email's arrival at the fake, on the same monotonic clock).
  throughput  webhooks offered open loop at --rate for --seconds: webhooks answered/s, payments acknowledged/s
              (emails accepted), the backlog (answered, not yet acknowledged) at the start and end of the window,
              then a drain of at most --drain-seconds; server CPU (every paybot process, /proc) per payment
              acknowledged.
  delivery    --deliveries queued emails, SendGrid taking --provider-ms per call, one `paybot worker`:
              deliveries/s.
  scaleout    the same backlog delivered by one worker, then by two (PostgreSQL), each sending
              --scaleout-concurrency at a time: deliveries/s of both, the ratio, and every email sent once.
At the end of each paybot phase every paybot process is SIGKILLed and the database checked: one webhook_events row
per webhook answered 2xx, one payment per event, no email accepted twice, an intact audit chain.
See benchmarks/README.md for how to read the output.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shlex
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import web
from sqlalchemy import func, insert, select, text
from sqlalchemy.engine import Connection

# The sibling benchmarks (run from the repository root: this directory is on sys.path) and the fake SendGrid.
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))
from flood import RawHttp, child, free_port, load_average, paced, percentile, wait_healthy  # noqa: E402
from webhooks import (  # noqa: E402
    POSTGRES_ADMIN_URL, SECRET, admin_execute, announced_port, cpu_seconds, serve_announced, server,
)

SENDGRID_KEY = "SG.test-key"  # tests.fakes.sendgrid.API_KEY
AUDIT_KEY = "benchmark-audit-key-0123456789abcdef"
INVOICE_MINOR = 125_000
START_TIMEOUT = 60.0
REQUEST_TIMEOUT = 30.0
SAMPLE = 1.0  # seconds between samples of the fake's count
#: The latency phase also reports the p99 of what was sent after this many seconds: a freshly started process
#: compiles statements and opens connections in its first moments, which a service running for days pays once.
STEADY_AFTER = 1.0


def email_of(n: int) -> str:
    return f"c{n:06d}@example.com"


def invoice_number(n: int) -> str:
    return f"INV-{n:06d}"


# --- the fake SendGrid (a child process: `throughput.py _sendgrid DELAY_MS`) -------------------------------------

async def fake_sendgrid(delay_ms: float) -> None:
    """tests.fakes.sendgrid's SendGrid v3 Mail Send, taking `delay_ms` per call; `GET /stats` says when each
    recipient's email was accepted (time.monotonic(), the same clock in every process) and how often."""
    from tests.fakes.sendgrid import FakeSendGrid

    fake = FakeSendGrid()
    arrivals: dict[str, float] = {}
    repeats: Counter[str] = Counter()
    mail_send = fake.mail_send

    async def timed(request: web.Request) -> web.StreamResponse:
        if delay_ms:
            await asyncio.sleep(delay_ms / 1000)
        response = await mail_send(request)
        if response.status == 202:
            for mail in fake.accepted:
                for personalization in mail["personalizations"]:
                    for to in personalization["to"]:
                        if to["email"] in arrivals:
                            repeats[to["email"]] += 1
                        else:
                            arrivals[to["email"]] = time.monotonic()
        fake.accepted.clear()
        return response

    async def stats(request: web.Request) -> web.Response:
        since = float(request.query.get("since", "-1"))
        return web.json_response({"accepted": len(arrivals), "repeats": sum(repeats.values()),
                                  "arrivals": {k: v for k, v in arrivals.items() if v > since}
                                  if request.query.get("arrivals") else {}})

    app = web.Application()  # the fake's handler, timed and counted (its own app remembers every request)
    app.router.add_post("/v3/mail/send", timed)
    app.router.add_get("/stats", stats)
    await serve_announced(app)


@dataclass
class Stats:
    accepted: int                # distinct recipients whose email SendGrid accepted
    repeats: int                 # emails accepted for a recipient that already had one
    arrivals: dict[str, float]   # recipient → time.monotonic() of its first email (when asked for)


async def sendgrid_stats(port: int, arrivals: bool = False) -> Stats:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        query = "?arrivals=1" if arrivals else ""
        writer.write(f"GET /stats{query} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        raw = await reader.read()
    finally:
        writer.close()
    found = json.loads(raw.partition(b"\r\n\r\n")[2])
    return Stats(int(found["accepted"]), int(found["repeats"]), dict(found["arrivals"]))


# --- the database ----------------------------------------------------------------------------------------------------

def seed_rows(conn: Connection, invoices: int, deliveries: int) -> None:
    """`invoices` customers, each with one open invoice (both known to Stripe), as an import leaves them; and
    `deliveries` emails waiting in the outbox for the delivery phase (in a copy of its own). Core inserts: seeding
    is not what is measured."""
    from bot.storage import models

    if invoices:
        conn.execute(insert(models.Customer), [
            {"id": f"C{n}", "name": f"Customer {n}", "email": email_of(n), "phone": None, "country": "US",
             "locale": "en-US", "timezone": None, "channels": ["email"], "slack_channel": None,
             "teams_conversation": None} for n in range(1, invoices + 1)])
        conn.execute(insert(models.Invoice), [
            {"number": invoice_number(n), "customer_id": f"C{n}", "currency": "USD",
             "amount_minor": INVOICE_MINOR, "paid_minor": 0, "issued_on": None, "due_on": None}
            for n in range(1, invoices + 1)])
        conn.execute(insert(models.ExternalRef), [
            {"entity": entity, "source": "stripe", "external_id": f"{prefix}{n:06d}", "entity_id": entity_id}
            for n in range(1, invoices + 1)
            for entity, prefix, entity_id in (("customer", "cus_", f"C{n}"), ("invoice", "in_", invoice_number(n)))])
    if deliveries:
        at = datetime.now(UTC)
        conn.execute(insert(models.Notification), [
            {"idempotency_key": f"bench:{n}", "payment_id": None, "channel": "sendgrid", "audience": "finance",
             "purpose": "finance_card", "recipient": email_of(n), "fallbacks": [], "status": "pending",
             "attempts": 0, "available_at": at, "created_at": at,
             "payload": {"from": {"email": "billing@example.com"}, "subject": f"Bench {n}",
                         "personalizations": [{"to": [{"email": email_of(n)}]}],
                         "content": [{"type": "text/plain", "value": "Thank you."}]}}
            for n in range(1, deliveries + 1)])


class Scratch:
    """Seeded databases for the phases; each phase gets a fresh copy; PostgreSQL ones dropped at the end."""

    def __init__(self, workdir: Path, engine: str) -> None:
        self.workdir, self.engine = workdir, engine
        self.made: list[str] = []
        self.n = 0

    def pg(self, name: str) -> str:
        from sqlalchemy.engine import make_url
        return make_url(POSTGRES_ADMIN_URL).set(database=name).render_as_string(hide_password=False)

    async def template(self, kind: str, invoices: int, deliveries: int) -> None:
        from bot.storage import migrate
        from bot.storage.engine import create_engine

        if self.engine == "sqlite":
            url = f"sqlite+aiosqlite:///{self.workdir / f'{kind}.db'}"
        else:
            name = f"paybot_bench_{os.getpid()}_{kind}"
            await admin_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', f'CREATE DATABASE "{name}"')
            self.made.append(name)
            url = self.pg(name)
        engine = create_engine(url)
        try:
            await migrate.upgrade(engine)
            async with engine.begin() as conn:
                await conn.run_sync(seed_rows, invoices, deliveries)
            if self.engine == "postgresql":  # as `paybot import` leaves them (`Database.analyze`)
                async with engine.begin() as conn:
                    await conn.execute(text("ANALYZE"))
        finally:
            await engine.dispose()

    async def fresh(self, kind: str) -> str:
        self.n += 1
        if self.engine == "sqlite":
            path = self.workdir / f"run{self.n}.db"
            shutil.copy(self.workdir / f"{kind}.db", path)
            return f"sqlite+aiosqlite:///{path}"
        name = f"paybot_bench_{os.getpid()}_run{self.n}"
        await admin_execute(f'CREATE DATABASE "{name}" TEMPLATE "paybot_bench_{os.getpid()}_{kind}"')
        self.made.append(name)
        return self.pg(name)

    async def drop(self) -> None:
        if self.made:
            await admin_execute(*(f'DROP DATABASE IF EXISTS "{n}" WITH (FORCE)' for n in reversed(self.made)))


async def check_database(database_url: str, answered: int) -> list[str]:
    """What must hold after SIGKILL: every answered webhook stored, one payment each, an intact chain."""
    from bot.domain.audit import Keyring
    from bot.storage import audit, models
    from bot.storage.engine import create_engine, sessions

    engine = create_engine(database_url)
    problems = []
    try:
        async with sessions(engine)() as session:
            events = int(await session.scalar(select(func.count()).select_from(models.WebhookEvent)) or 0)
            payments = int(await session.scalar(select(func.count()).select_from(models.Payment)) or 0)
            duplicates = int(await session.scalar(select(func.count()).select_from(models.Payment).where(
                models.Payment.duplicate_of.is_not(None))) or 0)
            verification = await audit.verify(session, Keyring.of(AUDIT_KEY))
    finally:
        await engine.dispose()
    if events < answered:
        problems.append(f"{events} webhook_events stored, {answered} answered 2xx")
    if payments > events or duplicates:
        problems.append(f"{payments} payments for {events} events, {duplicates} recorded as duplicates")
    if verification.broken is not None:
        problems.append(f"audit chain broken at {verification.broken.seq}: {verification.broken.reason}")
    return problems


# --- the servers -----------------------------------------------------------------------------------------------------

def environment(database_url: str, port: int, sendgrid_port: int, args: argparse.Namespace,
                ingest_mode: str) -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", ""), "DATABASE_URL": database_url, "HOST": "127.0.0.1",
            "PORT": str(port), "LOG_LEVEL": args.log_level, "INGEST_MODE": ingest_mode, "AUDIT_KEY": AUDIT_KEY,
            "STRIPE_WEBHOOK_SECRET": SECRET, "SENDGRID_API_KEY": SENDGRID_KEY,
            "SENDGRID_FROM_EMAIL": "billing@example.com", "SENDGRID_BASE_URL": f"http://127.0.0.1:{sendgrid_port}",
            # PYTHONPATH passes through: to measure another checkout's code with this script
            **({"PYTHONPATH": os.environ["PYTHONPATH"]} if os.environ.get("PYTHONPATH") else {})}


@dataclass
class Paybot:
    port: int
    pids: list[int]
    sendgrid: int
    logs: Path

    def cpu(self) -> float:
        return sum(cpu_seconds(pid) for pid in self.pids)


async def wait_listening(database_url: str, workers: int, ingest_mode: str) -> None:
    """Until `workers` processes LISTEN for what they work on (each does once it has started): stored events in
    deferred ingest, else queued messages. PostgreSQL only: on SQLite a worker shares nothing to listen on."""
    from bot.storage.engine import create_engine

    if not database_url.startswith("postgresql"):
        return
    channel = "paybot_inbox" if ingest_mode == "deferred" else "paybot_outbox"
    engine = create_engine(database_url)
    deadline = time.monotonic() + START_TIMEOUT
    try:
        while time.monotonic() < deadline:
            async with engine.connect() as conn:
                listening = (await conn.execute(text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND query LIKE :listen"), {"listen": f"LISTEN%{channel}%"})).scalar_one()
            if listening >= workers:
                return
            await asyncio.sleep(0.1)
    finally:
        await engine.dispose()
    raise RuntimeError(f"{workers} workers did not come up (see the log)")


@contextlib.asynccontextmanager
async def paybot(args: argparse.Namespace, database_url: str, workdir: Path, ingest_mode: str, *,
                 provider_ms: float = 0.0, web_process: bool = True, workers: int = 0,
                 settings: dict[str, str] | None = None) -> AsyncIterator[Paybot]:
    """The fake SendGrid, then `python -m bot serve` (with its worker unless --workers) and `python -m bot
    worker` × workers; all SIGKILLed at the end."""
    logs = workdir / f"paybot-{free_port()}.log"
    async with contextlib.AsyncExitStack() as stack:
        sendgrid = await stack.enter_async_context(child(
            [sys.executable, __file__, "_sendgrid", str(provider_ms)], stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL))  # a killed sender's reset, no news
        assert sendgrid.stdout is not None
        sendgrid_port = await asyncio.wait_for(announced_port(sendgrid.stdout), START_TIMEOUT)
        port = free_port()
        env = environment(database_url, port, sendgrid_port, args, ingest_mode) | (settings or {})
        log = stack.enter_context(logs.open("wb"))
        pids = []
        if web_process:
            serve = [*shlex.split(args.profile_with), sys.executable, "-m", "bot", "serve",
                     *(["--no-worker"] if workers else [])]
            process = await stack.enter_async_context(child(serve, cwd=workdir, stdout=log, stderr=log, env=env))
            await wait_healthy(port, process)
            pids.append(process.pid)
            if args.profile_with:  # the profiler's child is the server; the profiler writes when interrupted
                stack.push_async_callback(interrupt, process)
        for _ in range(workers):
            process = await stack.enter_async_context(child(
                [*shlex.split(args.profile_with), sys.executable, "-m", "bot", "worker"], cwd=workdir, stdout=log,
                stderr=log, env=env))
            pids.append(process.pid)
            if args.profile_with:  # each worker under a profiler of its own (name its report by its pid)
                stack.push_async_callback(interrupt, process)
        if workers:  # as deployed: the workers are up before the first payment arrives
            await wait_listening(database_url, workers, ingest_mode)
        try:
            yield Paybot(port, pids, sendgrid_port, logs)
        finally:
            if args.show_log:
                lines = logs.read_text(errors="replace").splitlines()
                warnings = [line for line in lines if " INFO " not in line]
                print(f"--- paybot log: {len(lines)} lines, {len(warnings)} not INFO; the last of those:",
                      *warnings[-args.show_log:], sep="\n  ")


async def interrupt(process: asyncio.subprocess.Process) -> None:
    """SIGINT, then up to 60 s for a profiler to write its report (SIGKILL follows regardless)."""
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signal.SIGINT)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(process.wait(), 60)


# --- the load --------------------------------------------------------------------------------------------------------

def signed_event(n: int, tag: str) -> tuple[bytes, str]:
    """Stripe's `invoice.paid` for invoice n, paid in full by its own customer."""
    from bot.integrations.sources.stripe import sign

    now = int(time.time())
    body = json.dumps({
        "id": f"evt_{tag}_{n:06d}", "object": "event", "api_version": "2025-05-28.basil", "created": now,
        "livemode": False, "pending_webhooks": 1, "type": "invoice.paid",
        "data": {"object": {
            "id": f"in_{n:06d}", "object": "invoice", "number": invoice_number(n), "status": "paid",
            "currency": "usd", "amount_due": INVOICE_MINOR, "amount_paid": INVOICE_MINOR, "amount_remaining": 0,
            "total": INVOICE_MINOR, "customer": f"cus_{n:06d}", "customer_name": f"Customer {n}",
            "customer_email": email_of(n), "customer_phone": None,
            "hosted_invoice_url": "https://invoice.stripe.com/i/acct_1/bench", "metadata": {}, "livemode": False,
        }},
    }).encode()
    return body, sign(body, SECRET, now)


@dataclass
class Offered:
    sent: dict[int, float] = field(default_factory=dict)         # invoice n → monotonic time the request began
    answer: dict[int, float] = field(default_factory=dict)       # n → seconds to a 2xx answer
    errors: Counter[str] = field(default_factory=Counter)
    shed: int = 0                                                # not sent: --max-in-flight were waiting


async def offer(port: int, first: int, rate: float, seconds: float, tag: str, out: Offered,
                max_in_flight: int) -> tuple[RawHttp, set[asyncio.Task[None]]]:
    """Webhooks for invoices first, first+1, … at `rate`/s for `seconds` (open loop), tallied in `out` as they are
    answered. Returns with requests still in flight (the caller waits for `tasks`)."""
    http, tasks = RawHttp(port, REQUEST_TIMEOUT), set[asyncio.Task[None]]()
    events: dict[int, tuple[bytes, str]] = {}

    async def one(n: int) -> None:
        body, signature = events.pop(n)
        started = time.monotonic()
        out.sent[n] = started
        status = await http.post(("/webhooks/stripe", body, {"Content-Type": "application/json",
                                                               "Stripe-Signature": signature}))
        if status.startswith("2"):
            out.answer[n] = time.monotonic() - started
        else:
            out.errors[status] += 1

    def launch(i: int) -> None:
        if len(tasks) >= max_in_flight:
            out.shed += 1
            return
        n = first + i
        events[n] = signed_event(n, tag)
        task = asyncio.ensure_future(one(n))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    await paced(rate, seconds, asyncio.Event(), launch)
    return http, tasks


async def settle(tasks: set[asyncio.Task[None]], timeout: float) -> None:
    if tasks:
        await asyncio.wait(set(tasks), timeout=timeout)


async def acknowledged_by(sendgrid: int, target: int, timeout: float) -> tuple[int, float]:
    """Wait until the fake has accepted `target` emails or `timeout` passes; (count, seconds waited)."""
    started = time.monotonic()
    while True:
        accepted = (await sendgrid_stats(sendgrid)).accepted
        if accepted >= target or time.monotonic() - started >= timeout:
            return accepted, time.monotonic() - started
        await asyncio.sleep(0.25)


# --- the phases ------------------------------------------------------------------------------------------------------

async def ceiling(args: argparse.Namespace) -> float:
    """The bare handler, closed loop with 64 in flight on the same raw connections, for 3 s: req/s."""
    async with server("bare") as (port, _):
        http, done = RawHttp(port, REQUEST_TIMEOUT), 0
        body, signature = signed_event(1, "bare")
        request = ("/webhooks/stripe", body, {"Content-Type": "application/json", "Stripe-Signature": signature})
        deadline = time.monotonic() + 3.0

        async def loop() -> None:
            nonlocal done
            while time.monotonic() < deadline:
                if (await http.post(request)).startswith("2"):
                    done += 1
        started = time.monotonic()
        await asyncio.gather(*(loop() for _ in range(64)))
        http.close()
        return done / (time.monotonic() - started)


@dataclass
class Latency:
    offered: int
    answered: int
    answer_p50: float
    answer_p99: float
    e2e_p50: float
    e2e_p99: float
    steady_p99: float  # of the payments sent after the first second (the process warm: `STEADY_AFTER`)
    acknowledged: int
    shed: int
    problems: list[str]
    stages: str = ""


async def stages(database_url: str) -> str:
    """Where the time went, from the rows' own timestamps (paybot's clock): the event stored → its payment
    recorded (and the email queued) → the email claimed and marked started (its lease's start) → its outcome
    recorded (after the send)."""
    from datetime import timedelta

    from bot.settings import Settings
    from bot.storage import models
    from bot.storage.engine import create_engine, sessions

    lease = timedelta(seconds=Settings.model_fields["worker_lease_seconds"].default)
    engine = create_engine(database_url)
    try:
        async with sessions(engine)() as session:
            rows = (await session.execute(
                select(models.WebhookEvent.received_at, models.Payment.recorded_at, models.Notification.lease_until,
                       models.Notification.sent_at)
                .join(models.Payment, models.Payment.webhook_event_id == models.WebhookEvent.id)
                .join(models.Notification, models.Notification.payment_id == models.Payment.id)
                .where(models.Notification.sent_at.is_not(None)))).all()
    finally:
        await engine.dispose()
    spans: dict[str, list[float]] = {"stored → recorded": [], "recorded → claimed": [], "claimed → outcome recorded": []}
    for received, recorded, lease_until, sent in rows:
        assert lease_until is not None and sent is not None  # rows sent
        instants: list[datetime] = [received, recorded, lease_until - lease, sent]
        for name, start, end in zip(spans, instants, instants[1:]):
            spans[name].append((end - start).total_seconds())  # seconds: `percentile` gives milliseconds
    return "; ".join(f"{name} p50 {percentile(ms, 50):.1f} ms p99 {percentile(ms, 99):.1f} ms"
                     for name, ms in spans.items() if ms)


async def latency(args: argparse.Namespace, scratch: Scratch, workdir: Path, mode: str) -> Latency:
    database_url = await scratch.fresh("payments")
    async with paybot(args, database_url, workdir, mode, workers=args.workers) as bot:
        out = Offered()
        http, tasks = await offer(bot.port, 1, args.latency_rate, args.latency_seconds, f"l{mode[0]}", out,
                                   args.max_in_flight)
        await settle(tasks, REQUEST_TIMEOUT)
        http.close()
        await acknowledged_by(bot.sendgrid, len(out.answer), REQUEST_TIMEOUT)
        arrivals = (await sendgrid_stats(bot.sendgrid, arrivals=True)).arrivals
    e2e = [arrivals[email_of(n)] - t if email_of(n) in arrivals else float("inf") for n, t in out.sent.items()]
    began = min(out.sent.values(), default=0.0)
    steady = [e for e, t in zip(e2e, out.sent.values()) if t - began >= STEADY_AFTER]
    problems = [f"{n} × {why}" for why, n in out.errors.items()] + \
        await check_database(database_url, len(out.answer))
    return Latency(len(out.sent), len(out.answer), percentile(list(out.answer.values()), 50),
                   percentile(list(out.answer.values()), 99), percentile(e2e, 50), percentile(e2e, 99),
                   percentile(steady, 99), len(arrivals), out.shed, problems, await stages(database_url))


@dataclass
class Throughput:
    offered: float
    answered_rate: float
    acked_rate: float
    backlog_start: int
    backlog_end: int
    seconds: float
    drained: bool
    drain_seconds: float
    acknowledged: int
    cpu_ms: float
    cpu_ms_window: float
    answer_p99: float
    shed: int
    repeats: int
    problems: list[str]


async def throughput(args: argparse.Namespace, scratch: Scratch, workdir: Path, mode: str) -> Throughput:
    database_url = await scratch.fresh("payments")
    async with paybot(args, database_url, workdir, mode, workers=args.workers) as bot:
        samples: list[tuple[float, int, int, float]] = []  # (t, answered, acknowledged, cpu)
        cpu0, stop, out = bot.cpu(), asyncio.Event(), Offered()

        async def sample() -> None:
            while not stop.is_set():
                acked = (await sendgrid_stats(bot.sendgrid)).accepted
                samples.append((time.monotonic(), len(out.answer), acked, bot.cpu()))
                await asyncio.sleep(SAMPLE)

        sampler = asyncio.create_task(sample())
        first_invoice = 1 + int(args.latency_rate * args.latency_seconds) + 10  # past the latency phase's
        http, tasks = await offer(bot.port, first_invoice, args.rate, args.seconds, f"t{mode[0]}", out,
                                   args.max_in_flight)
        stop.set()
        await sampler
        await settle(tasks, REQUEST_TIMEOUT)
        http.close()
        acked, waited = await acknowledged_by(bot.sendgrid, len(out.answer), args.drain_seconds)
        cpu = bot.cpu() - cpu0
        repeats = (await sendgrid_stats(bot.sendgrid)).repeats
    # The window: from 5 s in (past start-up) to the end of the offered load.
    usable = [s for s in samples if s[0] >= samples[0][0] + 5] or samples
    first, last = usable[0], usable[-1]
    span = max(last[0] - first[0], 1e-9)
    problems = [f"{n} × {why}" for why, n in out.errors.items()] + \
        await check_database(database_url, len(out.answer))
    if repeats:
        problems.append(f"{repeats} emails accepted twice")
    return Throughput(
        offered=len(out.sent) / args.seconds, answered_rate=(last[1] - first[1]) / span,
        acked_rate=(last[2] - first[2]) / span, backlog_start=first[1] - first[2], backlog_end=last[1] - last[2],
        seconds=span, drained=acked >= len(out.answer), drain_seconds=waited, acknowledged=acked,
        cpu_ms=cpu * 1000 / max(acked, 1),
        cpu_ms_window=(last[3] - first[3]) * 1000 / max(last[2] - first[2], 1),
        answer_p99=percentile(list(out.answer.values()), 99), shed=out.shed, repeats=repeats,
        problems=problems)


@dataclass
class Delivered:
    rate: float
    sent: int
    seconds: float
    cpu_ms: float
    repeats: int


async def delivery(args: argparse.Namespace, scratch: Scratch, workdir: Path) -> Delivered:
    database_url = await scratch.fresh("outbox")
    async with paybot(args, database_url, workdir, "inline", provider_ms=args.provider_ms, web_process=False,
                      workers=1) as bot:
        # The worker starts sending as soon as it is up: count from the first acceptance.
        started = time.monotonic()
        while (await sendgrid_stats(bot.sendgrid)).accepted == 0 and time.monotonic() - started < 60:
            await asyncio.sleep(0.05)
        first = time.monotonic()
        cpu0 = bot.cpu()
        sent, _ = await acknowledged_by(bot.sendgrid, args.deliveries, 120)
        took = time.monotonic() - first
        cpu = bot.cpu() - cpu0
        repeats = (await sendgrid_stats(bot.sendgrid)).repeats
    return Delivered(sent / took, sent, took, cpu * 1000 / max(sent, 1), repeats)


@dataclass
class ScaledOut:
    one: Delivered
    two: Delivered
    problems: list[str]


async def scaleout(args: argparse.Namespace, scratch: Scratch, workdir: Path) -> ScaledOut:
    """The delivery phase's backlog delivered by one `paybot worker`, then (a fresh copy) by two side by side, each
    sending --scaleout-concurrency at a time: deliveries/s of each, and every email sent exactly once."""
    runs, problems = [], []
    for workers in (1, 2):
        database_url = await scratch.fresh("outbox")
        async with paybot(args, database_url, workdir, "inline", provider_ms=args.provider_ms, web_process=False,
                          workers=workers,
                          settings={"WORKER_CONCURRENCY": str(args.scaleout_concurrency)}) as bot:
            started = time.monotonic()
            while (await sendgrid_stats(bot.sendgrid)).accepted == 0 and time.monotonic() - started < 60:
                await asyncio.sleep(0.05)
            first, cpu0 = time.monotonic(), bot.cpu()
            sent, _ = await acknowledged_by(bot.sendgrid, args.deliveries, 300)
            took, cpu = time.monotonic() - first, bot.cpu() - cpu0
            await asyncio.sleep(2 * SAMPLE)  # an email sent twice would arrive after its first
            repeats = (await sendgrid_stats(bot.sendgrid)).repeats
        runs.append(Delivered(sent / took, sent, took, cpu * 1000 / max(sent, 1), repeats))
        problems += [f"{workers} worker(s): {problem}" for problem in
                     await check_outbox(database_url, args.deliveries, sent, repeats)]
    return ScaledOut(runs[0], runs[1], problems)


async def check_outbox(database_url: str, queued: int, accepted: int, repeats: int) -> list[str]:
    """Every queued email accepted once by the fake, every outbox row sent once (one `notification.sent` entry
    each), an intact chain."""
    from bot.domain.audit import Keyring
    from bot.storage import audit, models
    from bot.storage.engine import create_engine, sessions

    engine = create_engine(database_url)
    try:
        async with sessions(engine)() as session:
            statuses = dict((await session.execute(select(models.Notification.status, func.count())
                                                   .group_by(models.Notification.status))).all())
            sent_entries = int(await session.scalar(select(func.count()).select_from(models.AuditEntry).where(
                models.AuditEntry.kind == "notification.sent")) or 0)
            verification = await audit.verify(session, Keyring.of(AUDIT_KEY))
    finally:
        await engine.dispose()
    problems = []
    if accepted != queued or repeats:
        problems.append(f"{accepted} of {queued} emails accepted, {repeats} accepted twice")
    if statuses.get("sent", 0) != queued or sent_entries != queued:
        problems.append(f"outbox {statuses}, {sent_entries} notification.sent audit entries for {queued} rows")
    if verification.broken is not None:
        problems.append(f"audit chain broken at {verification.broken.seq}: {verification.broken.reason}")
    return problems


# --- the report ------------------------------------------------------------------------------------------------------

async def main(args: argparse.Namespace) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="paybot-throughput-"))
    scratch = Scratch(workdir, args.engine)
    modes = ["inline", "deferred"] if args.ingest_mode == "both" else [args.ingest_mode]
    failed = False
    result: dict[str, Any] = {"engine": args.engine, "workers": args.workers, "load_before": load_average()}
    try:
        invoices = int(args.latency_rate * args.latency_seconds + args.rate * args.seconds) + 100
        print(f"{args.engine}; load average {load_average()}; seeding {invoices} customers and invoices", flush=True)
        if not {"latency", "throughput"} <= args.skip:
            await scratch.template("payments", invoices, 0)
        if not {"delivery", "scaleout"} <= args.skip:
            await scratch.template("outbox", 0, args.deliveries)
        bare = await ceiling(args) if "ceiling" not in args.skip else float("nan")
        print(f"bare aiohttp ceiling: {bare:.0f} req/s", flush=True)
        result["ceiling"] = bare
        for mode in modes:
            if "latency" not in args.skip:
                lat = await latency(args, scratch, workdir, mode)
                print(f"\n[{mode}] latency at {args.latency_rate:g}/s offered for {args.latency_seconds:g} s "
                      f"({lat.shed} not sent: {args.max_in_flight} unanswered): "
                      f"{lat.answered}/{lat.offered} answered 2xx, answer p50 {lat.answer_p50:.1f} ms p99 "
                      f"{lat.answer_p99:.1f} ms; webhook → SendGrid p50 {lat.e2e_p50:.1f} ms p99 {lat.e2e_p99:.1f} ms "
                      f"(after the first {STEADY_AFTER:g} s: p99 {lat.steady_p99:.1f} ms; {lat.acknowledged} acknowledged)\n  stages: {lat.stages}", flush=True)
                result[f"{mode}_latency"] = asdict(lat)
                if lat.problems:
                    print(f"  PROBLEMS: {'; '.join(lat.problems)}")
                    failed = True
            if "throughput" not in args.skip:
                t = await throughput(args, scratch, workdir, mode)
                print(f"\n[{mode}] throughput at {args.rate:g}/s offered ({t.offered:.0f}/s sent, {t.shed} not sent) "
                      f"for {args.seconds:g} s; window {t.seconds:.0f} s:\n"
                      f"  webhooks answered {t.answered_rate:.0f}/s (answer p99 {t.answer_p99:.0f} ms)\n"
                      f"  payments ACKNOWLEDGED {t.acked_rate:.0f}/s ({t.acked_rate / bare:.1%} of bare aiohttp)\n"
                      f"  backlog (answered, not yet acknowledged) {t.backlog_start} → {t.backlog_end} "
                      f"({(t.backlog_end - t.backlog_start) / t.seconds:+.0f}/s)\n"
                      f"  drain: {'done' if t.drained else 'NOT done'} after {t.drain_seconds:.0f} s; "
                      f"{t.acknowledged} acknowledged in all\n"
                      f"  server CPU per acknowledged payment: {t.cpu_ms:.2f} ms (whole run)"
                      + (f", {t.cpu_ms_window:.2f} ms (window)" if t.acked_rate * t.seconds >= 100 else ""),
                      flush=True)
                result[f"{mode}_throughput"] = asdict(t)
                if t.problems:
                    print(f"  PROBLEMS: {'; '.join(t.problems)}")
                    failed = True
        if "delivery" not in args.skip:
            d = await delivery(args, scratch, workdir)
            print(f"\ndelivery: {d.sent} emails, SendGrid taking {args.provider_ms:g} ms a call, one worker: "
                  f"{d.rate:.0f}/s over {d.seconds:.1f} s; worker CPU {d.cpu_ms:.2f} ms each; "
                  f"{d.repeats} accepted twice", flush=True)
            failed |= bool(d.repeats)
            result["delivery"] = asdict(d)
        if "scaleout" not in args.skip and args.engine == "postgresql":  # SQLite: one process writes
            so = await scaleout(args, scratch, workdir)
            print(f"\nscale-out: {args.deliveries} emails, SendGrid taking {args.provider_ms:g} ms a call, "
                  f"{args.scaleout_concurrency} sends at a time per worker:\n"
                  f"  one worker  {so.one.rate:.0f}/s over {so.one.seconds:.1f} s ({so.one.cpu_ms:.2f} ms CPU each)\n"
                  f"  two workers {so.two.rate:.0f}/s over {so.two.seconds:.1f} s ({so.two.cpu_ms:.2f} ms CPU each)\n"
                  f"  two / one: {so.two.rate / so.one.rate:.2f}x; "
                  f"{so.one.repeats + so.two.repeats} accepted twice", flush=True)
            result["scaleout"] = asdict(so) | {"ratio": so.two.rate / so.one.rate}
            if so.problems:
                print(f"  PROBLEMS: {'; '.join(so.problems)}")
                failed = True
        print(f"\nload average at the end: {load_average()}")
        result["load_after"], result["failed"] = load_average(), failed
        print("RESULT " + json.dumps(result, default=str))  # for benchmarks/goals.py
    finally:
        await scratch.drop()
        shutil.rmtree(workdir, ignore_errors=True)
    return 1 if failed else 0


def parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--engine", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--ingest-mode", choices=("inline", "deferred", "both"), default="both")
    parser.add_argument("--rate", type=float, default=1000.0, help="webhooks offered per second (default 1000)")
    parser.add_argument("--seconds", type=float, default=60.0, help="how long they are offered (default 60)")
    parser.add_argument("--latency-rate", type=float, default=200.0, help="for the latency phase (default 200)")
    parser.add_argument("--latency-seconds", type=float, default=20.0)
    parser.add_argument("--max-in-flight", type=int, default=256,
                        help="webhooks unanswered at once, at most; past it the generator skips (counted as not "
                             "sent), as a platform's sender does not open thousands of connections (default 256)")
    parser.add_argument("--drain-seconds", type=float, default=60.0,
                        help="after the load, wait at most this long for the backlog to be acknowledged")
    parser.add_argument("--workers", type=int, default=0,
                        help="0: `serve` with its own worker; N: `serve --no-worker` and N `paybot worker`s")
    parser.add_argument("--deliveries", type=int, default=5000)
    parser.add_argument("--provider-ms", type=float, default=100.0, help="SendGrid's time per call, delivery phase")
    parser.add_argument("--scaleout-concurrency", type=int, default=10,
                        help="scale-out phase: WORKER_CONCURRENCY of each worker (default 10: each worker waits on "
                             "the provider, not on this machine's two cores)")
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument("--show-log", type=int, default=0, metavar="N",
                        help="after each paybot phase, print the last N lines of its log that are not INFO")
    parser.add_argument("--profile-with", default="", metavar="COMMAND",
                        help="start `paybot serve` and each worker under COMMAND, e.g. '.venv/bin/py-spy record --format raw -o "
                             "/tmp/spy.txt --' (interrupted at the end of each phase so that it writes its report)")
    parser.add_argument("--skip", default="",
                        help="comma-separated phases: ceiling,latency,throughput,delivery,scaleout")
    args = parser.parse_args(argv)
    args.skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    if not (0 < args.rate <= 5000 and 0 < args.seconds <= 300 and 0 < args.latency_rate <= 2000
            and 0 < args.latency_seconds <= 120 and 0 <= args.drain_seconds <= 600 and 0 <= args.workers <= 8
            and 0 < args.deliveries <= 100_000 and 0 < args.scaleout_concurrency <= 1000):
        parser.error("--rate 0..5000, --seconds 0..300, --latency-rate 0..2000, --latency-seconds 0..120, "
                     "--drain-seconds 0..600, --workers 0..8, --deliveries 1..100000")
    return args


def entry(argv: Sequence[str]) -> int:
    if argv[:1] == ["_sendgrid"]:
        asyncio.run(fake_sendgrid(float(argv[1])))
        return 0
    return asyncio.run(main(parse(argv)))


if __name__ == "__main__":
    raise SystemExit(entry(sys.argv[1:]))
