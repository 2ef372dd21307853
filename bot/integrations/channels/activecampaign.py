"""ActiveCampaign (API v3): `contact/sync`, then the trigger an automation starts on.

The triggers, each when configured (at least one must be):
- `ACTIVECAMPAIGN_TAG`: the tag added to the contact (`POST /contactTags`); the tag is looked up, or created once,
  and its id cached;
- `ACTIVECAMPAIGN_FIELD_ID`: the custom field set to the invoice number, in the same `contact/sync`;
- `ACTIVECAMPAIGN_DEAL_STAGE`: the contact's open deal in that stage moved to won (`PUT /deals/{id}`, `status` 1,
  `value` in cents, lowercase `currency`).

ActiveCampaign has no idempotency key. These calls are upserts, so a retry after a clear "not processed" (429,
503, a connection refused) is safe; a request that may have been applied (sent, then no answer, or a 500) is not
sent again blindly: it is recorded as failed for finance to check, and the customer's next channel is tried.
5 requests a second per account, shared by every worker through the outbox's rate-limit key.
"""

from __future__ import annotations

from typing import Any, ClassVar

import aiohttp
from pydantic import Field, SecretStr

from bot.integrations.base import IntegrationSettings, given, secret, settings_config
from bot.integrations.channels.base import Payload
from bot.integrations.channels.crm import CrmApi, CrmChannel, Stop, errors_reason, host_of, shared_limit
from bot.integrations.checks import Finding, problem
from bot.integrations.http import Delivery, Failed, Sent
from bot.settings import Settings as CoreSettings

WON = 1  # deal status: 0 open, 1 won, 2 lost


class ActiveCampaignSettings(IntegrationSettings):
    model_config = settings_config("ACTIVECAMPAIGN")
    required = ("api_token", "base_url")

    api_token: SecretStr | None = None
    base_url: str | None = None        # the account's API URL, …/api/3 (Settings → Developer)
    tag: str | None = None
    field_id: str | None = None        # a custom contact field's numeric id
    deal_stage: str | None = None      # a pipeline stage's id: the contact's open deal there is moved to won
    requests_per_second: float = Field(default=5.0, gt=0)

    def missing(self) -> list[str]:
        triggers = (self.tag, self.field_id, self.deal_stage)
        none = [] if any(given(t) for t in triggers) else [
            "ACTIVECAMPAIGN_TAG, ACTIVECAMPAIGN_FIELD_ID or ACTIVECAMPAIGN_DEAL_STAGE"]
        return super().missing() + none


class ActiveCampaignChannel(CrmChannel):
    name: ClassVar[str] = "activecampaign"
    serves: ClassVar[str] = "activecampaign"
    Settings: ClassVar[type[IntegrationSettings]] = ActiveCampaignSettings

    def __init__(self, settings: ActiveCampaignSettings, http: aiohttp.ClientSession) -> None:
        self.settings = settings
        token = secret(settings.api_token)
        self.api = CrmApi(self.name, http, str(settings.base_url), {"Api-Token": token, "Accept": "application/json"},
                          token_setting="ACTIVECAMPAIGN_API_TOKEN", token=token, reason=errors_reason,
                          idempotent=False)
        self._tag_id: str | None = None  # looked up (or created) once per process

    def rate_limit(self, payload: Payload) -> tuple[str, float] | None:
        calls = 1 + (2 if self.settings.deal_stage else 0)
        if self.settings.tag:
            calls += 1 if self._tag_id else 2
        return shared_limit(self.name, host_of(str(self.settings.base_url)), calls, self.settings.requests_per_second)

    async def send(self, payload: Payload, *, key: str) -> Delivery:
        done = []
        try:
            contact = await self._sync(payload)
            if self.settings.field_id:
                done.append("field set")
            if self.settings.tag:
                await self.api.call("POST", "/contactTags", body={"contactTag": {
                    "contact": contact, "tag": await self._tag()}})
                done.append("tag added")
            if self.settings.deal_stage:
                await self._win_deal(contact, payload)
                done.append("deal won")
        except Stop as stop:
            return stop.outcome
        return Sent(contact, status=", ".join(done))

    async def _sync(self, payload: Payload) -> str:
        contact: dict[str, Any] = {"email": payload["email"]}
        if payload.get("phone"):
            contact["phone"] = payload["phone"]
        if self.settings.field_id:
            contact["fieldValues"] = [{"field": self.settings.field_id, "value": payload["invoice"] or ""}]
        synced = (await self.api.call("POST", "/contact/sync", body={"contact": contact})).json()
        contact_id = (synced.get("contact") or {}).get("id")
        if not contact_id:
            raise Stop(Failed("activecampaign synced the contact but named no id"))
        return str(contact_id)

    async def _tag(self) -> str:
        """The tag's id: found by name, or created (once; then cached)."""
        if self._tag_id is None:
            name = str(self.settings.tag)
            found = (await self.api.call("GET", "/tags", params={"search": name})).json()
            match = [t for t in found.get("tags") or [] if str(t.get("tag", "")).lower() == name.lower()]
            if match:
                self._tag_id = str(match[0]["id"])
            else:
                created = (await self.api.call("POST", "/tags", body={"tag": {
                    "tag": name, "tagType": "contact", "description": "added by paybot when a payment arrives"}})).json()
                tag_id = (created.get("tag") or {}).get("id")
                if not tag_id:
                    raise Stop(Failed(f"activecampaign created tag {name!r} but named no id"))
                self._tag_id = str(tag_id)
        return self._tag_id

    async def _win_deal(self, contact: str, payload: Payload) -> None:
        found = (await self.api.call("GET", "/deals", params={
            "filters[contact]": contact, "filters[stage]": str(self.settings.deal_stage), "filters[status]": "0",
            "orders[cdate]": "ASC"})).json()
        deals = found.get("deals") or []
        if not deals:
            raise Stop(Failed(f"activecampaign: the contact has no open deal in stage {self.settings.deal_stage}"))
        await self.api.call("PUT", f"/deals/{deals[0]['id']}", body={"deal": {
            "status": WON, "value": payload["amount_minor"], "currency": str(payload["currency"]).lower()}})

    async def check(self, settings: CoreSettings) -> list[Finding]:
        """`GET /users/me`: the token is accepted, and names its user."""
        if not str(self.settings.base_url).rstrip("/").endswith("/api/3"):
            return [problem(f"ACTIVECAMPAIGN_BASE_URL {self.settings.base_url!r} must be the account's API URL "
                            "ending in /api/3 (Settings → Developer), e.g. https://<account>.api-us1.com/api/3")]
        def describe(body: Any) -> str:
            user = body.get("user") or {}
            return f"user {user.get('username') or user.get('email') or '?'}"
        return await self.api.check("/users/me", describe, scopes="a user with Contacts (and Deals) permissions")
