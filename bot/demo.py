"""`paybot demo`: a shop's first payments on a temporary SQLite file, with no credentials at all.

It seeds two customers and their invoices, then sends itself correctly signed webhooks over loopback HTTP: a Stripe
invoice paid in full, Stripe's retry of it, a partial payment reported by Wave (through Zapier), and a payment
nobody can match. For each it prints what a person would read: the customer's email, the finance card as Slack
shows it. Nothing leaves the machine: the worker does not run, the channels are rendered, not called.
"""

from __future__ import annotations

import json
import secrets
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

import aiohttp
from aiohttp import web
from sqlalchemy import func, select

from bot.domain.money import Money
from bot.domain.parties import Customer
from bot.integrations.base import IntegrationSettings
from bot.integrations.channels import CHANNELS
from bot.integrations.sources.stripe import StripeSettings, sign
from bot.integrations.sources.wave import HEADER as WAVE_HEADER, WaveSettings
from bot.keys import RUNTIME
from bot.runtime import Runtime
from bot.services import directory
from bot.settings import Settings
from bot.storage import audit, models
from cards.preview import as_text

ALVAREZ = Customer(id="C-1001", name="Alvarez Fabrication", email="ap@alvarez-fab.example", phone="+15555550100",
                   channels=("email", "slack"), slack_channel="C0ALVAREZ", external_ids={"stripe": "cus_Q1demo"})
HARBOR = Customer(id="C-1002", name="Harbor Marine Works", email="accounts@harbor-marine.example",
                  channels=("email",))
INVOICES = (("INV-1042", ALVAREZ, Money.of("1250.00", "USD")), ("INV-1043", HARBOR, Money.of("2400.00", "USD")))
FINANCE_CHANNEL = "C0FINANCE"
BUSINESS: dict[str, Any] = {
    "business_name": "Ridgeline Aluminum Welding", "business_phone": "+1 (555) 010-4477",
    "business_address": "88 Foundry Road, Erie, PA", "business_reply_to": "accounts@ridgeline-welding.example",
    "business_timezone": "America/New_York"}
RULE = "─" * 78


#: Optional settings the demo stands in for too, to show the product as a configured shop sees it: Slack chat-ops
#: (without a signing secret nothing answers a button, so cards carry none).
SHOWN_CONFIGURED = {"slack": ("signing_secret",)}


def channel_configs() -> dict[str, IntegrationSettings]:
    """Every channel: the operator's settings when complete, otherwise stand-in values (the demo never sends)."""
    configs: dict[str, IntegrationSettings] = {}
    for name, factory in CHANNELS.items():
        config = factory.Settings()
        if config.missing():
            shown = (*factory.Settings.required, *SHOWN_CONFIGURED.get(name, ()))
            stand_ins: dict[str, Any] = {f: stand_in(f) for f in shown}
            config = factory.Settings(_env_file=None, **stand_ins)
        configs[name] = config
    return configs


def stand_in(field: str) -> str:
    return "billing@paybot.example" if "email" in field else f"demo-{field}"


def stripe_invoice_paid(event_id: str, created: int) -> dict[str, Any]:
    number, customer, amount = INVOICES[0]
    return {"id": event_id, "object": "event", "type": "invoice.paid", "api_version": "2025-05-28.basil",
            "created": created, "livemode": False,
            "data": {"object": {"id": "in_demo1042", "object": "invoice", "number": number, "status": "paid",
                                "currency": "usd", "amount_paid": amount.minor, "amount_remaining": 0,
                                "total": amount.minor, "customer": "cus_Q1demo", "customer_email": customer.email,
                                "customer_name": customer.name, "payment_intent": "pi_demo1042"}}}


