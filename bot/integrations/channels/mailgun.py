"""Mailgun: `POST /v3/{domain}/messages` (form fields, Basic `api:<key>`, 200 `{"id": "<…>"}`); and its signed
event webhooks at `/callbacks/mailgun`.

The alternative email provider (`EMAIL_PROVIDER=mailgun`): the same subject, text and HTML as SendGrid. Our
notification key rides as `v:notification_key` (back in every event's `user-variables`) and as a MIME header.
Events carry their signature in the body: hex HMAC-SHA256 of timestamp + token with the webhook signing key;
a stale timestamp or a token seen before is refused.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Literal

import aiohttp
from pydantic import AliasChoices, Field, SecretStr

from bot.domain.parties import Customer
from bot.errors import PayloadInvalid, ProviderRejected, ProviderUnavailable, SignatureInvalid
from bot.integrations.base import IntegrationSettings, secret, settings_config
from bot.integrations.channels import unkeyed
from bot.integrations.channels.base import CannotTell, Payload, StatusUpdate, echoed_key
from bot.integrations.checks import Finding, ok, problem
from bot.integrations.http import Delivery, Headers, Retry, Sent
from bot.integrations.sources.base import InboundRequest, display
from bot.integrations.sources.common import (digest_matches, fetch_json, from_unix, json_object, path_segment,
                                             unix_seconds)
from bot.messages import Message, render
from bot.settings import Settings as CoreSettings

REGIONS = {"us": "https://api.mailgun.net", "eu": "https://api.eu.mailgun.net"}
KEY_VARIABLE = "notification_key"
KEY_HEADER = "X-Paybot-Notification-Key"
#: How many webhook tokens are remembered against replays; older ones are outside the tolerance anyway.
MAX_TOKENS = 10_000
#: Reading the event log back after a worker died mid-send: from a little before the attempt (clocks differ), how
#: much to read, and how long after an attempt its `accepted` event may still be missing from the log.
CLOCK_SKEW = timedelta(minutes=5)
EVENT_PAGES, EVENTS_PAGE = 5, 300
EVENT_LAG = timedelta(minutes=5)


def utcnow() -> datetime:
    return datetime.now(UTC)


class MailgunSettings(IntegrationSettings):
    model_config = settings_config("MAILGUN")
    required = ("api_key", "domain", "from_")

    api_key: SecretStr | None = None
    domain: str | None = None            # the sending domain, e.g. mg.weld.example
    # MAILGUN_FROM (a trailing `_` keeps the keyword out of the field's name), e.g. "Billing <billing@mg.…>"
    from_: str | None = Field(default=None, validation_alias=AliasChoices("MAILGUN_FROM", "from_"))
    region: Literal["us", "eu"] = "us"    # where the domain was created; picks the API root
    base_url: str | None = None           # overrides the region's API root (a proxy, a fake)
    webhook_signing_key: SecretStr | None = None  # Sending → Webhooks → HTTP webhook signing key
    webhook_tolerance_seconds: int = 300

    @property
    def api_root(self) -> str:
        return (self.base_url or REGIONS[self.region]).rstrip("/")


#: Events that tell where a message stands; `failed` is a failure signal only when permanent.
EVENTS = frozenset({"accepted", "delivered", "failed", "complained"})


class MailgunChannel:
    name: ClassVar[str] = "mailgun"
    serves: ClassVar[str] = "email"
    Settings: ClassVar[type[IntegrationSettings]] = MailgunSettings

    def __init__(self, settings: MailgunSettings, http: aiohttp.ClientSession,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self.settings = settings
        self.http = http
        self._now = clock
        self._tokens: OrderedDict[str, datetime] = OrderedDict()  # webhook tokens seen, oldest first

    def address(self, customer: Customer) -> str | None:
        return customer.email or None

    def render(self, message: Message) -> Payload:
        words = render(message)
        business = message.wording.business
        payload: Payload = {
            "from": self.settings.from_, "to": message.recipient, "subject": words.subject,
            "text": words.text, "html": words.html,
            "o:tag": ["paybot", message.purpose.value.replace("_", "-")] + (["test"] if message.test else []),
            "v:payment_id": str(message.receipt.payment_id), "v:purpose": message.purpose.value,
        }
        if business.reply_to:
            payload["h:Reply-To"] = business.reply_to
        return payload

    async def send(self, payload: Payload, *, key: str) -> Delivery:
        form = aiohttp.FormData(default_to_multipart=True)
        for name, value in (payload | {f"v:{KEY_VARIABLE}": key, f"h:{KEY_HEADER}": key}).items():
            for one in value if isinstance(value, list) else [value]:
                form.add_field(name, str(one))
        url = f"{self.settings.api_root}/v3/{path_segment(self.settings.domain)}/messages"
        return await unkeyed.post(self.http, self.name, url, self._outcome, askable=True, data=form,
                                  headers=self._auth())

    def _outcome(self, status: int, body: str, headers: Headers) -> Delivery:
        outcome = unkeyed.outcome(self.name, status, _reason(body), headers, askable=True)  # see find_sent
        if isinstance(outcome, Sent):
            try:
                return Sent(str(json.loads(body).get("id") or "") or None)
            except (ValueError, AttributeError):
                return Sent()
        return outcome

    def _auth(self) -> dict[str, str]:
        return {"Authorization": aiohttp.encode_basic_auth("api", secret(self.settings.api_key))}

    def rate_limit(self, payload: Payload) -> tuple[str, float] | None:
        return None

    async def find_sent(self, payload: Payload, *, key: str, since: datetime) -> Sent | Retry | CannotTell | None:
        """Mailgun's event log: an `accepted` event for the recipient since the attempt, carrying our key. The log
        fills in with a lag, so "none there" counts only once EVENT_LAG has passed since the attempt."""
        url = f"{self.settings.api_root}/v3/{path_segment(self.settings.domain)}/events"
        params: dict[str, str] | None = {
            "begin": str(int((since - CLOCK_SKEW).timestamp())), "ascending": "yes", "limit": str(EVENTS_PAGE),
            "event": "accepted", "recipient": str(payload.get("to") or "")}
        try:
            for _ in range(EVENT_PAGES):
                page = await fetch_json(self.http, self.name, "GET", url, what="the event log", params=params,
                                        headers=self._auth())
                found = page.get("items")
                items: list[Any] = found if isinstance(found, list) else []
                for item in items:
                    if _field(item, "user-variables", KEY_VARIABLE) == key:
                        message_id = _field(item, "message", "headers", "message-id")
                        return Sent(f"<{message_id}>" if isinstance(message_id, str) else None)
                following = _field(page, "paging", "next")
                if not items or not isinstance(following, str) or \
                        not following.startswith(f"{self.settings.api_root}/"):
                    break  # the last page (Mailgun ends with an empty one), or a link we will not follow
                url, params = following, None
            else:
                return CannotTell(f"mailgun events: more than {EVENT_PAGES * EVENTS_PAGE} since the attempt")
        except ProviderUnavailable as exc:
            return Retry(f"mailgun events: {exc}", after=exc.retry_after)
        except ProviderRejected as exc:  # e.g. a key without read access: asking again will not help
            return CannotTell(f"mailgun events: HTTP {exc.status}: {_reason(exc.body)}")
        if self._now() - since < EVENT_LAG:
            return Retry("mailgun's event log may not show the attempt yet", until=since + EVENT_LAG)
        return None

    def statuses(self, request: InboundRequest) -> list[StatusUpdate]:
        key = secret(self.settings.webhook_signing_key)
        if not key:
            raise SignatureInvalid("MAILGUN_WEBHOOK_SIGNING_KEY is not set: event posts cannot be verified")
        body = json_object(request.body)  # the signature is inside: an unparseable body is a 400
        self._verify(body.get("signature"), key, request.received_at)
        event = body.get("event-data")
        if not isinstance(event, dict):
            raise PayloadInvalid("event-data missing or not an object")
        variables, kind = event.get("user-variables"), event.get("event")
        ours = echoed_key(variables.get(KEY_VARIABLE)) if isinstance(variables, dict) else None
        if ours is None or not isinstance(kind, str) or kind not in EVENTS:
            return []  # not one of ours (another sender on the domain), or an event about engagement
        status = f"{kind}-temporary" if kind == "failed" and event.get("severity") != "permanent" else kind
        return [StatusUpdate(key=ours, status=status, failed=status in ("failed", "complained"),
                             at=from_unix(_whole(event.get("timestamp")), request.received_at),
                             detail=display(_detail(event), 300))]

    def _verify(self, signed: Any, key: str, now: datetime) -> None:
        if not isinstance(signed, dict) or not all(isinstance(signed.get(f), str) and signed.get(f)
                                                   for f in ("timestamp", "token", "signature")):
            raise SignatureInvalid("signature object missing or incomplete")
        timestamp, token = signed["timestamp"], signed["token"]
        if not unix_seconds(timestamp):
            raise SignatureInvalid("event timestamp is not a Unix time")
        expected = hmac.new(key.encode(), (timestamp + token).encode("utf-8", "surrogatepass"),
                            hashlib.sha256).hexdigest()
        if not digest_matches(expected, [signed["signature"].encode("utf-8", "surrogatepass")]):  # JSON: any str
            raise SignatureInvalid("event signature does not verify")
        if abs(now.timestamp() - int(timestamp)) > self.settings.webhook_tolerance_seconds:
            raise SignatureInvalid("event timestamp outside the tolerance: a replay?")
        self._remember(token, now)

    def _remember(self, token: str, now: datetime) -> None:
        """Refuse a token seen before. Only signed tokens are kept (nobody else can fill this), for as long as
        their timestamp could pass, and at most MAX_TOKENS of them."""
        while self._tokens and (now - next(iter(self._tokens.values()))).total_seconds() > \
                2 * self.settings.webhook_tolerance_seconds:
            self._tokens.popitem(last=False)
        if token in self._tokens:
            raise SignatureInvalid("event token seen before: a replay")
        self._tokens[token] = now
        while len(self._tokens) > MAX_TOKENS:
            self._tokens.popitem(last=False)

    async def check(self, settings: CoreSettings) -> list[Finding]:
        """`GET /v3/domains/{domain}`: the key is accepted, and the sending domain exists and is verified."""
        url = f"{self.settings.api_root}/v3/domains/{path_segment(self.settings.domain)}"
        try:
            answer = await fetch_json(self.http, self.name, "GET", url, what="the sending domain",
                                      headers=self._auth())
        except ProviderRejected as exc:
            if exc.status == 404:
                return [problem(f"MAILGUN_DOMAIN {self.settings.domain!r} is not in this Mailgun account"
                                f"{'' if self.settings.base_url else f' ({self.settings.region.upper()} region)'}: "
                                "check the domain, and MAILGUN_REGION=eu for a domain created in the EU")]
            return [problem(f"MAILGUN_API_KEY was refused (HTTP {exc.status}: {_reason(exc.body)}): use the "
                            "account's private API key (API Security), not a webhook or public key")]
        state = str((answer.get("domain") or {}).get("state") or "unknown")
        found = [ok(f"MAILGUN_API_KEY accepted; domain {self.settings.domain} is {state}")]
        if state != "active":
            found.append(problem(f"MAILGUN_DOMAIN {self.settings.domain} is {state}: finish its DNS set-up "
                                 "(Sending → Domains → DNS records), or Mailgun will not send"))
        if not self.settings.webhook_signing_key:
            found.append(problem("MAILGUN_WEBHOOK_SIGNING_KEY is not set: bounces cannot be verified, so none "
                                 "falls back to the customer's next channel"))
        return found


def _field(document: Any, *path: str) -> Any:
    """A nested value of an event, or None where the shape is not the documented one."""
    for name in path:
        document = document.get(name) if isinstance(document, dict) else None
    return document


def _whole(value: Any) -> int | None:
    """Mailgun's event timestamps are float seconds."""
    try:
        return int(float(value))
    except (TypeError, ValueError, OverflowError):
        return None


def _detail(event: dict[str, Any]) -> str:
    found = event.get("delivery-status")
    status: dict[str, Any] = found if isinstance(found, dict) else {}
    parts = [event.get("reason"), status.get("code"), status.get("description") or status.get("message")]
    return " ".join(str(p) for p in parts if p not in (None, ""))[:300]


def _reason(body: str) -> str:
    """Mailgun's `{"message": …}`, or its plain-text answer (401 `Forbidden`), shortened."""
    try:
        return str(json.loads(body).get("message") or body)[:300]
    except (ValueError, AttributeError):
        return body[:300]
