"""Large data (issue #14, goal 5): a 100,000-row import while `paybot serve` answers webhooks, and a million-entry
audit trail: `/payments find` and `status`, `paybot audit verify`, `paybot audit export`'s memory.

    .venv/bin/python benchmarks/large_data.py [--engine sqlite|postgresql] [--rows 100000] [--entries 1000000]
                                              [--small-entries 100000] [--webhook-rate 20] [--skip import,trail]

Phases, each on a scratch database of its own (SQLite files in a temporary directory, or PostgreSQL databases
created and dropped on PAYBOT_BENCH_POSTGRES_URL's server), all stopping by themselves:
  import  `python -m bot serve` (its worker on, a fake SendGrid) on a database holding 2,000 invoices known to
          Stripe; `python -m bot import customers` (--rows / 5) then `python -m bot import invoices` (--rows), timed;
          during the invoice import signed Stripe webhooks for those invoices at --webhook-rate/s: each answer's
          latency (p50, p99, max) and every answer that was not 2xx or missed the DEADLINE.
  trail   benchmarks/seed_audit.py seeds --entries entries (and --small-entries in a second database); then
          `/payments find` and `status` through the staff queries the slash command calls (each 20 times: p50,
          max), `python -m bot audit verify` (wall and CPU seconds), and `python -m bot audit export` at both sizes
          (its peak RSS, from /proc: constant memory means the two are close).
The last line is `RESULT {json}`. Wall-clock figures depend on the machine's load: the load average is printed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

sys.path.insert(1, str(Path(__file__).resolve().parent.parent))
from flood import load_average, memory_kb, percentile  # noqa: E402
from seed_audit import Plan, customer_id, customer_name, invoice_number, seed  # noqa: E402
from throughput import AUDIT_KEY, Scratch, paybot, signed_event  # noqa: E402

from bot.domain.audit import Keyring  # noqa: E402

DEADLINE = 10.0  # seconds: Stripe gives up on an answer after 10-20 s and retries; the strictest platforms, 5-10 s
TARGETS = 2_000  # invoices the webhooks pay (seeded as throughput.py seeds them)
QUERY_RUNS = 20


# --- import while serving --------------------------------------------------------------------------------------------

def write_files(workdir: Path, rows: int) -> tuple[Path, Path]:
    """A shop's export: customers (a fifth as many) and `rows` invoices, with platform ids, as `paybot import`
    takes them."""
    customers, invoices = workdir / "customers.csv", workdir / "invoices.csv"
    count = max(1, rows // 5)
    with customers.open("w") as out:
        out.write("id,name,email,country,channels,external_ids\n")
        out.writelines(f"IMP-{customer_id(n)},{customer_name(n)},ap{n}@import.example,US,email,stripe:cus_imp{n}\n"
                       for n in range(1, count + 1))
    with invoices.open("w") as out:
        out.write("number,customer_id,amount,currency,issued_on,due_on,external_ids\n")
        out.writelines(f"IMP-{invoice_number(n)},IMP-{customer_id(1 + n % count)},{100 + n % 9000}.{n % 100:02d},"
                       f"USD,2026-11-01,2026-12-01,stripe:in_imp{n}\n" for n in range(1, rows + 1))
    return customers, invoices


@dataclass
class Webhooks:
    latencies: list[float] = field(default_factory=list)  # seconds to a 2xx answer
    failures: Counter[str] = field(default_factory=Counter)  # status (or exception) → count

    def summary(self) -> dict[str, object]:
        ok = sorted(self.latencies)
        return {"answered_2xx": len(ok), "p50_ms": round(percentile(ok, 50), 1) if ok else None,
                "p99_ms": round(percentile(ok, 99), 1) if ok else None,
                "max_ms": round(ok[-1] * 1000, 1) if ok else None,
                "over_deadline": sum(1 for s in ok if s > DEADLINE), "not_2xx": dict(self.failures)}


async def webhooks_while(running: asyncio.Task[float], port: int, rate: float, out: Webhooks) -> None:
    """Signed Stripe webhooks at `rate`/s (open loop: one every 1/rate s, whatever the answers) until `running`
    ends; then waits for the answers."""
    tasks: set[asyncio.Task[None]] = set()
    timeout = aiohttp.ClientTimeout(total=DEADLINE * 3)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        async def one(n: int) -> None:
            body, signature = signed_event(n, "bigdata")
            started = time.monotonic()
            try:
                async with http.post(f"http://127.0.0.1:{port}/webhooks/stripe", data=body, headers={
                        "Content-Type": "application/json", "Stripe-Signature": signature}) as answer:
                    await answer.read()
                    status = answer.status
            except (aiohttp.ClientError, TimeoutError) as exc:
                out.failures[type(exc).__name__] += 1
                return
            if 200 <= status < 300:
                out.latencies.append(time.monotonic() - started)
            else:
                out.failures[str(status)] += 1

        n, start = 0, time.monotonic()
        while not running.done() and n < TARGETS:
            n += 1
            task = asyncio.ensure_future(one(n))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            await asyncio.sleep(max(0.0, start + n / rate - time.monotonic()))
        if tasks:
            await asyncio.wait(set(tasks))


async def paybot_command(database_url: str, workdir: Path, *argv: str) -> tuple[float, float]:
    """`python -m bot ARGV…`, to the end: (wall seconds, CPU seconds of the child)."""
    env = {**os.environ, "DATABASE_URL": database_url, "AUDIT_KEY": AUDIT_KEY}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    process = await asyncio.create_subprocess_exec(sys.executable, "-m", "bot", *argv, cwd=workdir, env=env,
                                                   stdout=asyncio.subprocess.DEVNULL,
                                                   stderr=asyncio.subprocess.PIPE)
    _, err = await process.communicate()
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if process.returncode:
        raise RuntimeError(f"paybot {' '.join(argv)} exited {process.returncode}: {err.decode()[-2000:]}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


async def import_phase(args: argparse.Namespace, scratch: Scratch, workdir: Path) -> dict[str, object]:
    await scratch.template("import", TARGETS, 0)
    database_url = await scratch.fresh("import")
    customers, invoices = write_files(workdir, args.rows)
    webhooks = Webhooks()
    serve_args = argparse.Namespace(profile_with="", log_level="WARNING", show_log=0)
    async with paybot(serve_args, database_url, workdir, args.ingest_mode) as server:
        customers_wall, customers_cpu = await paybot_command(database_url, workdir, "import", "customers",
                                                             str(customers))
        importing = asyncio.ensure_future(paybot_command(database_url, workdir, "import", "invoices", str(invoices)))
        await webhooks_while(importing, server.port, args.webhook_rate, webhooks)
        invoices_wall, invoices_cpu = await importing
    return {"rows": args.rows, "customers_rows": max(1, args.rows // 5),
            "customers_s": round(customers_wall, 1), "customers_cpu_s": round(customers_cpu, 1),
            "invoices_s": round(invoices_wall, 1), "invoices_cpu_s": round(invoices_cpu, 1),
            "webhooks": webhooks.summary()}


# --- a million-entry trail -------------------------------------------------------------------------------------------

async def query_latencies(database_url: str, plan: Plan) -> dict[str, dict[str, float]]:
    """`/payments status` and `find` as the slash command answers them (the staff queries it calls)."""
    from bot.services.staff.queries import StaffQueries
    from bot.storage.database import Database

    db = Database.open(database_url)
    queries = StaffQueries(db)
    def invoice(n: int) -> str:
        return invoice_number(1 + n * 997 % plan.invoices)

    def customer(n: int) -> int:
        return 1 + n * 37 % plan.customers

    asks = {"status": lambda n: queries.status(invoice(n)),
            "find_name": lambda n: queries.find(customer_name(customer(n)).rsplit(" ", 1)[0]),
            "find_email": lambda n: queries.find(f"ap{customer(n)}@"),
            "find_id": lambda n: queries.find(customer_id(customer(n))),
            "find_amount": lambda n: queries.find(f"{1000 + n * 13}.00")}
    found: dict[str, dict[str, float]] = {}
    try:
        for name, ask in asks.items():
            times = []
            for n in range(QUERY_RUNS):
                started = time.perf_counter()
                await ask(n)
                times.append((time.perf_counter() - started) * 1000)
            found[name] = {"p50_ms": round(statistics.median(times), 1), "max_ms": round(max(times), 1)}
    finally:
        await db.dispose()
    return found


async def export_peak_kb(database_url: str, workdir: Path) -> tuple[int, float]:
    """`python -m bot audit export` to /dev/null: (its peak RSS in KB, polled from /proc; wall seconds)."""
    env = {**os.environ, "DATABASE_URL": database_url, "AUDIT_KEY": AUDIT_KEY}
    started = time.monotonic()
    process = await asyncio.create_subprocess_exec(sys.executable, "-m", "bot", "audit", "export", cwd=workdir,
                                                   env=env, stdout=asyncio.subprocess.DEVNULL,
                                                   stderr=asyncio.subprocess.DEVNULL)
    peak = 0
    while process.returncode is None:
        peak = max(peak, memory_kb(process.pid, "VmHWM"))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(process.wait(), 0.05)
    if process.returncode:
        raise RuntimeError(f"paybot audit export exited {process.returncode}")
    return peak, time.monotonic() - started


async def seeded(scratch: Scratch, kind: str, entries: int) -> tuple[str, float]:
    await scratch.template(kind, 0, 0)
    database_url = await scratch.fresh(kind)
    started = time.monotonic()
    await seed(database_url, entries, Keyring.of(AUDIT_KEY), quiet=True)
    return database_url, time.monotonic() - started


async def trail_phase(args: argparse.Namespace, scratch: Scratch, workdir: Path) -> dict[str, object]:
    big, seed_big = await seeded(scratch, "trail_big", args.entries)
    small, seed_small = await seeded(scratch, "trail_small", args.small_entries)
    queries = await query_latencies(big, Plan(args.entries))
    verify_wall, verify_cpu = await paybot_command(big, workdir, "audit", "verify")
    small_kb, small_s = await export_peak_kb(small, workdir)
    big_kb, big_s = await export_peak_kb(big, workdir)
    exports = ((args.small_entries, small_kb, small_s), (args.entries, big_kb, big_s))
    return {"entries": args.entries, "seed_s": round(seed_big, 1), "queries": queries,
            "verify_s": round(verify_wall, 1), "verify_cpu_s": round(verify_cpu, 1),
            "export": {str(size): {"peak_rss_mb": round(kb / 1024, 1), "seconds": round(seconds, 1)}
                       for size, kb, seconds in exports},
            "small_seed_s": round(seed_small, 1)}


# --- the run ---------------------------------------------------------------------------------------------------------

def report(args: argparse.Namespace, result: dict[str, object]) -> None:
    print(f"\nlarge data on {args.engine}; load average before → after: {result['load']}")
    if imported := result.get("import"):
        assert isinstance(imported, dict)
        hooks = imported["webhooks"]
        print(f"  import {imported['customers_rows']:,} customers      {imported['customers_s']:>7} s "
              f"(CPU {imported['customers_cpu_s']} s)")
        print(f"  import {imported['rows']:,} invoices      {imported['invoices_s']:>7} s "
              f"(CPU {imported['invoices_cpu_s']} s)    goal < 30 s")
        print(f"  webhooks during it        {hooks['answered_2xx']} answered 2xx, p50 {hooks['p50_ms']} ms, "
              f"p99 {hooks['p99_ms']} ms, max {hooks['max_ms']} ms; over {DEADLINE:.0f} s: {hooks['over_deadline']}; "
              f"not 2xx: {hooks['not_2xx'] or 'none'}")
    if trail := result.get("trail"):
        assert isinstance(trail, dict)
        print(f"  trail of {trail['entries']:,} entries seeded in {trail['seed_s']} s")
        for name, figure in trail["queries"].items():
            print(f"  /payments {name.replace('_', ' '):<16} p50 {figure['p50_ms']:>6} ms   "
                  f"max {figure['max_ms']:>6} ms    goal < 100 ms")
        print(f"  audit verify              {trail['verify_s']:>7} s (CPU {trail['verify_cpu_s']} s)    goal < 10 s")
        for size, figure in trail["export"].items():
            print(f"  audit export {int(size):>9,}    peak RSS {figure['peak_rss_mb']} MB in {figure['seconds']} s")


async def main(args: argparse.Namespace) -> int:
    result: dict[str, object] = {"engine": args.engine}
    load_before = load_average()
    with tempfile.TemporaryDirectory(prefix="paybot-large-") as tmp:
        workdir = Path(tmp)
        scratch = Scratch(workdir, args.engine)
        try:
            if "import" not in args.skip:
                result["import"] = await import_phase(args, scratch, workdir)
            if "trail" not in args.skip:
                result["trail"] = await trail_phase(args, scratch, workdir)
        finally:
            await scratch.drop()
    result["load"] = f"{load_before} → {load_average()}"
    report(args, result)
    print("RESULT " + json.dumps(result))
    return 0


def parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--engine", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--rows", type=int, default=100_000, help="invoices imported (customers: a fifth)")
    parser.add_argument("--entries", type=int, default=1_000_000, help="audit entries of the big trail")
    parser.add_argument("--small-entries", type=int, default=100_000, help="the trail export is compared with")
    parser.add_argument("--webhook-rate", type=float, default=20.0, help="webhooks/s during the import")
    parser.add_argument("--ingest-mode", choices=("inline", "deferred"), default="deferred",
                        help="the server's INGEST_MODE (default: paybot's default, deferred)")
    parser.add_argument("--skip", type=lambda v: set(v.split(",")), default=set(), help="import,trail")
    return parser.parse_args(argv)


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse(sys.argv[1:]))))
