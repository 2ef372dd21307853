"""Flood: forged PayPal IPNs and bad Stripe signatures at a target rate against `paybot serve`, while genuine signed
Stripe webhooks arrive at a low rate. What it costs the server, and what it costs PayPal.

    .venv/bin/python benchmarks/flood.py [--seconds 30] [--rate 1000] [--genuine-rate 20] [--quiet-seconds 10]
                                         [--engine sqlite|postgresql] [--ingest-mode inline|deferred]
                                         [--attacks ipn-60k,ipn-small,stripe-bad-signature] [--max-rss-mb 4096]

Three processes on loopback: `python -m bot serve` (web and worker, as deployed; Stripe and PayPal IPN
configured, nothing else), a fake PayPal IPN endpoint that answers INVALID to every postback and counts them, and
this load generator. It stops by itself: the flood lasts `--seconds`, the drain afterwards at most DRAIN_SECONDS,
and the server is killed at the end. See benchmarks/README.md for how to read the output.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import secrets
import shutil
import signal
import socket
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode

import aiohttp
from aiohttp import web
from sqlalchemy import inspect, text

# The sibling benchmark (run from the repository root: its directory is on sys.path): its seeded databases, signed
# Stripe events, child-process handshake and /proc reader.
from webhooks import SECRET, Databases, announced_port, cpu_seconds, serve_announced, stripe_events

RECEIVER = "billing@weld.example"  # public: printed on every PayPal button, so a forger knows it
START_TIMEOUT = 60.0
REQUEST_TIMEOUT = 30.0   # a genuine webhook unanswered this long counts as unanswered (platforms give up sooner)
FLOOD_TIMEOUT = 10.0     # an attacker does not wait for answers: its connection closes, the server's work goes on
DRAIN_SECONDS = 30.0     # after the flood: wait this long at most for in-flight requests and PayPal postbacks
TICK = 0.005


# --- the fake PayPal (a child process: `flood.py _paypal`) ----------------------------------------------------------

async def fake_paypal() -> None:
    """`POST /cgi-bin/webscr` answers INVALID and counts; `GET /stats` says how many postbacks and bytes so far."""
    calls, received = 0, 0

    async def webscr(request: web.Request) -> web.Response:
        nonlocal calls, received
        received += len(await request.read())
        calls += 1
        return web.Response(text="INVALID")

    async def stats(request: web.Request) -> web.Response:
        return web.json_response({"calls": calls, "bytes": received})

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post("/cgi-bin/webscr", webscr)
    app.router.add_get("/stats", stats)
    await serve_announced(app)


@contextlib.asynccontextmanager
async def child(argv: Sequence[str], **kwargs: object) -> AsyncIterator[asyncio.subprocess.Process]:
    """A child process, killed outright (SIGKILL) at the end: only what it committed survives."""
    process = await asyncio.create_subprocess_exec(*argv, **kwargs)  # type: ignore[arg-type]
    try:
        yield process
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGKILL)
            await process.wait()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def server_environment(database_url: str, port: int, paypal_port: int, ingest_mode: str) -> dict[str, str]:
    """Only what `paybot serve` is given here: no .env, nothing inherited but PATH."""
    return {"PATH": os.environ.get("PATH", ""), "DATABASE_URL": database_url, "HOST": "127.0.0.1",
            "PORT": str(port), "LOG_LEVEL": "INFO", "INGEST_MODE": ingest_mode,
            "STRIPE_WEBHOOK_SECRET": SECRET, "PAYPAL_RECEIVER_EMAIL": RECEIVER,
            "PAYPAL_IPN_VERIFY_URL": f"http://127.0.0.1:{paypal_port}/cgi-bin/webscr"}


async def wait_healthy(port: int, process: asyncio.subprocess.Process) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline and process.returncode is None:
            with contextlib.suppress(aiohttp.ClientError):
                async with http.get(f"http://127.0.0.1:{port}/healthz") as resp:
                    if resp.status == 200:
                        return
            await asyncio.sleep(0.2)
    raise RuntimeError("paybot serve did not come up (see its log)")


def memory_kb(pid: int, key: str) -> int:
    """VmRSS (now) or VmHWM (the high-water mark) of a process, from /proc; 0 where there is no /proc."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{key}:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


