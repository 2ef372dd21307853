"""`paybot demo`: the whole path on a temporary SQLite file, with no credentials at all.

It seeds a customer and an invoice, sends itself a correctly signed Stripe webhook over loopback HTTP, and prints
what would go out on each channel and the audit entries. Nothing leaves the machine: the worker does not run.
"""

from __future__ import annotations

import json
import secrets
import tempfile
from pathlib import Path
from typing import Any, TextIO

import aiohttp
from aiohttp import web
from sqlalchemy import select

from bot.domain.money import Money
from bot.domain.parties import Customer
from bot.integrations.base import IntegrationSettings
from bot.integrations.channels import CHANNELS
from bot.integrations.sources.stripe import StripeSettings, sign
from bot.keys import RUNTIME
from bot.messages import Message, Purpose
from bot.services import directory, receipts
from bot.settings import Settings
from bot.storage import audit, models

CUSTOMER = Customer(id="C-1001", name="Alvarez Fabrication", email="ap@alvarez-fab.example", phone="+15555550100",
                    channels=("email", "sms", "slack"), slack_channel="C0ALVAREZ",
                    external_ids={"stripe": "cus_Q1demo"})
INVOICE, AMOUNT = "INV-1042", Money.of("1250.00", "USD")


def channel_configs() -> dict[str, IntegrationSettings]:
    """Every channel: the operator's settings when complete, otherwise stand-in values (the demo never sends)."""
    configs: dict[str, IntegrationSettings] = {}
    for name, factory in CHANNELS.items():
        config = factory.Settings()
        if config.missing():
            stand_ins: dict[str, Any] = {f: stand_in(f) for f in factory.Settings.required}
            config = factory.Settings(_env_file=None, **stand_ins)
        configs[name] = config
    return configs


def stand_in(field: str) -> str:
    return "billing@paybot.example" if "email" in field else f"demo-{field}"


def stripe_event(paid_minor: int) -> dict[str, Any]:
    return {"id": f"evt_demo_{secrets.token_hex(6)}", "object": "event", "type": "invoice.paid",
            "api_version": "2025-05-28.basil", "created": 0, "livemode": False,
            "data": {"object": {"id": "in_demo1042", "object": "invoice", "number": INVOICE, "status": "paid",
                                "currency": "usd", "amount_paid": paid_minor, "amount_remaining": 0,
                                "total": paid_minor, "customer": "cus_Q1demo", "customer_email": CUSTOMER.email,
                                "customer_name": CUSTOMER.name}}}


async def run_demo(out: TextIO) -> int:
    from bot.app import create_app

    with tempfile.TemporaryDirectory(prefix="paybot-demo-") as tmp:
        secret = "whsec_demo_" + secrets.token_hex(16)
        settings = Settings(_env_file=None, database_url=f"sqlite+aiosqlite:///{Path(tmp) / 'demo.db'}",
                            finance_slack_channel="C0FINANCE")
        configs = {"stripe": StripeSettings(_env_file=None, webhook_secret=secret), **channel_configs()}
        app = create_app(settings, configs=configs, run_worker=False)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        try:
            runtime = app[RUNTIME]
            async with runtime.db.transaction() as uow:
                await directory.save_customer(uow, CUSTOMER)
                await directory.save_invoice(uow, INVOICE, CUSTOMER.id, AMOUNT)
            port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            event = stripe_event(AMOUNT.minor)
            event["created"] = int(runtime.db.clock().timestamp())
            body = json.dumps(event).encode()
            header = sign(body, secret, int(runtime.db.clock().timestamp()))
            async with aiohttp.ClientSession() as http:
                async with http.post(f"http://127.0.0.1:{port}/webhooks/stripe", data=body,
                                     headers={"Stripe-Signature": header}) as resp:
                    out.write(f"POST /webhooks/stripe (signed invoice.paid for {INVOICE}, {AMOUNT}) "
                              f"→ {resp.status} {await resp.text()}\n\n")
            await _print_outbox(runtime, out)
            await _print_channels(runtime, out)
            await _print_audit(runtime, out)
        finally:
            await runner.cleanup()
    return 0


async def _print_outbox(runtime: Any, out: TextIO) -> None:
    async with runtime.db.read() as session:
        notifications = await session.scalars(select(models.Notification).order_by(models.Notification.id))
    out.write("Queued in the outbox (a worker would send these now):\n")
    for n in notifications:
        out.write(f"  #{n.id} {n.purpose} via {n.channel} to {n.recipient}"
                  f"{' (fallbacks: ' + ', '.join(n.fallbacks) + ')' if n.fallbacks else ''}\n")
    out.write("\n")


async def _print_channels(runtime: Any, out: TextIO) -> None:
    async with runtime.db.read() as session:
        payment_id = await session.scalar(select(models.Payment.id).order_by(models.Payment.id))
        loaded = await receipts.load(session, payment_id) if payment_id is not None else None
    assert loaded is not None
    receipt, customer = loaded
    out.write("The acknowledgement on each configured channel:\n")
    for name, channel in runtime.channels.items():
        recipient = channel.address(customer) if customer else None
        if recipient is None:
            out.write(f"\n  [{name}] — {CUSTOMER.name} has no address on this channel\n")
            continue
        payload = channel.render(Message(Purpose.RECEIPT, recipient, receipt, customer))
        out.write(f"\n  [{name}] to {recipient}:\n")
        for line in json.dumps(payload, indent=2, ensure_ascii=False).splitlines():
            out.write(f"    {line}\n")
    out.write("\n")


async def _print_audit(runtime: Any, out: TextIO) -> None:
    out.write("Audit trail:\n")
    async with runtime.db.read() as session:
        async for row in audit.entries(session):
            subject = " ".join(str(row[k]) for k in ("source", "channel", "invoice", "amount", "currency") if row[k])
            out.write(f"  {row['seq']:>3} {row['at']} {row['kind']:<22} {subject}\n")
        result = await audit.verify(session, runtime.db.audit_keys)
    out.write(f"\naudit verify: {'intact' if result.broken is None else 'BROKEN'} ({result.count} entries)\n")
