"""In process, no HTTP: the CPU one deferred payment costs to store (the inbox's group commit) and to record
(`Ingest.process_many`, batches of --batch), each customer thanked by email (one outbox row per payment).

    .venv/bin/python benchmarks/recording.py [--payments 3000] [--batch 100]

The same data as throughput.py (one customer and one open invoice per payment, both known to Stripe), on a
scratch SQLite file; the events are signed Stripe `invoice.paid`, parsed as the webhook handler parses them.
CPU is the whole process's (every thread, `time.process_time`), so the SQLite writer thread counts; recording
is reported for the median batch, as other work on the machine inflates some batches.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from multidict import CIMultiDict

sys.path.insert(1, str(Path(__file__).resolve().parent.parent))
from throughput import AUDIT_KEY, SECRET, seed_rows, signed_event  # noqa: E402


async def measure(args: argparse.Namespace, workdir: Path) -> None:
    from bot.integrations.channels.sendgrid import SendGridSettings
    from bot.integrations.sources.base import InboundRequest, read
    from bot.integrations.sources.stripe import StripeSettings
    from bot.runtime import start
    from bot.settings import Settings
    from bot.storage import migrate
    from bot.storage.engine import create_engine

    url = f"sqlite+aiosqlite:///{workdir / 'recording.db'}"
    engine = create_engine(url)
    await migrate.upgrade(engine)
    async with engine.begin() as conn:
        await conn.run_sync(seed_rows, args.payments, 0)
    await engine.dispose()

    settings = Settings(_env_file=None, database_url=url, ingest_mode="deferred",  # type: ignore[call-arg]
                        audit_key=AUDIT_KEY, public_base_url="https://paybot.example.com")
    configs = {"stripe": StripeSettings(_env_file=None, webhook_secret=SECRET),  # type: ignore[call-arg]
               "sendgrid": SendGridSettings(_env_file=None, api_key="SG.key",  # type: ignore[call-arg]
                                            from_email="billing@example.com", base_url="http://127.0.0.1:9")}
    runtime = await start(settings, configs=configs, announce=False)
    try:
        ingest, stripe = runtime.ingest, runtime.sources["stripe"]
        requests = []
        for n in range(1, args.payments + 1):
            body, signature = signed_event(n, "micro")
            requests.append(InboundRequest(
                method="POST", url="https://paybot.example.com/webhooks/stripe",
                headers=CIMultiDict({"Content-Type": "application/json", "Stripe-Signature": signature}),
                query={}, body=body, received_at=runtime.db.clock()))

        async def answered(request: InboundRequest) -> tuple[int, object]:
            stripe.verify(request)
            received = await read(stripe.parse, request)
            recorded = await ingest.accept("stripe", request, received, process_here=True)
            assert recorded.deferred is not None
            return recorded.deferred, received

        started = time.process_time()
        items = []
        for first in range(0, len(requests), 256):  # as the group commit takes them under load
            items += await asyncio.gather(*(answered(r) for r in requests[first:first + 256]))
        answering = time.process_time() - started

        payments, per_batch = 0, []
        for first in range(0, len(items), args.batch):
            started = time.process_time()
            done = await ingest.process_many(items[first:first + args.batch])  # type: ignore[arg-type]
            per_batch.append((time.process_time() - started) / len(done.payment_ids))
            payments += len(done.payment_ids)
    finally:
        await runtime.close()
    assert payments == args.payments, f"{payments} of {args.payments} recorded together"
    print(f"{args.payments} payments, batches of {args.batch}")
    print(f"  verify + parse + store (group commit): {answering / args.payments * 1000:.3f} ms CPU per payment")
    print(f"  record (process_many):                 {statistics.median(per_batch) * 1000:.3f} ms CPU per payment "
          f"(the median batch; the mean {statistics.mean(per_batch) * 1000:.3f} ms)")


def parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--payments", type=int, default=3000)
    parser.add_argument("--batch", type=int, default=100)
    return parser.parse_args(argv)


def entry(argv: Sequence[str]) -> None:
    args = parse(argv)
    with tempfile.TemporaryDirectory(prefix="paybot-recording-") as workdir:
        asyncio.run(measure(args, Path(workdir)))


if __name__ == "__main__":
    entry(sys.argv[1:])
