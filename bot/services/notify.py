"""Deciding who hears about a payment, on which channel, and queueing it in the outbox.

The customer hears on the first of their preferred channels that is configured and can reach them; the rest
are fallbacks, tried in order when a channel fails for good. Finance staff get a card in their channel. A customer
no channel can reach is audited (`notification.undeliverable`) and the card says they were not told, and why.
A message that cannot be written (an unknown locale, a broken template) is a failed notification like any other:
the payment it is about stands.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from bot.domain import reach
from bot.domain.audit import AuditRecord
from bot.domain.money import Money
from bot.domain.parties import Customer
from bot.domain.receipt import Receipt
from bot.integrations.channels import CHANNELS
from bot.integrations.channels.base import Channel, Payload
from bot.messages import Audience, Message, Purpose, Wording
from bot.settings import Settings
from bot.services import receipts
from bot.storage import consent, outbox
from bot.storage.database import UnitOfWork, audit_record
from bot.storage.models import Notification

log = logging.getLogger(__name__)
WARM_UP_PHONE = "+12025550100"  # a number reserved for fiction (555-01xx): every phone channel can use it


@dataclass(frozen=True, slots=True)
class Route:
    channel: Channel
    recipient: str


class Notifier:
    def __init__(self, settings: Settings, channels: Mapping[str, Channel]) -> None:
        self.settings = settings
        self.channels = channels
        self.wording = Wording(business=settings.business, templates_dir=settings.templates_dir)

    def stamp(self, message: Message) -> Message:
        """The message as this shop words it: its business identity and the operator's templates."""
        return replace(message, wording=self.wording)

    def why_unreachable(self, customer: Customer) -> str | None:
        return why_unreachable(customer, self.channels)

    def _provider_for(self, preference: str) -> Channel | None:
        serving = [c for c in self.channels.values() if c.serves == preference]
        if preference == "email" and self.settings.email_provider:
            serving = [c for c in serving if c.name == self.settings.email_provider] or serving
        return serving[0] if serving else None

    def customer_routes(self, customer: Customer) -> list[Route]:
        """The customer's usable channels, in their order of preference."""
        routes = []
        for preference in customer.channels:
            channel = self._provider_for(preference)
            recipient = channel.address(customer) if channel else None
            if channel and recipient:
                routes.append(Route(channel, recipient))
        return routes

    async def reachable_routes(self, uow: UnitOfWork, customer: Customer) -> tuple[list[Route], dict[str, str]]:
        """`customer_routes` less those the customer opted out of; and, by provider, why a channel of theirs was
        skipped (an address on file the channel cannot use, e.g. a phone that does not parse; an opt-out)."""
        out = {(preference, recipient) for preference, recipient in self.addresses(customer)
               if await consent.opted_out(uow.session, preference, recipient)}
        return self.routes_given(customer, out)

    def addresses(self, customer: Customer) -> list[tuple[str, str]]:
        """(channel kind, address) of each of the customer's channels a configured provider can use."""
        found = []
        for preference in customer.channels:
            channel = self._provider_for(preference)
            recipient = channel.address(customer) if channel is not None else None
            if recipient is not None:
                found.append((preference, recipient))
        return found

    def routes_given(self, customer: Customer,
                     opted_out: Collection[tuple[str, str]]) -> tuple[list[Route], dict[str, str]]:
        """`reachable_routes` with the customer's opt-outs (channel kind, address) already looked up."""
        routes, skipped = [], {}
        for preference in customer.channels:
            channel = self._provider_for(preference)
            if channel is None:
                continue
            recipient = channel.address(customer)
            if recipient is None:  # e.g. a CRM for a customer with no email on file, a phone that does not parse
                field = reach.ADDRESS_FIELDS.get(preference, "address").replace("_", " ")
                skipped[channel.name] = (f"{preference}: the {field} on file cannot be used by {channel.name}"
                                         if reach.address_of(customer, preference) else
                                         f"{preference}: no {field} on file")
            elif (preference, recipient) in opted_out:
                skipped[channel.name] = f"{preference}: {redact(recipient)} opted out"
            else:
                routes.append(Route(channel, recipient))
        return routes, skipped

    def warm(self, locales: Iterable[str], now: datetime) -> list[str]:
        """Write a made-up acknowledgement on every channel for readers of each locale, and throw it away, so that
        the first real payment does not wait while babel loads the locale's data and Jinja compiles the templates
        (its message cost 60 ms more than the next; a first in de-DE, 110 ms more). Returns what could not be
        written, one line each (a broken operator template, an unknown locale): that payment's message will fail
        the same way, and be recorded as failed."""
        problems = []
        serves = tuple(dict.fromkeys(channel.serves for channel in self.channels.values()))
        for locale in dict.fromkeys(locales):
            customer = Customer(id="warm-up", name="Warm-up", email="warm-up@example.com", phone=WARM_UP_PHONE,
                                locale=locale, channels=serves)
            receipt = receipts.made_up(customer, Money("USD", 100), invoice="WARM-UP", source="warm-up",
                                       reason="paybot start-up", now=now)
            messages = [(route, Message(Purpose.RECEIPT, route.recipient, receipt, customer))
                        for route in self.customer_routes(customer)]
            messages += [(route, Message(Purpose.FINANCE_CARD, route.recipient, receipt, customer))
                         for route in self.finance_routes()]
            for route, message in messages:
                try:
                    route.channel.render(self.stamp(message))
                except Exception as exc:  # whatever a template or locale raises, as when a payment's message fails
                    problems.append(f"{route.channel.name} ({message.locale}): {type(exc).__name__}: {exc}")
        return problems

    def finance_route(self) -> Route | None:
        slack = self.channels.get("slack")
        if slack and self.settings.finance_slack_channel:
            return Route(slack, self.settings.finance_slack_channel)
        return None

    def finance_routes(self) -> list[Route]:
        """Every finance channel configured: Slack's and Teams' (each gets the same cards)."""
        routes = [route] if (route := self.finance_route()) else []
        teams = self.channels.get("teams")
        if teams and self.settings.finance_teams_conversation:
            routes.append(Route(teams, self.settings.finance_teams_conversation))
        return routes

    async def queue(self, uow: UnitOfWork, route: Route, message: Message, *, key: str,
                    fallbacks: Sequence[str] = (), actor: str = "system", payload: Payload | None = None) -> int | None:
        """Render the message for the route (or take `payload` as already rendered, e.g. a resend of exactly what
        was sent) and put it in the outbox; None if this key was queued before. A message that cannot be rendered
        is queued dead, with the reason, and handled as any failed message (fallback, finance told)."""
        message = self.stamp(message)
        failure = None
        if payload is None:
            try:
                payload = route.channel.render(message)
            except Exception as exc:  # whatever the template or locale raised: this message failed, nothing else
                log.exception("could not render the %s for payment %s via %s", message.purpose.value,
                              message.receipt.payment_id, route.channel.name)
                failure = f"could not write the message: {type(exc).__name__}: {exc}"[:300]
        dead = {"status": outbox.DEAD, "last_error": failure} if failure else {}
        notification_id = await outbox.enqueue(
            uow.session, now=uow.clock(), idempotency_key=key, payment_id=message.receipt.payment_id,
            channel=route.channel.name, audience=message.audience.value, purpose=message.purpose.value,
            recipient=route.recipient, payload=payload or {}, fallbacks=list(fallbacks), **dead,
        )
        if notification_id is not None:
            receipt = message.receipt
            detail = {"notification_id": notification_id, "purpose": message.purpose.value,
                      "audience": message.audience.value, "recipient": redact(route.recipient)}
            subject: dict[str, Any] = dict(channel=route.channel.name, invoice=receipt.invoice_number,
                                           customer_id=receipt.customer_id, amount=receipt.amount)
            if failure:
                uow.audit("notification.failed", actor=actor, **subject,
                          detail=detail | {"reason": failure, "stage": "render"})
                row = await uow.session.get(Notification, notification_id)
                assert row is not None
                await self.after_failure(uow, row)
            else:
                uow.audit("notification.queued", actor=actor, **subject, detail=detail)
        return notification_id

    async def acknowledge(self, uow: UnitOfWork, receipt: Receipt, customer: Customer | None) -> list[int]:
        """Queue everything a newly recorded payment calls for."""
        queued: list[int | None] = []
        unreachable = None
        if receipt.kind == "payment" and receipt.matched and customer is not None:
            notification_id, unreachable = await self._thank(uow, receipt, customer)
            queued.append(notification_id)
        for finance in self.finance_routes():
            purpose = (Purpose.REVERSAL if receipt.kind in ("refund", "dispute")
                       else Purpose.FINANCE_CARD if receipt.matched else Purpose.NEEDS_REVIEW)
            if receipt.kind != "pending":
                message = Message(purpose, finance.recipient, receipt, customer, unreachable=unreachable)
                queued.append(await self.queue(uow, finance, message,
                                               key=key_for(receipt.payment_id, purpose, finance.channel.name)))
        return [n for n in queued if n is not None]

    async def thank(self, uow: UnitOfWork, receipt: Receipt, customer: Customer, *, actor: str = "system") -> int | None:
        """Queue the customer's receipt on their first usable channel, the others as fallbacks; with none usable,
        say so in the audit trail (the finance card says it too)."""
        return (await self._thank(uow, receipt, customer, actor=actor))[0]

    async def _thank(self, uow: UnitOfWork, receipt: Receipt, customer: Customer, *,
                     actor: str = "system") -> tuple[int | None, str | None]:
        """The receipt's notification, or None and why nobody can tell the customer."""
        routes, skipped = await self.reachable_routes(uow, customer)
        for name, why in skipped.items():
            _audit_skipped(uow, receipt, name, why, actor)
        if not routes:
            reason = self.why_unreachable(customer) or "; ".join(skipped.values()) or "no usable channel"
            log.warning("payment %s: customer %s cannot be told: %s", receipt.payment_id, customer.id, reason)
            uow.audit("notification.undeliverable", actor=actor, invoice=receipt.invoice_number,
                      customer_id=customer.id, amount=receipt.amount,
                      detail={"payment_id": receipt.payment_id, "purpose": Purpose.RECEIPT.value,
                              "channels": list(customer.channels), "reason": reason})
            return None, reason
        first, rest = routes[0], [r.channel.name for r in routes[1:]]
        return await self.queue(uow, first, Message(Purpose.RECEIPT, first.recipient, receipt, customer),
                                key=key_for(receipt.payment_id, Purpose.RECEIPT, first.channel.name),
                                fallbacks=rest, actor=actor), None

    def acknowledgements(self, receipt: Receipt, customer: Customer | None, now: datetime,
                         opted_out: Collection[tuple[str, str]]) -> list[tuple[dict[str, Any] | None, AuditRecord]]:
        """What `acknowledge` queues, as outbox rows and their audit entries for a batch writer (the entries get
        their `notification_id` once the rows are inserted); an entry without a row is a skipped channel or an
        undeliverable customer. `opted_out`: the (channel kind, address) pairs of this customer that said STOP.
        A message that cannot be rendered raises: the caller records that payment the general way instead."""
        out: list[tuple[dict[str, Any] | None, AuditRecord]] = []
        unreachable = None
        if receipt.kind == "payment" and receipt.matched and customer is not None:
            routes, skipped = self.routes_given(customer, opted_out)
            for name, why in skipped.items():  # as `_audit_skipped`
                out.append((None, audit_record(now, "notification.skipped", channel=name,
                                               invoice=receipt.invoice_number, customer_id=receipt.customer_id,
                                               amount=receipt.amount, detail={
                                                   "payment_id": receipt.payment_id,
                                                   "purpose": Purpose.RECEIPT.value, "reason": why})))
            if not routes:
                reason = self.why_unreachable(customer) or "; ".join(skipped.values()) or "no usable channel"
                unreachable = reason
                log.warning("payment %s: customer %s cannot be told: %s", receipt.payment_id, customer.id, reason)
                out.append((None, audit_record(now, "notification.undeliverable", invoice=receipt.invoice_number,
                                               customer_id=customer.id, amount=receipt.amount, detail={
                                                   "payment_id": receipt.payment_id, "purpose": Purpose.RECEIPT.value,
                                                   "channels": list(customer.channels), "reason": reason})))
            else:
                first = routes[0]
                out.append(self._prepared(first, Message(Purpose.RECEIPT, first.recipient, receipt, customer),
                                          key_for(receipt.payment_id, Purpose.RECEIPT, first.channel.name),
                                          [r.channel.name for r in routes[1:]], now))
        finance = self.finance_route()
        if finance and receipt.kind != "pending":
            purpose = (Purpose.REVERSAL if receipt.kind in ("refund", "dispute")
                       else Purpose.FINANCE_CARD if receipt.matched else Purpose.NEEDS_REVIEW)
            message = Message(purpose, finance.recipient, receipt, customer, unreachable=unreachable)
            out.append(self._prepared(finance, message, key_for(receipt.payment_id, purpose, finance.channel.name),
                                      [], now))
        return out

    def _prepared(self, route: Route, message: Message, key: str, fallbacks: list[str],
                  now: datetime) -> tuple[dict[str, Any], AuditRecord]:
        message = self.stamp(message)
        payload = route.channel.render(message)
        receipt = message.receipt
        row = {"status": outbox.PENDING, "attempts": 0, "available_at": now, "created_at": now,
               "fallbacks": fallbacks, "idempotency_key": key, "payment_id": receipt.payment_id,
               "channel": route.channel.name, "audience": message.audience.value, "purpose": message.purpose.value,
               "recipient": route.recipient, "payload": payload or {}}
        return row, audit_record(now, "notification.queued", channel=route.channel.name,
                                 invoice=receipt.invoice_number, customer_id=receipt.customer_id,
                                 amount=receipt.amount, detail={
                                     "purpose": message.purpose.value, "audience": message.audience.value,
                                     "recipient": redact(route.recipient)})

    async def after_failure(self, uow: UnitOfWork, row: Notification, *, once: str | None = None) -> None:
        """A customer message failed for good (dead-lettered, or bounced after sending): try the customer's next
        channel and tell finance. A staff alert that fails has nowhere better to go: it stays dead and audited.

        `once`: the failure is the integration's (a refused token), not this message's: finance hears of it once
        per `once` key, not once per payment."""
        if row.payment_id is None or row.audience != Audience.CUSTOMER.value:
            return
        loaded = await receipts.load(uow.session, row.payment_id)
        if loaded is None:
            return
        receipt, customer = loaded
        next_channel = None
        if customer is not None:
            usable, skipped = await self.reachable_routes(uow, customer)
            routes = {r.channel.name: r for r in usable}
            remaining = list(row.fallbacks)
            while remaining:
                name = remaining.pop(0)
                route = routes.get(name)
                if route is None:
                    _audit_skipped(uow, receipt, name, skipped.get(name, f"{name}: no longer configured"), "system")
                    continue
                # Every step of the chain is on record: which message failed, why, and where the receipt goes next.
                uow.audit("notification.fallback", channel=name, invoice=receipt.invoice_number,
                          customer_id=receipt.customer_id, amount=receipt.amount,
                          detail={"failed_notification": row.id, "from": row.channel, "to": name,
                                  "reason": (row.last_error or "")[:300]})
                await self.queue(uow, route, Message(Purpose(row.purpose), route.recipient, receipt, customer),
                                 key=f"{row.idempotency_key}>{route.channel.name}", fallbacks=remaining)
                next_channel = name
                break
        if once is not None:
            await self.tell_finance_once(uow, row, once, row.last_error or "")
            return
        for finance in self.finance_routes():
            # The customer is being tried on their next channel, or every channel of theirs has failed.
            then = f"; trying {next_channel} next" if next_channel else "; no other channel of the customer's left"
            note = f"{row.purpose} via {row.channel} ({row.last_error}){then}"
            await self.queue(uow, finance, Message(Purpose.DEAD_LETTER, finance.recipient, receipt, customer, note=note),
                             key=key_for(receipt.payment_id, Purpose.DEAD_LETTER, finance.channel.name, str(row.id)))

    async def tell_finance_once(self, uow: UnitOfWork, row: Notification, once: str, reason: str) -> None:
        """A fault of a whole integration (a refused token, a spent daily quota) seen on `row`: one card to each
        finance channel per `once` key (the outbox never queues a key twice), however many payments run into it."""
        loaded = await receipts.load(uow.session, row.payment_id) if row.payment_id is not None else None
        if loaded is None:
            return
        receipt, customer = loaded
        note = (f"{row.purpose} via {row.channel} ({reason}); this affects every {row.channel} message "
                "and is reported once")
        for finance in self.finance_routes():
            where = "" if finance.channel.name == "slack" else f"@{finance.channel.name}"  # Slack's key as it was
            await self.queue(uow, finance, Message(Purpose.DEAD_LETTER, finance.recipient, receipt, customer,
                                                   note=note), key=f"once:{once}{where}")


