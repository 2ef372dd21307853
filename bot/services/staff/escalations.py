"""Escalation: a payment posted to the escalation channel, mentioning whoever is on call, and posted again every
interval until someone presses Acknowledge (or the rounds run out). Posts go through the outbox."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select

from bot.integrations.channels.base import Channel
from bot.messages import Message, Purpose, Surface, render, template_data
from bot.services.notify import Notifier, Route
from bot.services.staff.targets import Request, StaffError, Target, remember, resolve, target_of
from bot.services.teams_conversations import display_name, display_names
from bot.settings import Settings
from bot.storage import models
from bot.storage.database import Database, UnitOfWork
from bot import text
from bot.text import Mrkdwn, mrkdwn
from bot.integrations.channels.teams import card_payload
from cards import slack as cards
from cards import teams as teams_cards

log = logging.getLogger(__name__)

CHECK_AT_LEAST_EVERY = timedelta(seconds=60)


class Escalations:
    def __init__(self, db: Database, notifier: Notifier, settings: Settings) -> None:
        self.db = db
        self.notifier = notifier
        self.settings = settings
        self.interval = timedelta(seconds=settings.escalation_reescalate_seconds)
        self.check_every = min(self.interval, CHECK_AT_LEAST_EVERY)

    def _routes(self) -> list[Route]:
        """Where escalations go: the Slack channel, the Teams conversation, or both."""
        routes = []
        slack: Channel | None = self.notifier.channels.get("slack")
        if slack is not None and self.settings.escalation_slack_channel:
            routes.append(Route(slack, self.settings.escalation_slack_channel))
        teams: Channel | None = self.notifier.channels.get("teams")
        if teams is not None and self.settings.escalation_teams_conversation:
            routes.append(Route(teams, self.settings.escalation_teams_conversation))
        if not routes:
            raise StaffError(mrkdwn("Escalation is not set up: ESCALATION_SLACK_CHANNEL (and Slack) or "
                                    "ESCALATION_TEAMS_CONVERSATION (and Teams) must be configured."))
        return routes

    async def escalate(self, request: Request, claim_id: int, name: str, note: str = "") -> Mrkdwn:
        routes = self._routes()
        async with self.db.transaction() as uow:
            target = await resolve(uow.session, name)
            open_ = await uow.session.scalar(select(models.Escalation).where(
                models.Escalation.payment_id == target.payment.id, models.Escalation.acknowledged_at.is_(None)))
            if open_ is not None:
                raise StaffError(mrkdwn("Payment #{} was already escalated by {}; nobody has acknowledged it yet.",
                                        target.payment.id, text.mention(open_.escalated_by.partition(":")[2])))
            escalation = models.Escalation(payment_id=target.payment.id, note=note, escalated_by=request.actor,
                                           created_at=uow.clock(), rounds=1, next_at=self._next(uow, 1))
            uow.session.add(escalation)
            await uow.session.flush()
            await self._post_all(uow, routes, escalation, target)
            summary = "escalated it" + (f": {note}" if note else "")
            await remember(uow, claim_id, target.payment.id, summary)
        return mrkdwn("Escalated payment #{} to {} (escalation #{}).", target.payment.id,
                      " and ".join(r.recipient for r in routes), escalation.id)

    def _next(self, uow: UnitOfWork, rounds: int) -> datetime | None:
        return uow.clock() + self.interval if rounds < self.settings.escalation_max_rounds else None

    async def _post_all(self, uow: UnitOfWork, routes: list[Route], escalation: models.Escalation,
                        target: Target) -> None:
        for route in reversed(routes):  # the first route's notification is the one the escalation row names
            await self._post(uow, route, escalation, target)

    async def _payload(self, uow: UnitOfWork, route: Route, message: Message,
                       escalation: models.Escalation) -> dict[str, Any]:
        actor = escalation.escalated_by
        if route.channel.name == "teams":
            oncall = [u.strip() for u in self.settings.escalation_oncall_teams_users.split(",") if u.strip()]
            known = await display_names(uow.session, [f"teams:{u}" for u in oncall])
            card = teams_cards.escalation(
                template_data(message), escalation_id=escalation.id,
                escalated_by=await display_name(uow.session, actor), oncall=oncall, round_=escalation.rounds,
                names={actor.partition(":")[2]: name for actor, name in known.items()})
            return card_payload(route.recipient, card, text.teams(render(message).text))
        mention = cards.mention([u.strip() for u in self.settings.escalation_oncall_slack_users.split(",")],
                                self.settings.escalation_oncall_slack_usergroup)
        blocks = cards.escalation(template_data(message), escalation_id=escalation.id, mention=mention,
                                  escalated_by=actor.partition(":")[2], round_=escalation.rounds)
        words = render(message, Surface.SLACK).text
        return {"channel": route.recipient, "text": text.mrkdwn("{} {}", mention, words).strip(), "blocks": blocks}

    async def _post(self, uow: UnitOfWork, route: Route, escalation: models.Escalation, target: Target) -> None:
        actor = escalation.escalated_by
        message = self.notifier.stamp(
            Message(Purpose.ESCALATION, route.recipient, target.receipt, target.customer, note=escalation.note))
        # Slack's key as it always was; another channel's beside it.
        key = f"escalation{escalation.id}:round{escalation.rounds}" + (
            "" if route.channel.name == "slack" else f":{route.channel.name}")
        queued = await self.notifier.queue(uow, route, message, actor=actor, key=key,
                                           payload=await self._payload(uow, route, message, escalation))
        escalation.notification_id = queued
        receipt = target.receipt
        uow.audit("notification.escalated", actor=actor if escalation.rounds == 1 else "system",
                  channel=route.channel.name,
                  invoice=receipt.invoice_number, customer_id=receipt.customer_id, amount=receipt.amount,
                  detail={"escalation_id": escalation.id, "round": escalation.rounds, "note": escalation.note,
                          "notification_id": queued})

    async def acknowledge(self, request: Request, claim_id: int, escalation_id: int) -> tuple[Mrkdwn, bool]:
        """The reply, and whether this request was the one that acknowledged it."""
        async with self.db.transaction() as uow:
            escalation = await uow.session.scalar(
                select(models.Escalation).where(models.Escalation.id == escalation_id).with_for_update())
            if escalation is None:
                raise StaffError(mrkdwn("There is no escalation #{}.", escalation_id))
            if escalation.acknowledged_at is not None:
                who = text.mention(escalation.acknowledged_by.partition(":")[2]) if escalation.acknowledged_by \
                    else "someone"
                return mrkdwn("Escalation #{} was already acknowledged by {}.", escalation_id, who), False
            escalation.acknowledged_at, escalation.acknowledged_by = uow.clock(), request.actor
            escalation.next_at = None
            target = await target_of(uow.session, await uow.session.get(models.Payment, escalation.payment_id))
            receipt = target.receipt
            uow.audit("escalation.acknowledged", actor=request.actor, invoice=receipt.invoice_number,
                      customer_id=receipt.customer_id, amount=receipt.amount,
                      detail={"escalation_id": escalation_id, "rounds": escalation.rounds})
            await remember(uow, claim_id, escalation.payment_id, f"acknowledged escalation #{escalation_id}")
        return mrkdwn("You acknowledged escalation #{}.", escalation_id), True

    async def reescalate_due(self) -> None:
        """Post again every escalation nobody acknowledged in time (the delivery worker runs this periodically)."""
        try:
            routes = self._routes()
        except StaffError:
            return
        async with self.db.transaction() as uow:
            due = list(await uow.session.scalars(
                select(models.Escalation).where(models.Escalation.next_at <= uow.clock(),
                                                models.Escalation.acknowledged_at.is_(None))
                .order_by(models.Escalation.next_at).limit(50).with_for_update(skip_locked=True)))
            for escalation in due:
                escalation.rounds += 1
                escalation.next_at = self._next(uow, escalation.rounds)
                target = await target_of(uow.session, await uow.session.get(models.Payment, escalation.payment_id))
                await self._post_all(uow, routes, escalation, target)
        if due:
            log.info("re-escalated %d unacknowledged escalations", len(due))
