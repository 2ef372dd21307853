"""SendGrid v3 Mail Send: `POST /v3/mail/send`, Bearer key, 202 + `X-Message-Id`; and its signed Event Webhook.

The request body is built with the official SDK's `Mail` helper; it is sent with aiohttp (the SDK is sync-only).
Event Webhook posts (a JSON array, ECDSA-signed over timestamp + body) are verified with the SDK's `EventWebhook`.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from typing import Any, ClassVar

import aiohttp
from pydantic import Field, SecretStr
from sendgrid.helpers.eventwebhook import EventWebhook
from sendgrid.helpers.mail import CustomArg, From, Mail, ReplyTo
from sendgrid.helpers.mail.validators import ValidateApiKey

from bot.domain.parties import Customer
from bot.integrations.base import IntegrationSettings, secret, settings_config
from bot.errors import PayloadInvalid, ProviderRejected, SignatureInvalid
from bot.integrations.checks import Finding, ok, problem
from bot.integrations.channels.base import Payload, StatusUpdate
from bot.integrations.sources.base import InboundRequest
from bot.integrations.sources.common import fetch_json, from_unix
from bot.integrations.http import Delivery, Retry, Sent, outcome_of_status
from bot.messages import Message, Rendered, render
from bot.settings import Settings as CoreSettings


class SendGridSettings(IntegrationSettings):
    model_config = settings_config("SENDGRID")
    required = ("api_key", "from_email")

    api_key: SecretStr | None = None
    from_email: str | None = None
    from_name: str | None = None
    base_url: str = "https://api.sendgrid.com"
    event_public_key: SecretStr | None = None  # Mail Settings → Event Webhook → Signature Verification
    event_tolerance_seconds: int = 300
    timeout_seconds: float = Field(default=15.0, gt=0)  # one Mail Send call, answer included; then retried


SIGNATURE = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP = "X-Twilio-Email-Event-Webhook-Timestamp"
#: Event types that mean the message will not arrive; `deferred` is SendGrid still trying.
FAILED_EVENTS = frozenset({"bounce", "dropped", "blocked"})
DELIVERY_EVENTS = FAILED_EVENTS | {"delivered", "deferred", "processed"}


class SendGridChannel:
    name: ClassVar[str] = "sendgrid"
    serves: ClassVar[str] = "email"
    Settings: ClassVar[type[IntegrationSettings]] = SendGridSettings

    def __init__(self, settings: SendGridSettings, http: aiohttp.ClientSession) -> None:
        self.settings = settings
        self.http = http
        # Built once: every send reuses them (and the session's pooled keep-alive connections).
        self._send_url = f"{settings.base_url.rstrip('/')}/v3/mail/send"
        self._timeout = aiohttp.ClientTimeout(total=settings.timeout_seconds)

    def address(self, customer: Customer) -> str | None:
        return customer.email or None

    def render(self, message: Message) -> Payload:
        words = render(message)
        if not PLAIN_ADDRESS.fullmatch(message.recipient):
            return self._mail(message, words)
        # What `_mail` builds, without building it: the SDK's objects cost as much as the words. The parts that
        # depend on the settings alone are the SDK's own output, once; `tests/unit/test_sendgrid_body.py`.
        for value in (words.text, words.html):
            _API_KEYS.validate_message_text(value)  # as the SDK's `Content` refuses a message quoting a key
        business = message.wording.business
        body: dict[str, Any] = {
            "from": dict(_sender(self.settings.from_email, self.settings.from_name or business.name)),
            "subject": words.subject, "personalizations": [{"to": [{"email": message.recipient}]}],
            "content": [{"type": "text/plain", "value": words.text}, {"type": "text/html", "value": words.html}],
            "custom_args": {"purpose": message.purpose.value, "payment_id": str(message.receipt.payment_id)},
        }
        if business.reply_to:
            body["reply_to"] = dict(_reply_to(business.reply_to, business.name))
        return body

    def _mail(self, message: Message, words: Rendered) -> Payload:
        """The request body, built with the SDK's `Mail` helper (which reads `Name <address>` and the like)."""
        business = message.wording.business
        from_name = self.settings.from_name or business.name
        mail = Mail(
            from_email=(self.settings.from_email, from_name) if from_name else self.settings.from_email,
            to_emails=message.recipient,
            subject=words.subject,
            plain_text_content=words.text,
            html_content=words.html,
        )
        if business.reply_to:
            mail.reply_to = ReplyTo(business.reply_to, business.name)
        mail.custom_arg = [CustomArg("payment_id", str(message.receipt.payment_id)),
                           CustomArg("purpose", message.purpose.value)]
        return dict(mail.get())

    async def send(self, payload: Payload, *, key: str) -> Delivery:
        body: dict[str, Any] = dict(payload)
        # SendGrid has no idempotency key, and cannot be asked whether it accepted a message: ours rides along in
        # custom_args, so Event Webhook events are joined back (and tell a worker taking over after a crash that
        # the message was accepted, see DeliveryWorker._ask_provider).
        for personalization in body.get("personalizations", []):
            personalization.setdefault("custom_args", {})["notification_key"] = key
        headers = {"Authorization": f"Bearer {secret(self.settings.api_key)}"}
        try:
            async with self.http.post(self._send_url, json=body, headers=headers, timeout=self._timeout) as resp:
                if 200 <= resp.status < 300:  # 202: the body (empty) is read only to keep the connection
                    await resp.read()
                    return Sent(resp.headers.get("X-Message-Id"))
                return outcome_of_status(self.name, resp.status, _reason(await resp.text()), resp.headers)
        except (aiohttp.ClientError, TimeoutError) as exc:
            return Retry(f"sendgrid unreachable: {exc.__class__.__name__}")

    def rate_limit(self, payload: Payload) -> tuple[str, float] | None:
        return None

    def statuses(self, request: InboundRequest) -> list[StatusUpdate]:
        key = secret(self.settings.event_public_key)
        signature, timestamp = request.headers.get(SIGNATURE, ""), request.headers.get(TIMESTAMP, "")
        if not key:
            raise SignatureInvalid("SENDGRID_EVENT_PUBLIC_KEY is not set: event posts cannot be verified")
        if not signature or not timestamp.isdigit():
            raise SignatureInvalid(f"{SIGNATURE} or {TIMESTAMP} missing")
        try:
            verifier = EventWebhook(key)
            valid = verifier.verify_signature(request.body.decode("utf-8"), signature, timestamp)
        except (ValueError, UnicodeDecodeError):
            valid = False
        if not valid:
            raise SignatureInvalid("event signature does not verify")
        if abs(request.received_at.timestamp() - int(timestamp)) > self.settings.event_tolerance_seconds:
            raise SignatureInvalid("event timestamp outside the tolerance: a replay?")
        try:
            events = json.loads(request.body)
        except ValueError as exc:
            raise PayloadInvalid(f"body is not valid JSON: {exc}") from exc
        if not isinstance(events, list) or not all(isinstance(e, dict) for e in events):
            raise PayloadInvalid("body is not a JSON array of events")
        return [
            StatusUpdate(key=str(e["notification_key"]), status=str(e.get("event")),
                         failed=e.get("event") in FAILED_EVENTS or e.get("type") == "blocked",
                         at=from_unix(e.get("timestamp"), request.received_at),
                         detail=str(e.get("reason") or e.get("response") or "")[:300])
            for e in events if e.get("notification_key") and e.get("event") in DELIVERY_EVENTS
        ]

    async def check(self, settings: CoreSettings) -> list[Finding]:
        """`GET /v3/scopes`: the key is accepted, and has Mail Send."""
        url = f"{self.settings.base_url.rstrip('/')}/v3/scopes"
        headers = {"Authorization": f"Bearer {secret(self.settings.api_key)}"}
        try:
            answer = await fetch_json(self.http, self.name, "GET", url, what="the API key's scopes", headers=headers)
        except ProviderRejected as exc:
            return [problem(f"SENDGRID_API_KEY was refused (HTTP {exc.status}: {_reason(exc.body)}): create a key "
                            "with the Mail Send permission (Settings → API Keys)")]
        if "mail.send" not in (answer.get("scopes") or []):
            return [problem("SENDGRID_API_KEY lacks the mail.send scope: give the key the Mail Send permission "
                            "(Settings → API Keys), or no email will go out")]
        return [ok("SENDGRID_API_KEY accepted, with mail.send")]


#: An address the SDK would take as it is (anything else goes through `Mail`, which parses it).
PLAIN_ADDRESS = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+")
_API_KEYS = ValidateApiKey()


@lru_cache(maxsize=64)
def _sender(email: str | None, name: str | None) -> dict[str, str]:
    return dict(From(email, name or None).get())  # as `Mail(from_email=(email, name) if name else email)`


@lru_cache(maxsize=64)
def _reply_to(email: str, name: str | None) -> dict[str, str]:
    return dict(ReplyTo(email, name).get())


def _reason(body: str) -> str:
    """SendGrid's `{"errors":[{"message": …}]}`, shortened."""
    try:
        errors = json.loads(body).get("errors") or []
        return "; ".join(str(e.get("message")) for e in errors)[:300] or body[:300]
    except (ValueError, AttributeError):
        return body[:300]