def stripe_unmatched_charge(created: int) -> dict[str, Any]:
    return {"id": f"evt_demo_{secrets.token_hex(6)}", "object": "event", "type": "charge.succeeded",
            "api_version": "2025-05-28.basil", "created": created, "livemode": False,
            "data": {"object": {"id": "ch_demo7781", "object": "charge", "amount": 31000, "amount_captured": 31000,
                                "currency": "usd", "created": created, "payment_intent": "pi_demo7781",
                                "metadata": {"invoice": "INV-7781"}, "description": "Bracket repair, PO 7781",
                                "billing_details": {"name": "Dockside Rentals", "email": "pay@dockside.example"}}}}


def wave_partial(payment: Money, paid_so_far: Money) -> dict[str, str]:
    number, customer, total = INVOICES[1]
    return {"source": "wave", "payment_id": "wave-pay-2201", "invoice_id": "wave-inv-1043",
            "invoice_number": number, "status": "PARTIAL", "currency": total.currency, "total": str(total.amount),
            "amount_paid": str(paid_so_far.amount), "amount_due": str((total - paid_so_far).amount),
            "payment_amount": str(payment.amount), "payment_date": "2026-11-30",
            "customer_name": customer.name, "customer_email": customer.email or ""}


class Demo:
    def __init__(self, runtime: Runtime, base_url: str, http: aiohttp.ClientSession, out: TextIO,
                 stripe_secret: str, wave_secret: str) -> None:
        self.runtime, self.base_url, self.http, self.out = runtime, base_url, http, out
        self.stripe_secret, self.wave_secret = stripe_secret, wave_secret

    def say(self, text: str = "") -> None:
        self.out.write(text + "\n")

    async def post(self, path: str, body: bytes, headers: dict[str, str]) -> str:
        async with self.http.post(self.base_url + path, data=body, headers=headers) as resp:
            answer = await resp.json()
            verdict = "duplicate: already recorded" if answer.get("duplicate") else "recorded"
            return f"{resp.status} ({verdict})" if resp.status == 200 else f"{resp.status} {answer}"

    async def stripe(self, event: dict[str, Any]) -> str:
        body = json.dumps(event).encode()
        header = sign(body, self.stripe_secret, int(self.runtime.db.clock().timestamp()))
        return await self.post("/webhooks/stripe", body, {"Stripe-Signature": header})

    async def wave(self, fields: dict[str, str]) -> str:
        return await self.post("/webhooks/wave", json.dumps(fields).encode(),
                               {WAVE_HEADER: self.wave_secret, "Content-Type": "application/json"})

    async def step(self, title: str, send: Callable[[], Any]) -> list[models.Notification]:
        """Send one webhook; print its answer and what it queued."""
        before = await self._last_notification_id()
        self.say(RULE)
        self.say(title)
        self.say(f"  → paybot answered {await send()}")
        async with self.runtime.db.read() as session:
            queued = list(await session.scalars(select(models.Notification).where(
                models.Notification.id > before).order_by(models.Notification.id)))
        if not queued:
            self.say("  Nothing new was queued: nobody hears about the same payment twice.")
        return queued

    async def _last_notification_id(self) -> int:
        async with self.runtime.db.read() as session:
            return await session.scalar(select(func.coalesce(func.max(models.Notification.id), 0))) or 0

    def show(self, queued: list[models.Notification]) -> None:
        for n in queued:
            self.say()
            if n.audience == "customer":
                self._show_customer(n)
            else:
                self._show_finance(n)

    def _show_customer(self, n: models.Notification) -> None:
        fallbacks = f" (if it fails for good: {', '.join(n.fallbacks)})" if n.fallbacks else ""
        self.say(f"  To the customer, via {n.channel}{fallbacks}:")
        payload = n.payload
        if "personalizations" in payload:  # an email, as the customer's mail program shows it
            sender = payload["from"]
            name = f"{sender['name']} " if sender.get("name") else ""
            self.say(f"    From:    {name}<{sender['email']}>")
            self.say(f"    To:      {payload['personalizations'][0]['to'][0]['email']}")
            self.say(f"    Subject: {payload['subject']}")
            self.say("")
            text = next(c["value"] for c in payload["content"] if c["type"] == "text/plain")
            self.say("\n".join(f"    {line}".rstrip() for line in text.splitlines()))
        elif "blocks" in payload:
            self.say("\n".join(f"    {line}" for line in as_text(payload["blocks"])))

    def _show_finance(self, n: models.Notification) -> None:
        self.say(f"  Finance card in #{n.recipient} ({n.channel}):")
        self.say("    ┌" + "─" * 60)
        for line in as_text(n.payload.get("blocks", [])):
            self.say(f"    │ {line}")
        self.say("    └" + "─" * 60)


