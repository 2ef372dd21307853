"""How fast paybot answers a 50-entity QuickBooks notification while Intuit's API is slow (500 ms per read).

    .venv/bin/python benchmarks/quickbooks.py [--entities 50] [--delay 0.5] [--rounds 5] [--database-url URL]

Intuit wants a 200 within 3 seconds. paybot (the real app, `paybot serve` with its worker, on a loopback port)
verifies and stores each notification and answers; the reads (each Payment, its invoice, the customer) happen
after the answer. The fake Intuit (tests/fakes/quickbooks.py, on its own loopback port) sleeps `--delay` seconds
before every API read. Printed: each answer's latency, and how long the reads took afterwards until every payment
of the round was recorded. Exit 1 if an answer took 3 s or more, or a payment was not recorded.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import aiohttp
from aiohttp import web
from sqlalchemy import func, select

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bot.app import create_app  # noqa: E402
from bot.integrations.sources.quickbooks import QuickBooksSettings, sign  # noqa: E402
from bot.keys import RUNTIME  # noqa: E402
from bot.settings import Settings  # noqa: E402
from bot.storage import models  # noqa: E402
from tests.fakes.quickbooks import (CLIENT_ID, CLIENT_SECRET, REALM, VERIFIER_TOKEN, FakeQuickBooks,  # noqa: E402
                                    customer, invoice, payment)

INTUIT_DEADLINE = 3.0


async def serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}"


def notification(ids: list[str]) -> bytes:
    return json.dumps([{"specversion": "1.0", "id": str(uuid.uuid4()), "source": "intuit.benchmark",
                        "type": "qbo.payment.created.v1", "datacontenttype": "application/json",
                        "time": "2026-11-28T12:00:01.179851517Z", "intuitentityid": i, "intuitaccountid": REALM,
                        "data": {}} for i in ids]).encode()


async def main(args: argparse.Namespace) -> int:
    intuit = FakeQuickBooks()
    intuit_runner, intuit_url = await serve(intuit.app)
    for n in range(args.entities * args.rounds):
        intuit.put(REALM, "invoice", invoice(str(1000 + n), number=f"QB-{1000 + n}", total="100.00"))
        intuit.put(REALM, "payment", payment(str(5000 + n), amount="100.00", invoices=((str(1000 + n), "100.00"),),
                                             customer=str(n % 10)))
    for c in range(10):
        intuit.put(REALM, "customer", customer(str(c), email=f"payer{c}@example.com"))
    with tempfile.TemporaryDirectory() as scratch:
        url = args.database_url or f"sqlite+aiosqlite:///{scratch}/paybot.db"
        # The catch-up sweep's first look-back is kept short: it would otherwise read every payment of the
        # fake's history in the background and blur the count of the webhook's own reads.
        settings = Settings(_env_file=None, database_url=url, public_base_url="http://127.0.0.1",  # type: ignore[call-arg]
                            sweep_lookback_hours=0.001)
        configs = {"quickbooks": QuickBooksSettings(  # type: ignore[call-arg]
            _env_file=None, verifier_token=VERIFIER_TOKEN, client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
            refresh_token=intuit.grant(), realm_id=REALM, base_url=intuit_url,
            token_url=f"{intuit_url}/oauth2/v1/tokens/bearer")}
        app = create_app(settings, configs=configs)
        paybot_runner, paybot_url = await serve(app)
        runtime = app[RUNTIME]
        intuit.delay = args.delay
        answers, resolved, problems = [], [], []
        try:
            async with aiohttp.ClientSession() as client:
                for r in range(args.rounds):
                    ids = [str(5000 + r * args.entities + k) for k in range(args.entities)]
                    body = notification(ids)
                    started = time.perf_counter()
                    async with client.post(f"{paybot_url}/webhooks/quickbooks", data=body, headers={
                            "intuit-signature": sign(body, VERIFIER_TOKEN), "Content-Type": "application/json"}) as resp:
                        await resp.read()
                        answered = time.perf_counter() - started
                    if resp.status != 200:
                        problems.append(f"round {r}: answered {resp.status}")
                    answers.append(answered)
                    await runtime.verifier.settle()  # the reads, after the answer
                    resolved.append(time.perf_counter() - started)
                    print(f"round {r + 1}: {args.entities} entities answered in {answered * 1000:7.1f} ms "
                          f"(HTTP {resp.status}); all read and recorded {resolved[-1]:6.2f} s after the POST",
                          flush=True)
            async with runtime.db.read() as session:
                recorded = await session.scalar(select(func.count()).select_from(models.Payment))
        finally:
            await paybot_runner.cleanup()
            await intuit_runner.cleanup()
    expected = args.entities * args.rounds
    if recorded != expected:
        problems.append(f"{recorded} payments recorded, {expected} expected")
    if max(answers) >= INTUIT_DEADLINE:
        problems.append(f"an answer took {max(answers):.2f} s (Intuit's limit: {INTUIT_DEADLINE:g} s)")
    reads = len([c for c in intuit.calls if c.path.startswith("/v3/")])
    print(f"\nanswer latency over {args.rounds} rounds: p50 {statistics.median(answers) * 1000:.1f} ms, "
          f"max {max(answers) * 1000:.1f} ms (Intuit's limit {INTUIT_DEADLINE * 1000:.0f} ms); "
          f"{reads} API reads at {args.delay * 1000:.0f} ms each, made after the answers; "
          f"{recorded} of {expected} payments recorded")
    for problem in problems:
        print("PROBLEM:", problem)
    return 1 if problems else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entities", type=int, default=50)
    parser.add_argument("--delay", type=float, default=0.5, help="seconds the fake Intuit takes per API read")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--database-url", help="default: a scratch SQLite file (PostgreSQL: a migrated database)")
    sys.exit(asyncio.run(main(parser.parse_args())))