# --- what the database holds ----------------------------------------------------------------------------------------

@dataclass
class Snapshot:
    rows: dict[str, int]
    bytes: int

    def minus(self, other: Snapshot) -> Snapshot:
        tables = self.rows.keys() | other.rows.keys()
        return Snapshot({t: self.rows.get(t, 0) - other.rows.get(t, 0) for t in sorted(tables)},
                        self.bytes - other.bytes)


async def snapshot(database_url: str) -> Snapshot:
    """Rows in every table there is (tables other branches add, such as `refusals`, included) and the bytes in use:
    SQLite's used pages (free pages excluded), PostgreSQL's database size."""
    from bot.storage.engine import create_engine

    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            tables = await conn.run_sync(lambda sync: inspect(sync).get_table_names())
            rows = {t: int(await conn.scalar(text(f'SELECT count(*) FROM "{t}"')) or 0)
                    for t in tables if t != "alembic_version"}
            if engine.dialect.name == "sqlite":
                pages = await conn.scalar(text("PRAGMA page_count"))
                free = await conn.scalar(text("PRAGMA freelist_count"))
                size = await conn.scalar(text("PRAGMA page_size"))
                used = (int(pages or 0) - int(free or 0)) * int(size or 0)
            else:
                used = int(await conn.scalar(text("SELECT pg_database_size(current_database())")) or 0)
    finally:
        await engine.dispose()
    return Snapshot(rows, used)


# --- the requests ---------------------------------------------------------------------------------------------------

Request = tuple[str, bytes, dict[str, str]]  # path, body, headers


def forged_ipn(size: int) -> Callable[[int], Request]:
    """A Completed IPN for a real invoice, addressed to us, that PayPal never sent: padded to `size` bytes."""
    fields = urlencode({"txn_type": "web_accept", "payment_status": "Completed", "receiver_email": RECEIVER,
                        "mc_gross": "1250.00", "mc_currency": "USD", "invoice": "INV-00001",
                        "payer_email": "mallory@evil.example", "first_name": "Mallory", "charset": "UTF-8",
                        "memo": ""}).encode()
    # Random, so that PostgreSQL's TOAST compression cannot make the stored body look smaller than it is.
    padding = secrets.token_urlsafe(size).encode()[:max(0, size - len(fields) - 24)]

    def make(i: int) -> Request:  # each a new transaction, so none is taken for a resend of another
        body = b"txn_id=FORGED%011d&" % i + fields + padding
        return "/webhooks/paypal", body, {"Content-Type": "application/x-www-form-urlencoded"}
    return make


def bad_stripe_signature(i: int) -> Request:
    body = json.dumps({"id": f"evt_forged_{i:09d}", "object": "event", "type": "invoice.paid",
                       "data": {"object": {"id": "in_bench00001", "object": "invoice", "number": "INV-00001",
                                           "currency": "usd", "amount_paid": 125000, "amount_remaining": 0}}}).encode()
    wrong = hashlib.sha256(body).hexdigest()  # well-formed, but not made with the secret
    return "/webhooks/stripe", body, {"Content-Type": "application/json",
                                      "Stripe-Signature": f"t={int(time.time())},v1={wrong}"}


ATTACKS: dict[str, Callable[[int], Request]] = {
    "ipn-60k": forged_ipn(60_000), "ipn-small": forged_ipn(0), "stripe-bad-signature": bad_stripe_signature,
}


@dataclass
class Tally:
    sent: Counter[str] = field(default_factory=Counter)          # by attack
    answers: Counter[tuple[str, str]] = field(default_factory=Counter)  # (attack, HTTP status or error)
    shed: int = 0                                                   # not sent: --max-in-flight were open


