"""HubSpot: the contact upserted by email, then a transactional email or the properties a workflow listens to.

- `HUBSPOT_EMAIL_ID` set: `POST /marketing/v3/transactional/single-email/send` with `message.sendId` = our
  notification key (HubSpot sends at most one email per sendId; a repeat is `IDEMPOTENT_IGNORE`, counted as
  sent). The send is asynchronous: the status id is kept and polled until HubSpot reports the result.
- Otherwise `HUBSPOT_PAYMENT_PROPERTY` (set to our notification key, new for every payment) and its siblings
  `last_payment_invoice`, `last_payment_amount`, `last_payment_at` are set on the contact: a workflow enrolled on
  "payment property is known / has changed" does the rest.

Both go through `POST /crm/v3/objects/contacts/batch/upsert` with `idProperty=email`. The official SDK is
synchronous (urllib3), so this talks HTTP with aiohttp. Limits are per account: the ten-second rolling limit is
shared by every worker through the outbox's rate-limit key; a `DAILY` 429 waits for midnight in the account's
time zone (`HUBSPOT_TIMEZONE`), and finance is told once that day.
"""

from __future__ import annotations

import email.utils
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar
from zoneinfo import ZoneInfo

import aiohttp
from pydantic import Field, SecretStr, field_validator

from bot.integrations.base import IntegrationSettings, given, secret, settings_config
from bot.integrations.channels.base import Payload, StatusUpdate
from bot.integrations.channels.crm import (Answer, CrmApi, CrmChannel, Stop, errors_reason, fingerprint, header,
                                           resend_is_safe, shared_limit)
from bot.integrations.checks import Finding
from bot.integrations.http import Delivery, Failed, Retry, Sent, retry_hint
from bot.settings import Settings as CoreSettings

UPSERT = "/crm/v3/objects/contacts/batch/upsert"
SINGLE_SEND = "/marketing/v3/transactional/single-email/send"
SEND_STATUS = "/marketing/v3/email/send-statuses/{}"
#: A send still under way: polled again. Every other status ends it, with a `sendResult`.
UNDER_WAY = frozenset({"PENDING", "PROCESSING"})
#: Results that mean the email went (or had gone, under the same sendId, before).
DELIVERED = frozenset({"SENT", "QUEUED", "IDEMPOTENT_IGNORE"})
#: Results that are HubSpot asking for patience rather than refusing the email.
LATER = frozenset({"THROTTLED", "PORTAL_OVER_LIMIT"})


class HubSpotSettings(IntegrationSettings):
    model_config = settings_config("HUBSPOT")
    required = ("access_token",)

    access_token: SecretStr | None = None      # a private app's token
    email_id: int | None = None                 # a transactional email "saved for the single-send API"
    payment_property: str | None = None         # without an email id: the contact property a workflow watches
    invoice_property: str = "last_payment_invoice"
    amount_property: str = "last_payment_amount"
    at_property: str = "last_payment_at"
    base_url: str = "https://api.hubapi.com"
    requests_per_10s: int = Field(default=100, ge=1)  # the account's ten-second limit: 100 (Free/Starter), 190 …
    timezone: str = "UTC"                       # the account's: its daily limit resets at midnight there

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ValueError, KeyError) as exc:  # ZoneInfoNotFoundError is a KeyError: made one line, exit 2
            raise ValueError(f"unknown time zone {value!r} (an IANA name, e.g. America/New_York)") from exc
        return value

    def missing(self) -> list[str]:
        either = [] if self.email_id or given(self.payment_property) else ["HUBSPOT_EMAIL_ID or HUBSPOT_PAYMENT_PROPERTY"]
        return super().missing() + either


