"""Intercom: the contact found (or created), its payment attributes set, and a `payment-received` data event.

1. `POST /contacts/search` by our customer id (`external_id`) or email; `POST /contacts` when there is none.
2. `PUT /contacts/{id}`: custom attributes `last_payment_invoice`, `last_payment_amount`, `last_payment_at`.
3. `POST /events`: `payment-received`, `created_at` = the payment's time (Intercom de-duplicates a contact's
   events on name and `created_at`, so a retry never adds a second event), at most ten metadata keys, money as
   `{amount, currency}` in minor units. Intercom answers 202: "delivered" here means the event was accepted.

`Intercom-Version` is pinned (`INTERCOM_VERSION`); `INTERCOM_BASE_URL` names the workspace's region. Talks HTTP
with aiohttp rather than `python-intercom`'s AsyncIntercom (README, "Intercom (channel)", says why).
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
from bot.integrations.http import Delivery, Failed, Sent
from bot.settings import Settings as CoreSettings

EVENT_NAME = "payment-received"
MAX_METADATA = 10  # Intercom silently drops keys past ten
#: 10,000 calls a minute per app; a payment takes at most four (search, create, update, event).
PER_SECOND, CALLS = 10_000 / 60, 4


class IntercomSettings(IntegrationSettings):
    model_config = settings_config("INTERCOM")
    required = ("access_token",)

    access_token: SecretStr | None = None
    base_url: str = "https://api.intercom.io"  # EU: https://api.eu.intercom.io, AU: https://api.au.intercom.io
    version: str = "2.14"                      # Intercom-Version: the API version paybot was written against


class IntercomChannel(CrmChannel):
    name: ClassVar[str] = "intercom"
    serves: ClassVar[str] = "intercom"
    Settings: ClassVar[type[IntegrationSettings]] = IntercomSettings

    def __init__(self, settings: IntercomSettings, http: aiohttp.ClientSession) -> None:
        self.settings = settings
        token = secret(settings.access_token)
        self.api = CrmApi(self.name, http, settings.base_url, {
            "Authorization": f"Bearer {token}", "Accept": "application/json", "Intercom-Version": settings.version},
            token_setting="INTERCOM_ACCESS_TOKEN", token=token, reason=errors_reason)

    find_sent = resend_is_safe  # the CRM de-duplicates on our key

    def rate_limit(self, payload: Payload) -> tuple[str, float] | None:
        return shared_limit(self.name, fingerprint(secret(self.settings.access_token)), CALLS, PER_SECOND)

    async def send(self, payload: Payload, *, key: str) -> Delivery:
        try:
            contact = await self._find(payload) or await self._create(payload)
            await self.api.call("PUT", f"/contacts/{contact}", body={"custom_attributes": {
                "last_payment_invoice": payload["invoice"] or "", "last_payment_amount": number(payload["amount"]),
                "last_payment_at": payload["paid_at_epoch"]}})
            await self.api.call("POST", "/events", body={
                "event_name": EVENT_NAME, "created_at": payload["paid_at_epoch"], "id": contact,
                "metadata": metadata(payload)})
        except Stop as stop:
            return stop.outcome
        return Sent(contact, status="event accepted")

    async def _find(self, payload: Payload) -> str | None:
        """Our customer id as Intercom's external_id first, then the email."""
        criteria = [{"field": "email", "operator": "=", "value": payload["email"]}]
        if payload.get("customer_id"):
            criteria.insert(0, {"field": "external_id", "operator": "=", "value": payload["customer_id"]})
        answer = await self.api.call("POST", "/contacts/search", body={
            "query": {"operator": "OR", "value": criteria} if len(criteria) > 1 else criteria[0]})
        found = [c for c in answer.json().get("data") or [] if isinstance(c, dict) and c.get("id")]
        by_id = [c for c in found if payload.get("customer_id") and c.get("external_id") == payload["customer_id"]]
        return str((by_id or found)[0]["id"]) if found else None

    async def _create(self, payload: Payload) -> str:
        body = {"role": "user", "email": payload["email"]} | (
            {"external_id": payload["customer_id"]} if payload.get("customer_id") else {}) | (
            {"name": payload["name"]} if payload.get("name") else {})
        created = (await self.api.call("POST", "/contacts", body=body)).json()
        if not created.get("id"):
            raise Stop(Failed("intercom created a contact without an id"))
        return str(created["id"])

    async def check(self, settings: CoreSettings) -> list[Finding]:
        """`GET /me`: the token is accepted, and names its workspace."""
        def describe(body: Any) -> str:
            app = body.get("app") or {}
            return f"workspace {app.get('name') or app.get('id_code') or '?'}, Intercom-Version {self.settings.version}"
        return await self.api.check("/me", describe, scopes="read and write users and companies, and write events")


def metadata(payload: Payload) -> dict[str, Any]:
    """At most ten keys (Intercom drops the rest); money as `{amount, currency}` in minor units."""
    currency = str(payload["currency"]).lower()

    def money(minor: Any) -> dict[str, Any] | None:
        return {"amount": minor, "currency": currency} if minor is not None else None

    values = {"invoice_number": payload["invoice"], "amount": money(payload["amount_minor"]),
              "invoice_total": money(payload["invoice_total_minor"]), "balance": money(payload["balance_minor"]),
              "paid_in_full": payload["paid_in_full"], "payment_ref": payload["payment_ref"],
              "source": payload["source"], "payment_id": payload["payment_id"], "test": payload["test"] or None}
    kept = {k: v for k, v in values.items() if v is not None}
    assert len(kept) <= MAX_METADATA
    return kept