async def fire(http: aiohttp.ClientSession, base: str, request: Request) -> tuple[str, float]:
    path, body, headers = request
    started = time.perf_counter()
    try:
        async with http.post(base + path, data=body, headers=headers) as resp:
            await resp.read()
            return str(resp.status), time.perf_counter() - started
    except (aiohttp.ClientError, TimeoutError) as exc:
        return type(exc).__name__, time.perf_counter() - started


class RawHttp:
    """HTTP/1.1 POSTs on plain asyncio streams, connections kept alive and reused: several times cheaper per
    request than a full client, so that the generator is not what limits the flood."""

    def __init__(self, port: int, timeout: float) -> None:
        self.port, self.timeout = port, timeout
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def post(self, request: Request) -> str:
        """The answer's status, or the name of what went wrong (a timeout closes the connection; the server's
        work goes on)."""
        path, body, headers = request
        head = "".join([f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(body)}\r\n",
                        *(f"{name}: {value}\r\n" for name, value in headers.items()), "\r\n"])
        try:
            reader, writer = self._reusable() or await asyncio.open_connection("127.0.0.1", self.port)
        except OSError as exc:
            return type(exc).__name__
        try:
            status, keep = await asyncio.wait_for(self._exchange(reader, writer, head.encode() + body), self.timeout)
        except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError, IndexError) as exc:
            writer.close()
            return type(exc).__name__
        if keep:
            self.idle.append((reader, writer))
        else:
            writer.close()
        return status

    def _reusable(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        """The most recently used idle connection the server has not closed (it closes those idle for longer than
        its keep-alive timeout, as a real sender's client finds out before it writes, not after)."""
        while self.idle:
            reader, writer = self.idle.pop()
            if not reader.at_eof():
                return reader, writer
            writer.close()
        return None

    @staticmethod
    async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, raw: bytes) -> tuple[str, bool]:
        writer.write(raw)
        await writer.drain()
        status = (await reader.readline()).split(b" ", 2)[1].decode()
        length, keep = 0, True
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
            elif name.strip().lower() == "connection" and "close" in value.lower():
                keep = False
        await reader.readexactly(length)
        return status, keep

    def close(self) -> None:
        for _, writer in self.idle:
            writer.close()
        self.idle.clear()


async def paced(rate: float, seconds: float, stop: asyncio.Event, launch: Callable[[int], None]) -> None:
    """Call `launch(i)` for i = 0, 1, … at `rate` per second (open loop: a slow server does not slow the calls)."""
    loop = asyncio.get_running_loop()
    start, i = loop.time(), 0
    while not stop.is_set() and (now := loop.time()) < start + seconds:
        while i < int((now - start) * rate):
            launch(i)
            i += 1
        await asyncio.sleep(TICK)


