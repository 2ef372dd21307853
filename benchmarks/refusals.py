"""Genuine webhooks while forged ones pour in: latency, and what each refused request leaves in the database.

paybot runs in its own process (as in `webhooks.py`); this process posts genuine, correctly signed Stripe events
at a steady pace, first alone, then while a flood of badly signed ones arrives at `--flood-rate` per second.

    .venv/bin/python benchmarks/refusals.py [--seconds S] [--flood-rate R] [--genuine-rate G] [--engine sqlite|postgresql|all]

It prints, per engine: the genuine events' p50/p99 without and with the flood, the flood rate reached, and the
audit entries and refusal rows stored per refused request (a SIGKILL ends the server: what is in the database
then is what the requests themselves caused).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
from sqlalchemy import text

from webhooks import Databases, Result, server, stripe_events

FLOOD_CONCURRENCY = 64


async def paced(port: int, events: list[tuple[bytes, str]], rate: float, seconds: float,
                concurrency: int) -> Result:
    """Post `events` (cycled) at `rate` per second for `seconds`, never more than `concurrency` in flight."""
    url = f"http://127.0.0.1:{port}/webhooks/stripe"
    latencies: list[float] = []
    errors: dict[str, int] = {}
    started = time.perf_counter()
    due = iter(range(int(rate * seconds)))

    async def worker(http: aiohttp.ClientSession) -> None:
        for i in due:
            delay = started + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            body, signature = events[i % len(events)]
            sent = time.perf_counter()
            try:
                async with http.post(url, data=body, headers={"Stripe-Signature": signature,
                                                              "Content-Type": "application/json"}) as resp:
                    await resp.read()
                    status = resp.status
            except (aiohttp.ClientError, TimeoutError) as exc:
                errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                continue
            latencies.append(time.perf_counter() - sent)
            if status not in (200, 401):
                errors[f"HTTP {status}"] = errors.get(f"HTTP {status}", 0) + 1

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as http:
        await asyncio.gather(*(worker(http) for _ in range(concurrency)))
    return Result(time.perf_counter() - started, latencies, errors)


async def counts(database_url: str) -> tuple[int, int]:
    """`webhook.rejected` audit entries, and refusal summary rows (0 if the table does not exist: older code)."""
    from bot.storage.engine import create_engine

    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            entries = (await conn.execute(text("SELECT count(*) FROM audit_entries WHERE kind = 'webhook.rejected'"))).scalar_one()
            try:
                refusals = (await conn.execute(text("SELECT count(*) FROM refusals"))).scalar_one()
            except Exception:  # noqa: BLE001  an older schema
                refusals = 0
    finally:
        await engine.dispose()
    return int(entries), int(refusals)


async def run(engine: str, dbs: Databases, args: argparse.Namespace) -> None:
    genuine = stripe_events(int(args.genuine_rate * args.seconds * 2) + 10, f"g{engine[:2]}")
    forged = [(body, signature.replace("v1=", "v1=0", 1)) for body, signature in stripe_events(200, f"f{engine[:2]}")]
    database_url = await dbs.fresh(engine)
    async with server("paybot", database_url) as (port, _):
        alone = await paced(port, genuine[: len(genuine) // 2], args.genuine_rate, args.seconds, 4)
        before = await counts(database_url)
        flood_task = asyncio.create_task(paced(port, forged, args.flood_rate, args.seconds, FLOOD_CONCURRENCY))
        during = await paced(port, genuine[len(genuine) // 2:], args.genuine_rate, args.seconds, 4)
        flood = await flood_task
        after = await counts(database_url)
    refused = len(flood.latencies)
    print(f"{engine}: genuine alone p50 {alone.percentile(50) * 1000:.1f} ms, p99 {alone.percentile(99) * 1000:.1f} ms"
          f" | during the flood p50 {during.percentile(50) * 1000:.1f} ms, p99 {during.percentile(99) * 1000:.1f} ms"
          f" (×{during.percentile(99) / alone.percentile(99):.2f})"
          f" | flood {refused / flood.seconds:.0f} refusals/s answered (target {args.flood_rate:.0f}), errors "
          f"{flood.errors or 0} | per refused request: {(after[0] - before[0]) / max(refused, 1):.3f} audit entries,"
          f" {(after[1] - before[1]) / max(refused, 1):.4f} refusal rows", flush=True)


async def main(args: argparse.Namespace) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="paybot-bench-"))
    dbs = Databases(workdir)
    try:
        for engine in (["sqlite", "postgresql"] if args.engine == "all" else [args.engine]):
            await dbs.prepare(engine)
            await run(engine, dbs, args)
    finally:
        await dbs.drop_all()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="length of each phase (default 30)")
    parser.add_argument("--flood-rate", type=float, default=1000.0, help="forged requests per second (default 1000)")
    parser.add_argument("--genuine-rate", type=float, default=20.0, help="genuine events per second (default 20)")
    parser.add_argument("--engine", choices=("sqlite", "postgresql", "all"), default="all")
    return parser.parse_args(argv)


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse(sys.argv[1:]))))