async def run_demo(out: TextIO) -> int:
    from bot.app import create_app

    with tempfile.TemporaryDirectory(prefix="paybot-demo-") as tmp:
        stripe_secret, wave_secret = "whsec_demo_" + secrets.token_hex(16), secrets.token_hex(16)
        settings = Settings(_env_file=None, database_url=f"sqlite+aiosqlite:///{Path(tmp) / 'demo.db'}",
                            finance_slack_channel=FINANCE_CHANNEL, audit_key=secrets.token_hex(16),
                            ingest_mode="inline", **BUSINESS)  # the story reads each payment as it is answered
        configs = {"stripe": StripeSettings(_env_file=None, webhook_secret=stripe_secret),
                   "wave": WaveSettings(_env_file=None, webhook_secret=wave_secret), **channel_configs()}
        app = create_app(settings, configs=configs, run_worker=False)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        try:
            runtime = app[RUNTIME]
            port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            async with aiohttp.ClientSession() as http:
                demo = Demo(runtime, f"http://127.0.0.1:{port}", http, out, stripe_secret, wave_secret)
                await _seed(demo)
                await _story(demo)
                await _audit(demo)
        finally:
            await runner.cleanup()
    return 0


async def _seed(demo: Demo) -> None:
    async with demo.runtime.db.transaction() as uow:
        for number, customer, amount in INVOICES:
            await directory.save_customer(uow, customer)
            await directory.save_invoice(uow, number, customer.id, amount)
    demo.say("paybot demo — a throwaway database, signed sample webhooks over loopback; nothing is sent.")
    demo.say("Tracked: " + "; ".join(f"{number} {customer.name} {amount.format('en-US')}"
                                      for number, customer, amount in INVOICES))


async def _story(demo: Demo) -> None:
    now = int(demo.runtime.db.clock().timestamp())
    paid = stripe_invoice_paid(f"evt_demo_{secrets.token_hex(6)}", now)
    demo.show(await demo.step("1. Stripe: invoice INV-1042 paid in full ($1,250.00), signed invoice.paid",
                              lambda: demo.stripe(paid)))
    await demo.step("2. Stripe sends the same event again (a retry)", lambda: demo.stripe(paid))
    part = wave_partial(Money.of("1000.00", "USD"), Money.of("1000.00", "USD"))
    demo.show(await demo.step("3. Wave (through Zapier): $1,000.00 paid on INV-1043 ($2,400.00)",
                              lambda: demo.wave(part)))
    demo.show(await demo.step("4. Stripe: $310.00 from a payer paybot does not know, quoting INV-7781",
                              lambda: demo.stripe(stripe_unmatched_charge(now))))
    demo.say("  No customer message: an unmatched payment waits for finance to match it.")


async def _audit(demo: Demo) -> None:
    demo.say(RULE)
    async with demo.runtime.db.read() as session:
        kinds: dict[str, int] = {}
        async for row in audit.entries(session):
            kinds[str(row["kind"])] = kinds.get(str(row["kind"]), 0) + 1
        result = await audit.verify(session, demo.runtime.db.audit_keys)
    demo.say("Audit trail: " + ", ".join(f"{n} {kind}" for kind, n in kinds.items()))
    demo.say(f"audit verify: {'intact' if result.broken is None else 'BROKEN'} ({result.count} entries)")