class Load:
    """The flood and the genuine trickle, each on its own connections."""

    def __init__(self, port: int, attacks: Sequence[str], genuine: int, max_in_flight: int) -> None:
        self.max_in_flight = max_in_flight
        self.base = f"http://127.0.0.1:{port}"
        self.attacks = [(name, ATTACKS[name]) for name in attacks]
        self.genuine = iter(stripe_events(genuine, f"g{os.getpid()}"))
        self.tally = Tally()
        self.latencies: dict[str, list[float]] = {"quiet": [], "flood": []}
        self.genuine_errors: Counter[str] = Counter()
        self.sent: Counter[str] = Counter()  # genuine webhooks, by phase
        self.tasks: set[asyncio.Task[None]] = set()
        self.flood_tasks: set[asyncio.Task[None]] = set()

    def _spawn(self, work: object, flood: bool) -> None:
        task = asyncio.ensure_future(work)  # type: ignore[arg-type]
        for group in (self.tasks, self.flood_tasks) if flood else (self.tasks,):
            group.add(task)
            task.add_done_callback(group.discard)

    async def genuine_at(self, http: aiohttp.ClientSession, rate: float, seconds: float, phase: str,
                         stop: asyncio.Event) -> None:
        async def one() -> None:
            body, signature = next(self.genuine)
            status, took = await fire(http, self.base, ("/webhooks/stripe", body, {
                "Stripe-Signature": signature, "Content-Type": "application/json"}))
            self.sent[phase] += 1
            if status.startswith("2"):
                self.latencies[phase].append(took)
            else:  # counted in the percentiles as slower than any answer
                self.latencies[phase].append(float("inf"))
                self.genuine_errors[status] += 1

        await paced(rate, seconds, stop, lambda i: self._spawn(one(), flood=False))

    async def flood(self, http: RawHttp, rate: float, seconds: float, stop: asyncio.Event) -> None:
        async def one(name: str, request: Request) -> None:
            self.tally.answers[(name, await http.post(request))] += 1

        def launch(i: int) -> None:
            if len(self.flood_tasks) >= self.max_in_flight:
                self.tally.shed += 1
                return
            name, make = self.attacks[i % len(self.attacks)]
            self.tally.sent[name] += 1
            self._spawn(one(name, make(i)), flood=True)

        await paced(rate, seconds, stop, launch)

    async def drain(self, timeout: float) -> None:
        if self.tasks:
            _, pending = await asyncio.wait(set(self.tasks), timeout=timeout)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)


# --- the servers ----------------------------------------------------------------------------------------------------

@dataclass
class Server:
    pid: int
    port: int
    paypal_port: int
    log: Path


@contextlib.asynccontextmanager
async def paybot_serve(args: argparse.Namespace, database_url: str, workdir: Path) -> AsyncIterator[Server]:
    """A fake PayPal, then `python -m bot serve` (web and worker) pointed at it; both killed at the end."""
    log_path = workdir / f"paybot-{free_port()}.log"
    async with child([sys.executable, __file__, "_paypal"], stdin=asyncio.subprocess.PIPE,
                     stdout=asyncio.subprocess.PIPE) as paypal:
        assert paypal.stdout is not None
        paypal_port = await asyncio.wait_for(announced_port(paypal.stdout), START_TIMEOUT)
        port = free_port()
        with log_path.open("wb") as log:
            async with child([sys.executable, "-m", "bot", "serve"], cwd=workdir, stdout=log, stderr=log,
                             env=server_environment(database_url, port, paypal_port, args.ingest_mode)) as server:
                await wait_healthy(port, server)
                yield Server(server.pid, port, paypal_port, log_path)


async def paypal_stats(port: int) -> dict[str, int]:
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/stats") as resp:
        return dict(await resp.json())


async def settle_postbacks(port: int, limit: float) -> tuple[dict[str, int], float]:
    """Wait until PayPal hears nothing new for 3 s (the server has stopped verifying), or `limit` seconds."""
    started = time.monotonic()
    last, quiet_since = await paypal_stats(port), time.monotonic()
    while time.monotonic() - started < limit and time.monotonic() - quiet_since < 3:
        await asyncio.sleep(0.5)
        now = await paypal_stats(port)
        if now != last:
            last, quiet_since = now, time.monotonic()
    return last, time.monotonic() - started


# --- part 1: what one rejected request leaves behind (a server of its own, no flood) --------------------------------

@dataclass
class Cost:
    attack: str
    sent: int
    answers: Counter[str]
    stored: Snapshot          # what the database gained
    postbacks: int
    postback_bytes: int
    settled: bool             # PayPal heard nothing new for 3 s before DRAIN_SECONDS ran out


