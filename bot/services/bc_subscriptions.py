"""Keeping Business Central's webhook subscriptions alive.

BC subscriptions expire after three days, and BC deletes one whose notification was answered with a 4xx. The
worker looks every `CHECK_EVERY`; a subscription with less than `RENEW_BEFORE` left is renewed (`PATCH` with its
`@odata.etag`, which repeats the handshake); one BC no longer has — or one already past its expiry — is created
again with the same resource and URL. A renewal that fails is retried at the next look; finance hears once per
subscription and failure streak (a card, and `subscription.renewal_failed` in the audit trail), while there is
still time to act before notifications stop.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import select

from bot.errors import ProviderError
from bot.integrations.sources.business_central import BusinessCentralSource, Subscription
from bot.messages import Purpose
from bot.services import alerts
from bot.services.notify import Notifier
from bot.settings import Settings
from bot.storage import models
from bot.storage.database import Database

log = logging.getLogger(__name__)
CHECK_EVERY = timedelta(hours=1)
RENEW_BEFORE = timedelta(days=1)  # of BC's three: two failed days of looks hourly before anything is missed


class BcSubscriptions:
    def __init__(self, db: Database, notifier: Notifier, source: BusinessCentralSource) -> None:
        self.db = db
        self.notifier = notifier
        self.source = source

    @property
    def clock(self) -> Callable[[], datetime]:
        return self.db.clock

    async def subscribe(self, notification_url: str) -> Subscription:
        """Create the subscription on salesInvoices (`paybot subscribe business-central`) and keep it on record."""
        created = await self.source.create_subscription(notification_url)
        async with self.db.transaction() as uow:
            uow.session.add(models.BcSubscription(
                subscription_id=created.id, resource=created.resource, notification_url=created.notification_url,
                etag=created.etag, expires_at=created.expires_at, created_at=uow.clock()))
            uow.audit("subscription.created", source=self.source.name, detail={
                "subscription_id": created.id, "resource": created.resource,
                "expires_at": created.expires_at.isoformat()})
        return created

    async def renew_due(self) -> None:
        """Renew (or create again) every subscription that expires within RENEW_BEFORE."""
        async with self.db.read() as session:
            due = list(await session.scalars(select(models.BcSubscription).where(
                models.BcSubscription.expires_at < self.clock() + RENEW_BEFORE).order_by(models.BcSubscription.id)))
        for row in due:
            await self._renew(row)

    async def _renew(self, row: models.BcSubscription) -> None:
        now = self.clock()
        try:
            renewed = None
            if row.expires_at > now:
                renewed = await self.source.renew_subscription(row.subscription_id, row.etag, row.notification_url,
                                                               row.resource)
            recreated = renewed is None
            if renewed is None:  # BC dropped it (deleted, or expired before we could renew): make it again
                renewed = await self.source.create_subscription(row.notification_url, row.resource)
        except ProviderError as exc:
            if exc.status == 412:  # its etag moved: another worker renewed it just now (the row says so)
                log.info("business-central subscription %s was renewed elsewhere", row.subscription_id)
                return
            await self._failed(row, exc)
            return
        async with self.db.transaction() as uow:
            stored = await uow.session.get(models.BcSubscription, row.id)
            if stored is None:
                return
            previous = stored.subscription_id
            stored.subscription_id, stored.etag, stored.expires_at = renewed.id, renewed.etag, renewed.expires_at
            stored.renewed_at, stored.failures, stored.last_error = uow.clock(), 0, None
            uow.audit("subscription.recreated" if recreated else "subscription.renewed", source=self.source.name,
                      detail={"subscription_id": renewed.id, "expires_at": renewed.expires_at.isoformat(),
                              **({"replaces": previous} if recreated else {})})
        log.info("business-central subscription %s %s until %s", renewed.id,
                 "created again" if recreated else "renewed", renewed.expires_at.isoformat())

    async def _failed(self, row: models.BcSubscription, exc: ProviderError) -> None:
        log.error("business-central subscription %s could not be renewed: %s", row.subscription_id, exc)
        async with self.db.transaction() as uow:
            stored = await uow.session.get(models.BcSubscription, row.id)
            if stored is None:
                return
            stored.failures += 1
            stored.last_error = str(exc)[:300]
            if stored.failures > 1:
                return  # finance heard at the first failure of this streak
            uow.audit("subscription.renewal_failed", source=self.source.name, detail={
                "subscription_id": stored.subscription_id, "expires_at": stored.expires_at.isoformat(),
                "reason": str(exc)[:200]})
            await alerts.tell_finance(
                uow, self.notifier, Purpose.SUBSCRIPTION_FAILED,
                key=f"bc-renewal:{stored.id}:{stored.expires_at.isoformat()}"[:120], source=self.source.name,
                subscription_id=stored.subscription_id, reason=str(exc)[:200],
                expires_at=stored.expires_at.strftime("%Y-%m-%d %H:%M UTC"))


def notification_url(source: BusinessCentralSource, settings: Settings) -> str:
    """BUSINESS_CENTRAL_NOTIFICATION_URL, or PUBLIC_BASE_URL + /webhooks/business-central."""
    return source.settings.notification_url or f"{settings.public_base_url.rstrip('/')}/webhooks/{source.name}"
