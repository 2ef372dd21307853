"""What the CRM channels (HubSpot, ActiveCampaign, Klaviyo, Intercom) share.

Each hands a payment to the customer's CRM record, where the operator's own automation says thank you. They all
store the same facts in the outbox (`payment_facts`), make a few JSON calls per payment through `CrmApi`, and
classify answers alike:

- 2xx: the step worked; any other status ends the attempt (`Stop`) with its outcome;
- 401/403: permanent, and the integration's fault rather than the payment's: finance is told once per token
  (`Failed.once`), not once per payment; the customer's next channel is tried;
- 429: retried exactly when the CRM says (each CRM's own headers, read by its `wait`);
- 408/409/5xx and a lost answer: retried with the same idempotency key, where the CRM has one. Where it has none
  (ActiveCampaign) a request that may have been applied is not retried blindly: it is recorded as failed, for
  finance to check by hand;
- other 4xx: permanent.

The outbox's rate-limit key (`shared_limit`) spaces every worker's sends to one account.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from multidict import CIMultiDict

from bot.domain.parties import Customer
from bot.integrations.channels.base import Payload
from bot.integrations.checks import Finding, ok, problem
from bot.integrations.http import RETRYABLE, Failed, Retry, retry_hint
from bot.messages import Message, render

TIMEOUT = aiohttp.ClientTimeout(total=20, sock_connect=5)
#: Marks a Decimal while the body is encoded, so it goes out as a JSON number without passing through float.
_NUMBER = "\u0000number:"
_NUMBER_IN_JSON = re.compile(r'"\\u0000number:(-?[0-9]+(?:\.[0-9]+)?)"')


def payment_facts(message: Message) -> Payload:
    """The facts every CRM request is built from, as stored in the outbox (JSON: money as strings and minor
    units, times as UTC ISO 8601)."""
    receipt, customer = message.receipt, message.customer
    words = render(message)
    balance = receipt.balance if receipt.balance is not None and receipt.balance.minor >= 0 else None
    return {
        "email": message.recipient,
        "phone": customer.phone if customer else None,
        "name": receipt.customer_name or (customer.name if customer else None),
        "customer_id": receipt.customer_id,
        "payment_id": receipt.payment_id,
        "payment_ref": receipt.payment_ref,
        "source": receipt.source,
        "invoice": receipt.invoice_number,
        "amount": str(receipt.amount.amount),
        "amount_minor": receipt.amount.minor,
        "currency": receipt.amount.currency,
        "invoice_total_minor": receipt.invoice_total.minor if receipt.invoice_total else None,
        "balance_minor": balance.minor if balance is not None else None,
        "paid_in_full": receipt.settlement is not None and not receipt.partial,
        "paid_at": receipt.paid_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "paid_at_epoch": int(receipt.paid_at.timestamp()),
        "subject": words.subject,
        "text": words.text,
        "test": message.test,
    }


class CrmChannel:
    """What every CRM channel does alike: it reaches a customer at their email, and queues the payment's facts
    (`payment_facts`), which the CRM's own templates and workflows turn into words."""

    def address(self, customer: Customer) -> str | None:
        return customer.email or None

    def render(self, message: Message) -> Payload:
        return payment_facts(message)


def number(amount: str | Decimal) -> str:
    """An exact amount for `json_body`: written as a JSON number, never through float."""
    return f"{_NUMBER}{Decimal(amount)}"


def json_body(value: Any) -> bytes:
    """JSON with `number(...)` values as bare numbers (`1250.00`, not `"1250.00"` nor a float's `1250.0`)."""
    return _NUMBER_IN_JSON.sub(r"\1", json.dumps(value, ensure_ascii=False)).encode()


async def resend_is_safe(self: Any, payload: Payload, *, key: str, since: datetime) -> None:
    """`FindsSent` for a CRM that de-duplicates on our key (HubSpot's sendId, Klaviyo's unique_id, Intercom's
    created_at): after a worker died mid-send there is no need to ask; sending again creates nothing twice, so
    it is not a possible duplicate."""
    return None


def fingerprint(secret: str) -> str:
    """Names a credential in an alert key without revealing it: a new token is reported afresh."""
    return hashlib.sha256(secret.encode()).hexdigest()[:12]


def shared_limit(name: str, account: str, calls: int, per_second: float) -> tuple[str, float]:
    """The outbox rate-limit key of one CRM account and the seconds one send (`calls` requests) takes of it."""
    return f"{name}:{account}", calls / per_second


def host_of(url: str) -> str:
    return urlsplit(url).hostname or url


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    text: str
    headers: CIMultiDict[str]  # case-insensitive, as HTTP header names are

    def json(self) -> Any:
        try:
            return json.loads(self.text) if self.text.strip() else {}
        except ValueError:
            return {}