async def cost_per_request(args: argparse.Namespace, server: Server, database_url: str) -> list[Cost]:
    """Each attack alone, `--probe-requests` times, 16 in flight, slowly enough that the server keeps up; then
    the database's growth and PayPal's postbacks, divided by the requests."""
    http, costs, offset = RawHttp(server.port, REQUEST_TIMEOUT), [], 10**9
    for name in sorted(args.attacks, key=lambda a: a.startswith("ipn")):  # the postback-free one first
        make, gate = ATTACKS[name], asyncio.Semaphore(16)
        answers: Counter[str] = Counter()

        async def one(i: int) -> None:
            async with gate:
                answers[await http.post(make(offset + i))] += 1

        before, paypal_before = await snapshot(database_url), await paypal_stats(server.paypal_port)
        await asyncio.gather(*(one(i) for i in range(args.probe_requests)))
        paypal, waited = await settle_postbacks(server.paypal_port, DRAIN_SECONDS)
        stored = (await snapshot(database_url)).minus(before)
        costs.append(Cost(name, args.probe_requests, answers, stored, paypal["calls"] - paypal_before["calls"],
                          paypal["bytes"] - paypal_before["bytes"], waited < DRAIN_SECONDS))
        offset += args.probe_requests
        print(f"cost: {name} × {args.probe_requests} done", flush=True)
    http.close()
    return costs


# --- part 2: the flood, with genuine webhooks (a fresh server) -------------------------------------------------------

@dataclass
class Flood:
    quiet: list[float]
    during: list[float]
    genuine_errors: Counter[str]
    tally: Tally
    seconds: float
    rss_before_kb: int
    rss_high_kb: int
    stopped_early: str
    grew: Snapshot  # the database over the flood period, genuine webhooks included
    postbacks_at_end: int
    postbacks: int
    postback_bytes: int
    drain_seconds: float
    log_bytes: int
    server_cpu: float
    load_before: str
    load_after: str


async def watch_memory(pid: int, limit_kb: int, stop: asyncio.Event, why: list[str]) -> None:
    while not stop.is_set():
        rss = memory_kb(pid, "VmRSS")
        if rss > limit_kb:
            why.append(f"server RSS {rss // 1024} MB passed --max-rss-mb {limit_kb // 1024}")
            stop.set()
            return
        await asyncio.sleep(0.5)


async def flood(args: argparse.Namespace, server: Server, database_url: str) -> Flood:
    load = Load(server.port, args.attacks, genuine=int(args.genuine_rate * (args.quiet_seconds + args.seconds)) + 10,
                max_in_flight=args.max_in_flight)
    never, load_before = asyncio.Event(), load_average()
    flood_http = RawHttp(server.port, FLOOD_TIMEOUT)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)) as genuine_http:
        print(f"quiet: genuine Stripe webhooks at {args.genuine_rate:g}/s for {args.quiet_seconds:g} s", flush=True)
        await load.genuine_at(genuine_http, args.genuine_rate, args.quiet_seconds, "quiet", never)
        await load.drain(REQUEST_TIMEOUT)

        before = await snapshot(database_url)
        rss_before, cpu_before = memory_kb(server.pid, "VmRSS"), cpu_seconds(server.pid)
        log_before = server.log.stat().st_size
        print(f"flood: {', '.join(args.attacks)} at {args.rate:g}/s for {args.seconds:g} s, genuine at "
              f"{args.genuine_rate:g}/s", flush=True)
        stop, why = asyncio.Event(), []
        guard = asyncio.create_task(watch_memory(server.pid, args.max_rss_mb * 1024, stop, why))
        started = time.monotonic()
        await asyncio.gather(load.flood(flood_http, args.rate, args.seconds, stop),
                             load.genuine_at(genuine_http, args.genuine_rate, args.seconds, "flood", stop))
        seconds = time.monotonic() - started
        postbacks_at_end = (await paypal_stats(server.paypal_port))["calls"]
        print(f"flood over after {seconds:.1f} s; draining (at most {DRAIN_SECONDS:.0f} s, twice)", flush=True)
        await load.drain(DRAIN_SECONDS)
        flood_http.close()
        paypal, drained = await settle_postbacks(server.paypal_port, DRAIN_SECONDS)
        stop.set()
        await guard
    return Flood(load.latencies["quiet"], load.latencies["flood"], load.genuine_errors, load.tally, seconds,
                 rss_before, memory_kb(server.pid, "VmHWM"), "; ".join(why),
                 (await snapshot(database_url)).minus(before), postbacks_at_end, paypal["calls"], paypal["bytes"],
                 drained, server.log.stat().st_size - log_before, cpu_seconds(server.pid) - cpu_before,
                 load_before, load_average())


