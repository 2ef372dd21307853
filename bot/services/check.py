"""`paybot check`: what is configured, whether each provider accepts its credentials, who cannot be reached.

`summary` reads the configuration only (`serve` logs it at start); `check` also calls each enabled integration's
`SelfChecking` hook and looks at every customer on file. Every finding is one line; a problem names the setting
or the customer and what to do.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from urllib.parse import urlsplit

from sqlalchemy import select

from bot.domain.parties import Customer
from bot.integrations.channels.base import Channel
from bot.integrations.checks import Finding, SelfChecking, off, ok, problem, url_problems
from bot.integrations.sources.base import PaymentSource
from bot.services.notify import Notifier
from bot.settings import Settings
from bot.storage import models, repo
from bot.storage.database import Database

Integration = PaymentSource | Channel


def summary(sources: Mapping[str, PaymentSource], channels: Mapping[str, Channel],
            disabled: Mapping[str, list[str]], settings: Settings) -> list[Finding]:
    """What runs and what does not, and why; no provider is called."""
    found = [ok(f"integration {name} enabled: payment source") for name in sources]
    found += [ok(f"integration {name} enabled: channel for customers who prefer {c.serves}")
              for name, c in channels.items()]
    found += [off(f"integration {name} disabled: {', '.join(missing)} not set") for name, missing in disabled.items()]
    if not sources:
        found.append(problem("no payment source is on: paybot receives no payments (see .env.example)"))
    found += _staff_channels(channels, settings)
    if settings.email_provider and settings.email_provider not in channels:
        found.append(problem(f"EMAIL_PROVIDER={settings.email_provider}, but {settings.email_provider} is off"))
    email = [name for name, channel in channels.items() if channel.serves == "email"]
    if len(email) > 1 and not settings.email_provider:
        found.append(problem(f"{' and '.join(email)} are both configured for email: set EMAIL_PROVIDER to the one "
                             f"that sends (now {email[0]})"))
    return found


def _staff_channels(channels: Mapping[str, Channel], settings: Settings) -> list[Finding]:
    found = []
    for setting, value, what in (("FINANCE_SLACK_CHANNEL", settings.finance_slack_channel, "finance cards"),
                                 ("ESCALATION_SLACK_CHANNEL", settings.escalation_slack_channel, "escalations")):
        if value and "slack" not in channels:
            found.append(problem(f"{setting} is set, but Slack is off (SLACK_BOT_TOKEN): no {what} will be posted"))
        elif value:
            found.append(ok(f"{what}: Slack channel {value}"))
        elif setting == "FINANCE_SLACK_CHANNEL" and not settings.finance_teams_conversation:
            found.append(off(f"{what} disabled: {setting} not set (finance hears of no payment)"))
    for setting, value, what in (("FINANCE_TEAMS_CONVERSATION", settings.finance_teams_conversation, "finance cards"),
                                 ("ESCALATION_TEAMS_CONVERSATION", settings.escalation_teams_conversation,
                                  "escalations")):
        if value and "teams" not in channels:
            found.append(problem(f"{setting} is set, but Teams is off (TEAMS_APP_ID): no {what} will be posted"))
        elif value:
            found.append(ok(f"{what}: Teams conversation {value}"))
    return found


async def check(sources: Mapping[str, PaymentSource], channels: Mapping[str, Channel],
                disabled: Mapping[str, list[str]], settings: Settings, db: Database) -> list[Finding]:
    """The summary, the URLs, each provider's answer and every customer nobody can reach."""
    enabled: dict[str, Integration] = {**sources, **channels}
    found = [ok(f"database: {db.engine.url.render_as_string(hide_password=True)}, at the latest schema")]
    found += summary(sources, channels, disabled, settings)
    public = urlsplit(settings.public_base_url)
    if public.scheme not in ("http", "https") or not public.hostname:
        found.append(problem(f"PUBLIC_BASE_URL {settings.public_base_url!r} is not an http(s) URL"))
    malformed = {name: url_problems(integration.settings)  # type: ignore[union-attr]
                 for name, integration in enabled.items()}
    for problems in malformed.values():
        found += problems
    callable_ = {name: integration for name, integration in enabled.items() if not malformed[name]}
    answers = await asyncio.gather(*(_ask(name, integration, settings) for name, integration in callable_.items()))
    for answer in answers:
        found += answer
    found += await unreachable_customers(db, Notifier(settings, channels))
    return found


async def _ask(name: str, integration: Integration, settings: Settings) -> list[Finding]:
    if not isinstance(integration, SelfChecking):
        return [ok(f"{name}: nothing to call (no API credential; the first signed webhook proves the secret)")]
    try:
        answer = await integration.check(settings)
    except Exception as exc:  # noqa: BLE001  unreachable, or an answer we did not foresee: still one line
        return [problem(f"{name}: could not be checked: {exc}"[:300])]
    return [Finding(f"{name}: {f.text}", f.mark) for f in answer]


async def customers_on_file(db: Database) -> list[Customer]:
    async with db.read() as session:
        return [repo.to_customer(row, {}) for row in await session.scalars(select(models.Customer)
                                                                          .order_by(models.Customer.id))]


async def unreachable_customers(db: Database, notifier: Notifier) -> list[Finding]:
    customers = await customers_on_file(db)
    found = [problem(f"customer {c.id} ({c.name}): nobody can reach it: {reason}")
             for c in customers if (reason := unreachable(notifier, c)) is not None]
    if not found:
        found.append(ok(f"customers: {len(customers)} on file, every one reachable" if customers
                        else "customers: none on file yet (paybot import customers FILE.csv)"))
    return found


def unreachable(notifier: Notifier, customer: Customer) -> str | None:
    """Why no configured channel can reach the customer, or None if one can (the payment path's own rule)."""
    return notifier.why_unreachable(customer)
