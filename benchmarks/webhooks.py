"""Webhook ingest throughput: paybot on SQLite and on PostgreSQL beside a bare aiohttp handler, same machine, same run.

Each server runs in its own process on a loopback port; this process is only the load generator. Every request is
a distinct, correctly signed Stripe `invoice.paid` event; after each paybot run the server is killed (SIGKILL) and
the database must hold exactly one `webhook_events` row per request sent, with an intact audit chain: a 2xx that
came before its commit would show up here as a missing row.

    .venv/bin/python benchmarks/webhooks.py [--requests N] [--concurrency C] [--engine sqlite|postgresql|all]
                                            [--rounds R] [--channels] [--profile | --profile-with COMMAND]

See benchmarks/README.md for how to read the output.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import contextlib
import json
import os
import pstats
import shlex
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from aiohttp import web
from sqlalchemy import func, select, text
from sqlalchemy.engine import make_url

SECRET = "whsec_benchmark"
CUSTOMER_EMAIL = "jane@example.com"
INVOICES = 300
INVOICE_TOTAL_MINOR = 100_000_000  # $1,000,000.00: every event is a partial payment, so invoices stay open
STEP_MINOR = 1_000                 # the k-th payment on an invoice is k × $10.00
# Where scratch databases are created (and dropped): the server's maintenance database.
POSTGRES_ADMIN_URL = os.environ.get("PAYBOT_BENCH_POSTGRES_URL",
                                    "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres")
START_TIMEOUT = 60.0
RUN_TIMEOUT = 90.0
BARE_SECONDS = 2.0


# --- the servers (run in a child process: `webhooks.py _serve …`) ---------------------------------------------------

def bare_app() -> web.Application:
    async def handler(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=200)

    app = web.Application()
    app.router.add_post("/webhooks/{source}", handler)
    return app


def paybot_app(database_url: str, channels: bool, ingest_mode: str) -> web.Application:
    from bot.app import create_app
    from bot.integrations.base import IntegrationSettings
    from bot.integrations.channels.sendgrid import SendGridSettings
    from bot.integrations.channels.slack import SlackSettings
    from bot.integrations.sources.stripe import StripeSettings
    from bot.settings import Settings

    configs: dict[str, IntegrationSettings] = {"stripe": StripeSettings(_env_file=None, webhook_secret=SECRET)}
    if channels:  # outbox rows are written in the webhook's transaction; the worker that would send them is off
        configs["sendgrid"] = SendGridSettings(_env_file=None, api_key="SG.bench", from_email="billing@example.com",
                                               base_url="http://127.0.0.1:9")
        configs["slack"] = SlackSettings(_env_file=None, bot_token="xoxb-bench", signing_secret="bench",
                                         base_url="http://127.0.0.1:9")
    settings = Settings(_env_file=None, database_url=database_url,  # type: ignore[call-arg]
                        finance_slack_channel="C0FINANCE", log_level="WARNING", ingest_mode=ingest_mode)
    return create_app(settings, configs=configs, run_worker=False)


async def serve(target: str, database_url: str, channels: bool, ingest_mode: str) -> None:
    """Serve until the parent closes our stdin (or kills us); announce the port on stdout."""
    await serve_announced(bare_app() if target == "bare" else paybot_app(database_url, channels, ingest_mode))


async def serve_announced(app: web.Application) -> None:
    """Serve `app` on a free loopback port, announced as `READY <port>` on stdout, until our stdin closes."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    print(f"READY {runner.addresses[0][1]}", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await runner.cleanup()


def serve_main(argv: Sequence[str]) -> None:
    parser = argparse.ArgumentParser(prog="webhooks.py _serve")
    parser.add_argument("target", choices=("bare", "paybot"))
    parser.add_argument("--database-url", default="")
    parser.add_argument("--channels", action="store_true")
    parser.add_argument("--profile", default="")
    parser.add_argument("--ingest-mode", default="inline")
    args = parser.parse_args(argv)
    if not args.profile:
        asyncio.run(serve(args.target, args.database_url, args.channels, args.ingest_mode))
        return
    profiler = cProfile.Profile()
    profiler.enable()
    try:
        asyncio.run(serve(args.target, args.database_url, args.channels, args.ingest_mode))
    finally:
        profiler.disable()
        profiler.dump_stats(args.profile)


async def announced_port(stdout: asyncio.StreamReader) -> int:
    while line := await stdout.readline():  # a profiler wrapping the server may print first
        if line.startswith(b"READY "):
            return int(line.split()[1])
    raise RuntimeError("the server exited before it was ready")