class HubSpotChannel(CrmChannel):
    name: ClassVar[str] = "hubspot"
    serves: ClassVar[str] = "hubspot"
    Settings: ClassVar[type[IntegrationSettings]] = HubSpotSettings
    pending_statuses: ClassVar[frozenset[str]] = UNDER_WAY

    def __init__(self, settings: HubSpotSettings, http: aiohttp.ClientSession) -> None:
        self.settings = settings
        token = secret(settings.access_token)
        self.api = CrmApi(self.name, http, settings.base_url, {"Authorization": f"Bearer {token}",
                                                                "Accept": "application/json"},
                          token_setting="HUBSPOT_ACCESS_TOKEN", token=token, reason=_reason, wait=self._wait)

    find_sent = resend_is_safe  # the CRM de-duplicates on our key

    def rate_limit(self, payload: Payload) -> tuple[str, float] | None:
        calls = 2 if self.settings.email_id else 1
        return shared_limit(self.name, fingerprint(secret(self.settings.access_token)), calls,
                            self.settings.requests_per_10s / 10)

    async def send(self, payload: Payload, *, key: str) -> Delivery:
        try:
            contact = await self._upsert(payload, key)
            if not self.settings.email_id:
                return Sent(contact, status="properties set")
            answer = await self.api.call("POST", SINGLE_SEND, body={
                "emailId": self.settings.email_id,
                "message": {"to": payload["email"], "sendId": key},
                "customProperties": _custom_properties(payload)})
        except Stop as stop:
            return stop.outcome
        return _send_outcome(answer.json())

    async def _upsert(self, payload: Payload, key: str) -> str | None:
        properties: dict[str, Any] = {"email": payload["email"]}
        if not self.settings.email_id:
            properties |= {str(self.settings.payment_property): key,
                           self.settings.invoice_property: payload["invoice"] or "",
                           self.settings.amount_property: payload["amount"],
                           self.settings.at_property: payload["paid_at"]}
        answer = await self.api.call("POST", UPSERT, body={"inputs": [
            {"id": payload["email"], "idProperty": "email", "properties": properties}]})
        body = answer.json()
        results = body.get("results") or []
        if not results:  # 207 with only errors: HubSpot refused this contact (e.g. an unknown property)
            raise Stop(Failed(f"hubspot did not upsert the contact: {_reason(answer)}"))
        return str(results[0].get("id")) if results[0].get("id") else None

    async def poll_status(self, provider_id: str, *, key: str, now: datetime) -> StatusUpdate | None:
        """The send's status, once HubSpot has finished with it (None while it is still under way or unknown)."""
        try:
            answer = await self.api.call("GET", SEND_STATUS.format(provider_id))
        except Stop:
            return None  # asked again at the next round
        body = answer.json()
        status, result = str(body.get("status") or ""), str(body.get("sendResult") or "")
        if status in UNDER_WAY or not status:
            return None
        return StatusUpdate(key=key, status=result or status, failed=result not in DELIVERED,
                            at=_parse_time(body.get("completedAt")) or now, detail=f"{status} {result}".strip())

    def _wait(self, answer: Answer) -> dict[str, Any]:
        """A `DAILY` 429 waits for midnight in the account's zone (finance told once that day); the ten-second
        limit waits as long as HubSpot says: Retry-After, else the interval it names."""
        body = answer.json()
        if isinstance(body, dict) and str(body.get("policyName") or "").upper() == "DAILY":
            zone = ZoneInfo(self.settings.timezone)
            today = _answered_at(answer).astimezone(zone).date()
            reset = datetime.combine(today + timedelta(days=1), datetime.min.time(), zone).astimezone(UTC)
            return {"until": reset, "once": f"hubspot:daily:{today.isoformat()}"}
        if hint := retry_hint(answer.headers):
            return hint
        interval = header(answer, "X-HubSpot-RateLimit-Interval-Milliseconds")
        return {"after": int(interval) / 1000} if interval.isdigit() else {}

    async def check(self, settings: CoreSettings) -> list[Finding]:
        """`GET /crm/v3/objects/contacts?limit=1`: the token is accepted, with the contacts scope."""
        mode = (f"transactional email {self.settings.email_id}" if self.settings.email_id
                else f"workflow on property {self.settings.payment_property}")
        return await self.api.check("/crm/v3/objects/contacts?limit=1", lambda _: f"contacts readable; {mode}",
                                    scopes="crm.objects.contacts.read and .write (and transactional-email)")


def _custom_properties(payload: Payload) -> dict[str, Any]:
    """What the email template can show (`{{ custom.invoice_number }}`, …)."""
    return {"invoice_number": payload["invoice"] or "", "amount": payload["amount"], "currency": payload["currency"],
            "paid_at": payload["paid_at"], "paid_in_full": payload["paid_in_full"], "message": payload["text"]}


def _send_outcome(body: Any) -> Delivery:
    """The EmailSendStatusView: usually PENDING (polled later); a result at once is final."""
    status_id, status = str(body.get("statusId") or ""), str(body.get("status") or "PENDING")
    result = str(body.get("sendResult") or "")
    if not result or result in DELIVERED:
        return Sent(status_id or None, status=result or status)
    if result in LATER:
        return Retry(f"hubspot send result {result}")
    return Failed(f"hubspot send result {result}")


def _reason(answer: Answer) -> str:
    """HubSpot's `{"status": "error", "message", "category", "policyName"}`, shortened."""
    body = answer.json()
    if isinstance(body, dict) and body.get("message"):
        kind = body.get("policyName") or body.get("category") or ""
        return f"{kind} {body['message']}".strip()[:300]
    if isinstance(body, dict) and body.get("errors"):
        return "; ".join(str(e.get("message")) for e in body["errors"] if isinstance(e, dict))[:300]
    return errors_reason(answer)


def _answered_at(answer: Answer) -> datetime:
    """When HubSpot answered, by its `Date` header (its day decides the daily reset, not our clock's)."""
    try:
        return email.utils.parsedate_to_datetime(header(answer, "Date")).astimezone(UTC)
    except (TypeError, ValueError):
        return datetime.now(UTC)


def _parse_time(value: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")) if value else None
    except ValueError:
        return None
