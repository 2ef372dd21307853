"""Klaviyo: one `POST /api/events` (JSON:API, pinned `revision`) per payment; a flow on the metric does the rest.

The event carries metric "Payment Received" (`KLAVIYO_METRIC`), the customer's profile (email, phone), the value
and currency, the invoice's facts, and `unique_id` = our notification key: Klaviyo keeps one event per profile,
metric and unique_id, so a retry never creates a second event, and two invoices paid in the same second (which
Klaviyo's default, the time to the second, would merge) stay two. Klaviyo answers 202: queued, not processed —
"delivered" here means the event was accepted.

The official SDK is synchronous and sleeps while it retries, so this talks HTTP with aiohttp.
"""

from __future__ import annotations

from typing import Any, ClassVar

import aiohttp
from pydantic import SecretStr

from bot.integrations.base import IntegrationSettings, secret, settings_config
from bot.integrations.channels.base import Payload
from bot.integrations.channels.crm import (CrmApi, CrmChannel, Stop, errors_reason, fingerprint, number,
                                           resend_is_safe, shared_limit)
from bot.integrations.checks import Finding
from bot.integrations.http import Delivery, Sent
from bot.settings import Settings as CoreSettings

EVENTS = "/api/events"
#: Create Event is "XL": 3,500 a minute steady per account (350/s bursts).
PER_SECOND = 3500 / 60


class KlaviyoSettings(IntegrationSettings):
    model_config = settings_config("KLAVIYO")
    required = ("api_key",)

    api_key: SecretStr | None = None  # a private key (pk_…) with events:write
    base_url: str = "https://a.klaviyo.com"
    metric: str = "Payment Received"
    revision: str = "2026-07-15"      # the API revision paybot was written against


class KlaviyoChannel(CrmChannel):
    name: ClassVar[str] = "klaviyo"
    serves: ClassVar[str] = "klaviyo"
    Settings: ClassVar[type[IntegrationSettings]] = KlaviyoSettings

    def __init__(self, settings: KlaviyoSettings, http: aiohttp.ClientSession) -> None:
        self.settings = settings
        key = secret(settings.api_key)
        self.api = CrmApi(self.name, http, settings.base_url, {
            "Authorization": f"Klaviyo-API-Key {key}", "revision": settings.revision,
            "Accept": "application/vnd.api+json"}, token_setting="KLAVIYO_API_KEY", token=key,
            reason=errors_reason, content_type="application/vnd.api+json")

    find_sent = resend_is_safe  # the CRM de-duplicates on our key

    def rate_limit(self, payload: Payload) -> tuple[str, float] | None:
        return shared_limit(self.name, fingerprint(secret(self.settings.api_key)), 1, PER_SECOND)

    async def send(self, payload: Payload, *, key: str) -> Delivery:
        try:
            await self.api.call("POST", EVENTS, body=self.event(payload, key))
        except Stop as stop:
            return stop.outcome
        return Sent(key, status="event accepted")

    def event(self, payload: Payload, key: str) -> dict[str, Any]:
        profile = {"email": payload["email"]} | ({"phone_number": payload["phone"]} if payload.get("phone") else {})
        return {"data": {"type": "event", "attributes": {
            "properties": {"invoice_number": payload["invoice"], "amount": number(payload["amount"]),
                           "currency": payload["currency"], "paid_in_full": payload["paid_in_full"],
                           "payment_ref": payload["payment_ref"], "source": payload["source"],
                           "subject": payload["subject"], "message": payload["text"], "test": payload["test"]},
            "metric": {"data": {"type": "metric", "attributes": {"name": self.settings.metric}}},
            "profile": {"data": {"type": "profile", "attributes": profile}},
            "value": number(payload["amount"]),
            "value_currency": payload["currency"],
            "unique_id": key,
            "time": payload["paid_at"],
        }}}

    async def check(self, settings: CoreSettings) -> list[Finding]:
        """`GET /api/accounts`: the key is accepted (it needs accounts:read besides events:write for this)."""
        def describe(body: Any) -> str:
            accounts = body.get("data") or [{}]
            info = (accounts[0].get("attributes") or {}).get("contact_information") or {}
            return f"account {info.get('organization_name') or accounts[0].get('id') or '?'}; metric {self.settings.metric!r}"
        return await self.api.check("/api/accounts", describe, scopes="events:write (and accounts:read for this check)")