def _audit_skipped(uow: UnitOfWork, receipt: Receipt, channel: str, reason: str, actor: str) -> None:
    uow.audit("notification.skipped", actor=actor, channel=channel, invoice=receipt.invoice_number,
              customer_id=receipt.customer_id, amount=receipt.amount,
              detail={"payment_id": receipt.payment_id, "purpose": Purpose.RECEIPT.value, "reason": reason})


def why_unreachable(customer: Customer, channels: Collection[str]) -> str | None:
    """Why no message can reach `customer` when the channels named are the configured ones (e.g. the keys of
    `Runtime.channels`: `{"sendgrid", "slack"}`), one reason per preferred channel; None when one can.

    For the import warning and `paybot check` as much as for payment time."""
    configured = {CHANNELS[name].serves for name in channels if name in CHANNELS}
    return reach.why_unreachable(customer, configured, {factory.serves for factory in CHANNELS.values()})


def key_for(payment_id: int, purpose: Purpose, channel: str, attempt: str = "") -> str:
    """One notification per payment, purpose and channel, unless staff ask again (`attempt` names the resend)."""
    return f"p{payment_id}:{purpose.value}:{channel}" + (f":{attempt}" if attempt else "")


def redact(recipient: str) -> str:
    """Customer addresses in logs and the audit detail: enough to recognise, not to harvest."""
    if "@" in recipient:
        local, _, domain = recipient.partition("@")
        return f"{local[:1]}***@{domain}"
    if recipient.startswith("+") and len(recipient) > 6:
        return recipient[:3] + "*" * (len(recipient) - 5) + recipient[-2:]
    return recipient
