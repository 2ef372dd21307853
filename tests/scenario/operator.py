"""What the operator commands' tests share: every fake provider up, the environment a shop would set to use
them, customers on file, and `paybot …` run in-process as an operator runs it."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import pytest

from bot.cli import main
from bot.storage import models
from bot.storage.database import Database
from tests.fakes import paypal as fake_paypal
from tests.fakes import sendgrid as fake_sendgrid
from tests.fakes import slack as fake_slack
from tests.fakes import square as fake_square
from tests.fakes import stripe as fake_stripe


@dataclass
class Providers:
    sendgrid: fake_sendgrid.FakeSendGrid
    slack: fake_slack.FakeSlack
    stripe: fake_stripe.FakeStripe
    square: fake_square.FakeSquare
    paypal: fake_paypal.FakePayPal

    def environment(self, database_url: str) -> dict[str, str]:
        """Every integration on, each pointed at its fake, as `.env` would have it."""
        def root(fake: Any) -> str:
            return str(fake.server.make_url("/"))

        return {
            "DATABASE_URL": database_url,
            "STRIPE_WEBHOOK_SECRET": "whsec_test", "STRIPE_API_KEY": fake_stripe.API_KEY,
            "STRIPE_BASE_URL": root(self.stripe),
            "SQUARE_SIGNATURE_KEY": "square-signature-key", "SQUARE_ACCESS_TOKEN": fake_square.ACCESS_TOKEN,
            "SQUARE_BASE_URL": root(self.square),
            "PAYPAL_WEBHOOK_ID": fake_paypal.WEBHOOK_ID, "PAYPAL_RECEIVER_EMAIL": "billing@weld.example",
            "PAYPAL_IPN_VERIFY_URL": root(self.paypal) + "cgi-bin/webscr", "PAYPAL_CERT_ORIGINS": self.paypal.origin,
            "WAVE_WEBHOOK_SECRET": "wave-secret",
            "SENDGRID_API_KEY": fake_sendgrid.API_KEY, "SENDGRID_FROM_EMAIL": "billing@weld.example",
            "SENDGRID_BASE_URL": root(self.sendgrid),
            "SLACK_BOT_TOKEN": fake_slack.BOT_TOKEN, "SLACK_BASE_URL": root(self.slack),
            "FINANCE_SLACK_CHANNEL": "C0FINANCE",
        }


@pytest.fixture
async def providers(aiohttp_server, sendgrid, slack) -> Providers:  # type: ignore[no-untyped-def]
    fakes = Providers(sendgrid=sendgrid, slack=slack, stripe=fake_stripe.FakeStripe(), square=fake_square.FakeSquare(),
                      paypal=fake_paypal.FakePayPal())
    for fake in (fakes.stripe, fakes.square, fakes.paypal):
        fake.server = await aiohttp_server(fake.app)  # type: ignore[attr-defined]
    return fakes


def configure(monkeypatch: pytest.MonkeyPatch, environment: dict[str, str], **overrides: str) -> None:
    for name, value in (environment | overrides).items():
        monkeypatch.setenv(name, value)


async def paybot(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """`paybot ARGV` in-process (on its own thread and event loop, beside the fakes on this one)."""
    code = await asyncio.to_thread(main, list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


async def add_customers(database_url: str, *customers: dict[str, Any]) -> None:
    db = Database.open(database_url)
    try:
        async with db.transaction() as uow:
            for customer in customers:
                uow.session.add(models.Customer(**({"channels": ["email"]} | customer)))
    finally:
        await db.dispose()