# --- the report -----------------------------------------------------------------------------------------------------

def load_average() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def percentile(values: Sequence[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] * 1000 if ordered else float("nan")


def ms(value: float) -> str:
    return f"{'unanswered':>11}" if value == float("inf") else f"{value:>11.1f}"


def answers_shown(answers: Counter[str]) -> str:
    return ", ".join(f"{status} × {n}" for status, n in sorted(answers.items())) or "none"


def report_costs(costs: Sequence[Cost]) -> None:
    print("\nstored per rejected request (each attack alone, after the server had settled)")
    print(f"  {'attack':<22}{'rows':>8}{'bytes':>10}{'PayPal calls':>14}{'PayPal bytes':>14}   rows by table; answers")
    for c in costs:
        tables = ", ".join(f"{t} {n / c.sent:+.2f}" for t, n in c.stored.rows.items() if n) or "none"
        print(f"  {c.attack:<22}{sum(c.stored.rows.values()) / c.sent:>8.2f}{c.stored.bytes / c.sent:>10.0f}"
              f"{c.postbacks / c.sent:>14.2f}{c.postback_bytes / c.sent:>14.0f}   {tables}; "
              f"{answers_shown(c.answers)}" + ("" if c.settled else "  (PayPal still being called: a lower bound)"))


def report_flood(args: argparse.Namespace, f: Flood) -> None:
    t = f.tally
    sent = sum(t.sent.values())
    ipns = sum(n for name, n in t.sent.items() if name.startswith("ipn"))
    print(f"\nflood: {sent} requests in {f.seconds:.1f} s ({sent / f.seconds:.0f}/s sent, target {args.rate:g}/s; "
          f"{t.shed} not sent because {args.max_in_flight} were in flight)"
          + (f"; STOPPED EARLY: {f.stopped_early}" if f.stopped_early else ""))
    print(f"load average of the machine: {f.load_before} before, {f.load_after} after")
    answers: dict[str, Counter[str]] = {}
    for (name, status), n in t.answers.items():
        answers.setdefault(name, Counter())[status] += n
    for name in args.attacks:
        print(f"  {name:<22} sent {t.sent[name]:>7}   answers: {answers_shown(answers.get(name, Counter()))}")
    print("\ngenuine Stripe webhooks (signed, each a new payment; unanswered within "
          f"{REQUEST_TIMEOUT:.0f} s counts as slower than any answer)")
    print(f"  {'':<22}{'count':>7}{'p50 ms':>11}{'p99 ms':>11}{'max ms':>11}")
    for label, values in (("without flood", f.quiet), ("during flood", f.during)):
        print(f"  {label:<22}{len(values):>7}{ms(percentile(values, 50))}{ms(percentile(values, 99))}"
              f"{ms(max(values) * 1000 if values else float('nan'))}")
    if f.genuine_errors:
        print(f"  not answered 2xx: {answers_shown(f.genuine_errors)}")
    ratio = percentile(f.during, 99) / percentile(f.quiet, 99) if f.quiet and f.during else float("nan")
    print(f"  p99 during / without: {ratio:.1f}×" if ratio != float("inf") else "  p99 during / without: ∞")
    print(f"\nserver memory: RSS {f.rss_before_kb / 1024:.0f} MB before the flood, high-water mark (VmHWM) "
          f"{f.rss_high_kb / 1024:.0f} MB; server CPU {f.server_cpu:.1f} s over flood and drain; log "
          f"{f.log_bytes / 1e6:.1f} MB")
    print(f"database over the flood (genuine webhooks included): {sum(f.grew.rows.values()):+} rows "
          f"({', '.join(f'{t} {n:+}' for t, n in f.grew.rows.items() if n) or 'none'}), {f.grew.bytes / 1e6:+.1f} MB")
    print(f"PayPal postbacks: {f.postbacks_at_end} when the flood ended, {f.postbacks} after {f.drain_seconds:.0f} s "
          f"more ({f.postback_bytes / 1e6:.0f} MB posted to PayPal): {f.postbacks / max(ipns, 1):.2f} per forged IPN "
          f"sent ({ipns})")


async def main(args: argparse.Namespace) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="paybot-flood-"))
    dbs = Databases(workdir)
    try:
        await dbs.prepare(args.engine)
        print(f"{args.engine}, INGEST_MODE={args.ingest_mode}; load average {load_average()}", flush=True)
        costs: list[Cost] = []
        if args.probe_requests:
            database_url = await dbs.fresh(args.engine)
            async with paybot_serve(args, database_url, workdir) as server:
                costs = await cost_per_request(args, server, database_url)
        database_url = await dbs.fresh(args.engine)
        async with paybot_serve(args, database_url, workdir) as server:
            figures = await flood(args, server, database_url)
        report_costs(costs)
        report_flood(args, figures)
    finally:
        await dbs.drop_all()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


def parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="how long the flood lasts (default 30)")
    parser.add_argument("--rate", type=float, default=1000.0, help="flood requests per second (default 1000)")
    parser.add_argument("--genuine-rate", type=float, default=20.0, help="genuine webhooks per second (default 20)")
    parser.add_argument("--quiet-seconds", type=float, default=10.0,
                        help="genuine webhooks alone first, for the latency without flood (default 10)")
    parser.add_argument("--engine", choices=("sqlite", "postgresql", "postgres"), default="sqlite")
    parser.add_argument("--ingest-mode", choices=("inline", "deferred"), default="deferred",
                        help="INGEST_MODE of the server (default deferred, as paybot's own default)")
    parser.add_argument("--attacks", default=",".join(ATTACKS),
                        help=f"comma-separated, sent in turn (default all: {','.join(ATTACKS)})")
    parser.add_argument("--probe-requests", type=int, default=200,
                        help="first, each attack alone this many times, for what one costs (default 200; 0: skip)")
    parser.add_argument("--max-in-flight", type=int, default=1024,
                        help="flood requests open at once; beyond it the generator does not send (default 1024)")
    parser.add_argument("--max-rss-mb", type=int, default=4096,
                        help="stop the flood early if the server's memory passes this (default 4096)")
    args = parser.parse_args(argv)
    args.engine = "postgresql" if args.engine == "postgres" else args.engine
    args.attacks = [a.strip() for a in args.attacks.split(",") if a.strip()]
    if unknown := [a for a in args.attacks if a not in ATTACKS]:
        parser.error(f"unknown attack(s) {', '.join(unknown)}; known: {', '.join(ATTACKS)}")
    if not (0 < args.seconds <= 240 and 0 < args.rate <= 20_000 and 0 < args.genuine_rate <= 200
            and 0 < args.quiet_seconds <= 60 and 0 < args.max_in_flight <= 4096 and args.attacks
            and 0 <= args.probe_requests <= 10_000):
        parser.error("--seconds 0..240, --rate 0..20000, --genuine-rate 0..200, --quiet-seconds 0..60, "
                     "--max-in-flight 1..4096, --probe-requests 0..10000")
    return args


def entry(argv: Sequence[str]) -> int:
    if argv[:1] == ["_paypal"]:
        asyncio.run(fake_paypal())
        return 0
    return asyncio.run(main(parse(argv)))


if __name__ == "__main__":
    raise SystemExit(entry(sys.argv[1:]))