@contextlib.asynccontextmanager
async def server(target: str, database_url: str = "", *, channels: bool = False, profile: str = "",
                 wrapper: Sequence[str] = (), ingest_mode: str = "inline") -> AsyncIterator[tuple[int, int]]:
    """A server in a child process; yields its port and pid. Killed outright at the end unless profiling."""
    argv = [*wrapper, sys.executable, __file__, "_serve", target, "--database-url", database_url,
            "--ingest-mode", ingest_mode]
    argv += ["--channels"] if channels else []
    argv += ["--profile", profile] if profile else []
    child = await asyncio.create_subprocess_exec(*argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
    try:
        assert child.stdout is not None and child.stdin is not None
        yield await asyncio.wait_for(announced_port(child.stdout), START_TIMEOUT), child.pid
        if profile or wrapper:
            child.stdin.close()  # the server stops when its stdin ends, and the profiler writes its report
            await asyncio.wait_for(child.wait(), START_TIMEOUT)
    finally:
        if child.returncode is None:
            child.send_signal(signal.SIGKILL)  # no graceful shutdown: only what was committed may survive
            await child.wait()


# --- databases ------------------------------------------------------------------------------------------------------

async def seed(database_url: str) -> None:
    """Migrate, then one customer (known to Stripe as cus_bench) and INVOICES open invoices."""
    from bot.domain.money import Money
    from bot.domain.parties import Customer
    from bot.services import directory
    from bot.storage import migrate
    from bot.storage.database import Database
    from bot.storage.engine import create_engine

    engine = create_engine(database_url)
    try:
        await migrate.upgrade(engine)
        db = Database(engine)
        async with db.transaction() as uow:
            await directory.save_customer(uow, Customer(id="C1", name="Jane Doe", email=CUSTOMER_EMAIL,
                                                        external_ids={"stripe": "cus_bench"}))
            for n in range(1, INVOICES + 1):
                await directory.save_invoice(uow, invoice_number(n), "C1", Money("USD", INVOICE_TOTAL_MINOR),
                                             external_ids={"stripe": f"in_bench{n:05d}"})
    finally:
        await engine.dispose()


async def admin_execute(*statements: str) -> None:
    from bot.storage.engine import create_engine

    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as conn:
            for statement in statements:
                await conn.execute(text(statement))
    finally:
        await admin.dispose()


class Databases:
    """A seeded template per engine, built once; each run gets a fresh copy, and everything is dropped at the end."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.template_pg = f"paybot_bench_{os.getpid()}_template"
        self.copies = 0
        self.made_pg: list[str] = []

    def pg_url(self, database: str) -> str:
        return make_url(POSTGRES_ADMIN_URL).set(database=database).render_as_string(hide_password=False)

    async def prepare(self, engine: str) -> None:
        if engine == "sqlite":
            await seed(f"sqlite+aiosqlite:///{self.workdir / 'template.db'}")
        else:
            await admin_execute(f'DROP DATABASE IF EXISTS "{self.template_pg}" WITH (FORCE)',
                                f'CREATE DATABASE "{self.template_pg}"')
            self.made_pg.append(self.template_pg)
            await seed(self.pg_url(self.template_pg))

    async def fresh(self, engine: str) -> str:
        self.copies += 1
        if engine == "sqlite":
            path = self.workdir / f"run{self.copies}.db"
            shutil.copy(self.workdir / "template.db", path)
            return f"sqlite+aiosqlite:///{path}"
        name = f"paybot_bench_{os.getpid()}_{self.copies}"
        await admin_execute(f'CREATE DATABASE "{name}" TEMPLATE "{self.template_pg}"')
        self.made_pg.append(name)
        return self.pg_url(name)

    async def drop_all(self) -> None:
        if self.made_pg:
            await admin_execute(*(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)' for name in reversed(self.made_pg)))


async def stored(database_url: str) -> tuple[int, str | None]:
    """How many webhook events the database holds, and the first break in the audit chain (None: intact)."""
    from bot.storage import audit, models
    from bot.storage.engine import create_engine, sessions

    engine = create_engine(database_url)
    try:
        async with sessions(engine)() as session:
            count = await session.scalar(select(func.count()).select_from(models.WebhookEvent))
            broken = (await audit.verify(session)).broken
    finally:
        await engine.dispose()
    return int(count or 0), f"audit entry {broken.seq}: {broken.reason}" if broken else None


# --- the load -------------------------------------------------------------------------------------------------------

def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (Linux /proc; NaN elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return float("nan")


def invoice_number(n: int) -> str:
    return f"INV-{n:05d}"


def stripe_events(count: int, tag: str) -> list[tuple[bytes, str]]:
    """`count` distinct, signed `invoice.paid` events cycling over the invoices. Each is a new payment: the k-th on
    an invoice pays k × STEP_MINOR, so no two on one invoice have the same amount (which paybot would take for one
    payment reported twice)."""
    from bot.integrations.sources.stripe import sign

    now = int(time.time())
    signed = []
    for i in range(count):
        n, k = i % INVOICES + 1, i // INVOICES + 1
        paid = STEP_MINOR * k * (k + 1) // 2  # what Stripe reports: the invoice's amount paid so far
        body = json.dumps({
            "id": f"evt_{tag}_{i:06d}", "object": "event", "api_version": "2025-05-28.basil", "created": now,
            "livemode": False, "pending_webhooks": 1, "type": "invoice.paid",
            "data": {"object": {
                "id": f"in_bench{n:05d}", "object": "invoice", "number": invoice_number(n), "status": "open",
                "currency": "usd", "amount_due": INVOICE_TOTAL_MINOR, "amount_paid": paid,
                "amount_remaining": INVOICE_TOTAL_MINOR - paid, "total": INVOICE_TOTAL_MINOR,
                "customer": "cus_bench", "customer_name": "Jane Doe", "customer_email": CUSTOMER_EMAIL,
                "customer_phone": None, "hosted_invoice_url": "https://invoice.stripe.com/i/acct_1/bench",
                "metadata": {}, "livemode": False,
            }},
        }).encode()
        signed.append((body, sign(body, SECRET, now)))
    return signed


@dataclass
class Result:
    seconds: float
    latencies: list[float] = field(default_factory=list)  # seconds, one per answered request
    errors: dict[str, int] = field(default_factory=dict)
    server_cpu: float = float("nan")  # CPU seconds the server process used during the run

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.seconds

    def percentile(self, p: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] if ordered else float("nan")


async def load(port: int, events: Sequence[tuple[bytes, str]], concurrency: int) -> Result:
    """Post every event once with at most `concurrency` in flight; count anything but a 2xx as an error."""
    url = f"http://127.0.0.1:{port}/webhooks/stripe"
    pending = iter(events)
    latencies: list[float] = []
    errors: dict[str, int] = {}

    async def worker(http: aiohttp.ClientSession) -> None:
        for body, signature in pending:
            started = time.perf_counter()
            try:
                async with http.post(url, data=body, headers={
                        "Stripe-Signature": signature, "Content-Type": "application/json"}) as resp:
                    await resp.read()
                    ok = 200 <= resp.status < 300
                    reason = f"HTTP {resp.status}"
            except (aiohttp.ClientError, TimeoutError) as exc:
                ok, reason = False, type(exc).__name__
            if ok:
                latencies.append(time.perf_counter() - started)
            else:
                errors[reason] = errors.get(reason, 0) + 1

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as http:
        started = time.perf_counter()
        await asyncio.wait_for(asyncio.gather(*(worker(http) for _ in range(concurrency))), RUN_TIMEOUT)
        return Result(time.perf_counter() - started, latencies, errors)


# --- a run, the rounds, the report ----------------------------------------------------------------------------------

@dataclass
class Run:
    result: Result
    problems: list[str]


async def run_once(target: str, engine: str, dbs: Databases, args: argparse.Namespace, tag: str,
                   profile: str = "", wrapper: Sequence[str] = (), ingest_mode: str = "inline") -> Run:
    warmup = stripe_events(args.warmup, f"{tag}w")
    events = stripe_events(args.requests, tag)
    database_url = await dbs.fresh(engine) if target == "paybot" else ""
    async with server(target, database_url, channels=args.channels, profile=profile, wrapper=wrapper,
                      ingest_mode=ingest_mode) as (port, pid):
        await load(port, warmup, args.concurrency)
        cpu = cpu_seconds(pid)
        results = [await load(port, events, args.concurrency)]
        # The bare handler is through the load in a blink, where one hiccup swings the figure: repeat it for a
        # while and keep the median repetition.
        while target == "bare" and sum(r.seconds for r in results) < BARE_SECONDS and len(results) < 100:
            results.append(await load(port, events, args.concurrency))
        cpu = cpu_seconds(pid) - cpu
    result = sorted(results, key=lambda r: r.rate)[len(results) // 2]
    result.server_cpu = cpu * len(result.latencies) / max(sum(len(r.latencies) for r in results), 1)
    problems = [f"{n} × {why}" for r in results for why, n in r.errors.items()]
    if target == "paybot":
        count, broken = await stored(database_url)
        expected = len(warmup) + len(events)
        if count != expected:
            problems.append(f"{count} webhook_events stored, {expected} sent")
        if broken:
            problems.append(broken)
    return Run(result, problems)


def row(name: str, runs: Sequence[Run]) -> tuple[str, float, float, float, float, int]:
    """The median over the rounds of each figure."""
    return (name, statistics.median(r.result.rate for r in runs),
            statistics.median(r.result.percentile(50) for r in runs) * 1000,
            statistics.median(r.result.percentile(99) for r in runs) * 1000,
            statistics.median(r.result.server_cpu / max(len(r.result.latencies), 1) for r in runs) * 1000,
            sum(sum(r.result.errors.values()) for r in runs))


def report(table: dict[str, list[Run]], args: argparse.Namespace) -> None:
    print(f"\n{args.requests} requests × {args.rounds} rounds, concurrency {args.concurrency}, "
          f"channels {'on (worker off)' if args.channels else 'off'}; medians over the rounds")
    print(f"{'target':<28}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'cpu ms':>9}{'errors':>8}   per-round req/s")
    rows = {}
    for name, runs in table.items():
        rows[name] = row(name, runs)
        _, rate, p50, p99, cpu, errors = rows[name]
        rounds = " ".join(f"{r.result.rate:.0f}" for r in runs)
        print(f"{name:<28}{rate:>9.0f}{p50:>9.2f}{p99:>9.2f}{cpu:>9.2f}{errors:>8}   {rounds}")
    bare = rows["bare aiohttp"][1]
    for name in rows:
        if name != "bare aiohttp":
            print(f"ratio {name} / bare aiohttp: {rows[name][1] / bare:.1%}")


def print_profile(path: str, limit: int = 25) -> None:
    stats = pstats.Stats(path)
    stats.strip_dirs()
    for key in ("tottime", "cumulative"):
        print(f"\n--- paybot server on SQLite, cProfile by {key} (main thread only; aiosqlite runs SQL on its own "
              "thread) ---")
        stats.sort_stats(key).print_stats(limit)


async def main(args: argparse.Namespace) -> int:
    engines = ["sqlite", "postgresql"] if args.engine == "all" else [args.engine]
    workdir = Path(tempfile.mkdtemp(prefix="paybot-bench-"))
    dbs = Databases(workdir)
    modes = ["inline", "deferred"] if args.ingest_mode == "both" else [args.ingest_mode]
    table: dict[str, list[Run]] = {"bare aiohttp": [], **{f"paybot {e} {m}": [] for e in engines for m in modes}}
    failed = False
    try:
        for engine in engines:
            await dbs.prepare(engine)
        for r in range(args.rounds):  # interleaved, so that a burst of load from elsewhere hits every target alike
            for name in table:
                target, engine, mode = ("bare", "", "inline") if name == "bare aiohttp" else ("paybot", *name.split()[1:])
                run = await run_once(target, engine, dbs, args, f"r{r}{engine[:2]}{mode[:1]}", ingest_mode=mode)
                table[name].append(run)
                print(f"round {r + 1} {name}: {run.result.rate:.0f} req/s"
                      + (f"  PROBLEMS: {'; '.join(run.problems)}" if run.problems else ""), flush=True)
                failed |= bool(run.problems)
        report(table, args)
        if args.profile and "sqlite" in engines:
            path = str(workdir / "paybot.prof")
            await run_once("paybot", "sqlite", dbs, args, "prof", profile=path)
            print_profile(path)
        if args.profile_with and "sqlite" in engines:
            await run_once("paybot", "sqlite", dbs, args, "prof2", wrapper=shlex.split(args.profile_with))
    finally:
        await dbs.drop_all()
        shutil.rmtree(workdir, ignore_errors=True)
    if failed:
        print("\nFAILED: some requests were not answered 2xx or not stored (see PROBLEMS above)")
    return 1 if failed else 0


def parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=1000, help="measured requests per run (default 1000)")
    parser.add_argument("--concurrency", type=int, default=32, help="requests in flight (default 32)")
    parser.add_argument("--engine", choices=("sqlite", "postgresql", "all"), default="all")
    parser.add_argument("--rounds", type=int, default=3, help="runs per target; the report shows medians")
    parser.add_argument("--warmup", type=int, default=50, help="unmeasured requests before each run")
    parser.add_argument("--ingest-mode", choices=("inline", "deferred", "both"), default="both",
                        help="paybot's INGEST_MODE: everything before the answer, or the event alone (default both)")
    parser.add_argument("--channels", action="store_true",
                        help="configure SendGrid and Slack (worker off): each webhook also queues two notifications")
    parser.add_argument("--profile", action="store_true", help="then profile one more paybot run on SQLite")
    parser.add_argument("--profile-with", default="", metavar="COMMAND",
                        help="then one more paybot run on SQLite with its server started under COMMAND, e.g. "
                             "'py-spy record --idle -o paybot.svg --' (the server is stopped, not killed, after it)")
    args = parser.parse_args(argv)
    if not (0 < args.requests <= 100_000 and 0 < args.concurrency <= 1000 and 0 < args.rounds <= 10):
        parser.error("--requests 1..100000, --concurrency 1..1000, --rounds 1..10")
    return args


def entry(argv: Sequence[str]) -> int:
    if argv[:1] == ["_serve"]:
        serve_main(argv[1:])
        return 0
    return asyncio.run(main(parse(argv)))


if __name__ == "__main__":
    raise SystemExit(entry(sys.argv[1:]))
