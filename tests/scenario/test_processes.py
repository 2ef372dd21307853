"""The Procfile as operators run it: `migrate`, a web process and two workers as separate OS processes sharing
one database; every payment is acknowledged exactly once."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
import time

import aiohttp
import pytest

from bot.integrations.sources.stripe import sign
from tests.fakes.sendgrid import API_KEY
from tests.harness import STRIPE_SECRET, stripe_invoice_event

CUSTOMERS = "id,name,email\nC1,Jane Doe,jane@example.com\n"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def paybot(env: dict[str, str], *args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(sys.executable, "-m", "bot", *args, env=env,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)


async def until(predicate, what: str, seconds: float = 30.0) -> None:
    """Readiness polling across processes (bounded; not a timing assertion)."""
    deadline = time.monotonic() + seconds
    while not await predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("ingest_mode", ["inline", "deferred"])
async def test_web_and_two_workers_acknowledge_each_payment_once(database_url, sendgrid, tmp_path, ingest_mode):
    """Deferred: the web process only stores each event; the workers record the payments and send."""
    port = free_port()
    env = {**os.environ, "DATABASE_URL": database_url, "INGEST_MODE": ingest_mode, "PORT": str(port), "STRIPE_WEBHOOK_SECRET": STRIPE_SECRET,
           "SENDGRID_API_KEY": API_KEY, "SENDGRID_FROM_EMAIL": "billing@weld.example",
           "SENDGRID_BASE_URL": str(sendgrid.server.make_url("/")), "WORKER_POLL_SECONDS": "0.05",
           "LOG_LEVEL": "WARNING"}
    (tmp_path / "customers.csv").write_text(CUSTOMERS)
    invoices = "number,customer_id,amount,currency\n" + "".join(f"INV-{n},C1,10.00,USD\n" for n in range(8))
    (tmp_path / "invoices.csv").write_text(invoices)
    for args in (("migrate",), ("import", "customers", "customers.csv"), ("import", "invoices", "invoices.csv")):
        process = await paybot(env, *args)
        out, err = await process.communicate()
        assert process.returncode == 0, err.decode()

    processes = [await paybot(env, "serve", "--no-worker"), await paybot(env, "worker"), await paybot(env, "worker")]
    try:
        async with aiohttp.ClientSession() as http:
            base = f"http://127.0.0.1:{port}"

            async def ready() -> bool:
                try:
                    async with http.get(f"{base}/readyz") as resp:
                        return resp.status == 200
                except aiohttp.ClientConnectionError:
                    return False

            await until(ready, "the web process")
            for n in range(8):
                body = json.dumps(stripe_invoice_event(f"evt_{n}", number=f"INV-{n}", amount_paid=1000)).encode()
                headers = {"Stripe-Signature": sign(body, STRIPE_SECRET, int(time.time()))}
                async with http.post(f"{base}/webhooks/stripe", data=body, headers=headers) as resp:
                    assert resp.status == 200, await resp.text()

            async def all_sent() -> bool:
                return len(sendgrid.accepted) >= 8

            await until(all_sent, "eight emails")
            await asyncio.sleep(0.3)  # let any (wrong) second send surface before counting
            invoices_mailed = sorted(m["subject"] for m in sendgrid.accepted)
            assert len(invoices_mailed) == 8 == len(set(invoices_mailed))
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        codes = [await asyncio.wait_for(p.wait(), 20) for p in processes]
    assert codes == [0, 0, 0]