class Stop(Exception):
    """A call ended the attempt: its outcome is what the send returns."""

    def __init__(self, outcome: Retry | Failed) -> None:
        super().__init__(outcome.reason)
        self.outcome = outcome


#: Each CRM's error body, shortened; and its rate-limit headers read as `Retry` arguments.
Reason = Callable[[Answer], str]
Wait = Callable[[Answer], dict[str, Any]]


def standard_wait(answer: Answer) -> dict[str, Any]:
    return retry_hint(answer.headers)


@dataclass
class CrmApi:
    """One CRM's JSON API: its root, its auth headers, how it words errors and rate limits."""

    name: str            # the channel: "hubspot"
    http: aiohttp.ClientSession
    base_url: str
    headers: dict[str, str]
    token_setting: str   # named to the operator on a 401/403: HUBSPOT_ACCESS_TOKEN
    token: str
    reason: Reason
    wait: Wait = standard_wait
    idempotent: bool = True  # False: a request that may have been applied is not sent again (ActiveCampaign)
    content_type: str = "application/json"

    def url(self, path: str) -> str:
        return f"{self.base_url.rstrip('/')}/{path.lstrip('/')}"

    async def call(self, method: str, path: str, *, body: Any = None, params: Mapping[str, str] | None = None,
                   allow: frozenset[int] = frozenset()) -> Answer:
        """The answer of a 2xx (or of a status in `allow`); anything else raises Stop with its outcome."""
        headers = dict(self.headers)
        data = None
        if body is not None:
            headers["Content-Type"] = self.content_type
            data = json_body(body)
        try:
            async with self.http.request(method, self.url(path), data=data, params=params, headers=headers,
                                         timeout=TIMEOUT) as resp:
                answer = Answer(resp.status, await resp.text(), CIMultiDict(resp.headers))
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:  # never reached the CRM
            raise Stop(Retry(f"{self.name} unreachable: {exc.__class__.__name__}")) from exc
        except (aiohttp.ClientError, TimeoutError) as exc:  # sent, and no answer: applied or not, nobody knows
            raise Stop(self._unknown(f"no answer after {method} {path} was sent ({exc.__class__.__name__})",
                                     method)) from exc
        if 200 <= answer.status < 300 or answer.status in allow:
            return answer
        raise Stop(self.outcome(answer, method))

    def outcome(self, answer: Answer, method: str = "POST") -> Retry | Failed:
        status, reason = answer.status, f"{self.name} answered {answer.status}: {self.reason(answer)}"
        if status in (401, 403):
            return Failed(f"{reason}; check {self.token_setting} and its scopes",
                          once=f"{self.name}:auth:{fingerprint(self.token)}")
        if status == 429:
            return Retry(reason, **self.wait(answer))
        if status in RETRYABLE or status >= 500:
            if self.idempotent or method == "GET" or status < 500 or status == 503:  # said: not processed
                return Retry(reason, **self.wait(answer))
            return self._unknown(reason, method)
        return Failed(reason)

    def _unknown(self, what: str, method: str) -> Retry | Failed:
        if self.idempotent or method == "GET":  # a read changed nothing: asking again is always safe
            return Retry(f"{self.name}: {what}")
        return Failed(f"{self.name}: {what}; it may have been applied and {self.name} has no idempotency key, "
                      "so it is not retried: check the contact in the CRM")

    async def check(self, path: str, describe: Callable[[Any], str], *, scopes: str) -> list[Finding]:
        """`paybot check`: one authenticated read; what the CRM answered, as one finding."""
        try:
            answer = await self.call("GET", path)
        except Stop as stop:
            if isinstance(stop.outcome, Failed) and stop.outcome.once:
                return [problem(f"{self.token_setting} was refused ({stop.outcome.reason}); it needs {scopes}")]
            return [problem(stop.outcome.reason)]
        return [ok(f"{self.token_setting} accepted: {describe(answer.json())}")]


def header(answer: Answer, name: str) -> str:
    return answer.headers.get(name, "").strip()


def errors_reason(answer: Answer) -> str:
    """The usual `{"errors": [{"title"/"message", "detail"}]}` or `{"message": …}` envelope, shortened."""
    body = answer.json()
    if isinstance(body, dict):
        errors = body.get("errors")
        if isinstance(errors, list) and errors:
            parts = [" ".join(str(e.get(k)) for k in ("code", "title", "message", "detail") if e.get(k))
                     for e in errors if isinstance(e, dict)]
            return "; ".join(parts)[:300]
        if body.get("message"):
            return str(body["message"])[:300]
    return answer.text[:300] or "(no body)"
