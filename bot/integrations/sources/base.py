"""The Protocol every payment source implements, and the request and result types it works with.

A source is verified on the raw bytes first, then parsed; it never touches the database. Flow, per request:

    reply = await source.handshake(request)   # subscription handshakes; None for an ordinary notification
    source.verify(request)                    # raises SignatureInvalid
    received = await source.parse(request)    # raises PayloadInvalid; may fetch details from the platform

A platform that wants its answer before it can be verified (PayPal IPN: an empty 200 at once, then a postback)
returns `Received(confirm_later=True)`: the event is stored unconfirmed and answered, and the source's `confirm`
(see `ConfirmsLater`) verifies it afterwards, from the stored bytes (`bot.services.verifier`). Anyone can send
such a request, so before it is stored the source does every check it can without the platform (required
fields, that it is addressed to us, that it is a kind paybot acts on: others are answered with
`Received(store=False)` and kept nowhere), and declares a body limit of the platform's size (`LimitsBody`).

A platform whose signed notifications are thin (ids only) and which wants its answer within seconds (QuickBooks,
Xero, FreshBooks, Zoho Books) returns `Received(resolve_later=True)` from `parse`: verified, the notification is
stored as waiting and answered 2xx at once; the source's `resolve` (see `ResolvesLater`) then fetches what it
names, after the answer, retried with backoff while the platform is down (`bot.services.verifier`). A source that
can list what changed (`Sweeps`) is also asked periodically, so a notification the platform never sent is caught up.
"""


from __future__ import annotations

import logging
import re
import traceback

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, ClassVar, Generic, Protocol, TypeVar, runtime_checkable

import aiohttp

from bot.domain.payments import PaymentEvent
from bot.errors import InboundError, PayloadInvalid, ProviderError
from bot.integrations.base import IntegrationSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class InboundRequest:
    """An HTTP request as the platform sent it; `url` is the public URL (what platforms sign)."""

    method: str
    url: str
    headers: Mapping[str, str]  # case-insensitive
    query: Mapping[str, str]
    body: bytes
    received_at: datetime


@dataclass(frozen=True, slots=True)
class Reply:
    """A response a source composes itself (handshakes, IPN's empty 200)."""

    status: int = 200
    body: str = ""
    content_type: str = "text/plain"


@dataclass(frozen=True, slots=True)
class Received:
    """A verified notification. No payments means a type we do not act on: stored as ignored, answered 200."""

    event_id: str
    event_type: str
    payments: tuple[PaymentEvent, ...] = ()
    reply: Reply | None = None  # how to answer instead of the default JSON 200
    headers_kept: dict[str, str] = field(default_factory=dict)  # non-secret headers worth keeping on the record
    confirm_later: bool = False  # store now, unverified; `ConfirmsLater.confirm` verifies it after the answer
    store: bool = True  # False: unverified and nothing paybot acts on; answered (`reply`), kept nowhere
    resolve_later: bool = False  # verified (signature checked) but thin — ids only: stored as waiting, answered
                                 # 2xx at once, then resolved after the answer by `ResolvesLater.resolve`


class PaymentSource(Protocol):
    name: ClassVar[str]                           # the path segment: /webhooks/{name}
    Settings: ClassVar[type[IntegrationSettings]]

    async def handshake(self, request: InboundRequest) -> Reply | None: ...

    def verify(self, request: InboundRequest) -> None: ...

    async def parse(self, request: InboundRequest) -> Received: ...


@runtime_checkable
class ConfirmsLater(Protocol):
    """A source whose notifications are verified after they are answered (see `Received.confirm_later`)."""

    async def confirm(self, stored: InboundRequest) -> Received:
        """Verify a stored notification and say what it holds: raises InboundError if it is not genuine (it is
        then rejected), ProviderError if the platform cannot answer now (it stays pending for the next sweep)."""
        ...


class PlatformAccess(Protocol):
    """What a source's `resolve` and `sweep` may use besides its own HTTP session: the platform's tokens, per tenant
    (realm / Xero tenant / FreshBooks account / Zoho organization). `bot.services.oauth` keeps them in the database."""

    async def token(self, tenant: str) -> str:
        """A valid access token for this source and tenant; ConnectionLost when the tenant was never connected or
        its refresh token is dead."""
        ...

    async def refreshed(self, tenant: str, rejected: str) -> str:
        """After the API answered 401 to `rejected`: a new access token, refreshed once (across coroutines and, on
        PostgreSQL, across processes), its rotated refresh token saved before it is returned."""
        ...

    async def tenants(self) -> list[str]:
        """The connected tenants of this source (for sweeps; a notification naming another is ignored)."""
        ...


@runtime_checkable
class ResolvesLater(Protocol):
    """A source whose verified notifications are thin: resolved after the answer (see `Received.resolve_later`)."""

    async def resolve(self, stored: InboundRequest, access: PlatformAccess) -> Received:
        """Fetch what a stored, verified thin notification names (payments, their invoices, the customer).
        ProviderUnavailable (429/5xx/timeouts; its retry_after honoured) → retried with backoff;
        ConnectionLost → waits, finance told once; other ProviderError → retried up to the limit, then given up
        (finance card); PayloadInvalid / InboundError → recorded as ignored with that reason. A Received with no
        payments (entity deleted, amount paid unchanged, not ours) → recorded as ignored with `event_type` saying
        why. One notification may name many entities: one Received holds all their payments, each with its own
        payment_ref, so a redelivery of one entity is a duplicate alone."""
        ...


@dataclass(frozen=True, slots=True)
class Swept:
    received: tuple[Received, ...]
    mark: datetime  # the next sweep asks from here (the platform's clock, not ours)


@runtime_checkable
class Sweeps(Protocol):
    """A source that can say what changed since a time: the catch-up sweep (`bot.services.sweeper`)."""

    async def sweep(self, since: datetime | None, access: PlatformAccess) -> Swept:
        """What changed at the platform since the high-water mark `since` (None: first sweep — look back
        SWEEP_LOOKBACK_HOURS, a setting), as Received objects whose payments carry the SAME payment_ref a webhook
        for that payment would carry (so the existing duplicate rules make webhook + sweep thank once). For a
        source connected per tenant, `access.tenants()` names the one tenant this sweep (and its mark) is for."""
        ...


@runtime_checkable
class LimitsBody(Protocol):
    """A source whose notifications are far smaller than MAX_BODY_BYTES (IPN: a few KB), and refuses more."""

    def body_limit(self, headers: Mapping[str, str]) -> int:
        """The largest body, in bytes, a notification with these headers may have."""
        ...


def body_limit(source: PaymentSource, headers: Mapping[str, str], default: int) -> int:
    """The body limit for a request to `source`: its own where it declares one, never above `default`."""
    own = getattr(source, "body_limit", None)  # a LimitsBody: isinstance on a Protocol cost 15 µs a webhook
    return min(own(headers), default) if callable(own) else default


S = TypeVar("S", bound=IntegrationSettings)


class WebhookSource(Generic[S]):
    """What most sources share: their settings, the HTTP session, and no subscription handshake."""

    def __init__(self, settings: S, http: aiohttp.ClientSession) -> None:
        self.settings = settings
        self.http = http

    async def handshake(self, request: InboundRequest) -> Reply | None:
        return None


class SourceFactory(Protocol):
    """A source class itself: its name, its settings class, and its constructor."""

    name: str
    Settings: type[IntegrationSettings]

    def __call__(self, settings: Any, http: aiohttp.ClientSession) -> PaymentSource: ...


#: What storage holds. Identity (the ids that make a redelivery a duplicate) is refused when it does not fit: cut short
#: or altered, two events could become one. Lookup keys that cannot be stored can match nothing and are dropped.
#: Display text is cleaned and cut short: a payer's odd name never costs a payment.
IDENTITY_LIMITS = {"event_id": 255}
PAYMENT_IDENTITY_LIMITS = {"payment_ref": 255}
LOOKUP_LIMITS = {"invoice_external_id": 255, "customer_external_id": 255, "payer_email": 320}
DISPLAY_LIMITS = {"event_type": 120, "payer_name": 255}
MAX_MINOR_UNITS = 10**15  # ten trillion dollars: anything larger is a malformed payload, not a payment
#: NUL (PostgreSQL text cannot hold it) and lone surrogates (not UTF-8): no column on either engine takes them.
UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def storable(text: str) -> bool:
    return UNSTORABLE.search(text) is None


def display(value: object, limit: int | None = None) -> str:
    """Outside text as storage and people can take it: unstorable characters replaced, cut to `limit` with `…`."""
    text = UNSTORABLE.sub("\ufffd", value if isinstance(value, str) else str(value))
    return text if limit is None or len(text) <= limit else text[:limit - 1] + "…"


def _shown(value: object, limit: int | None = None) -> str | None:
    return None if value is None else display(value, limit)


def checked(received: Received) -> Received:
    """`received` as storage can hold it: display text cleaned and shortened, unusable lookup keys dropped;
    PayloadInvalid naming the field when an identity or an amount is unusable."""
    for name, limit in IDENTITY_LIMITS.items():
        _identity(name, getattr(received, name), limit)
    return replace(received, event_type=display(received.event_type, DISPLAY_LIMITS["event_type"]),
                   payments=tuple(_checked_payment(p) for p in received.payments),
                   headers_kept={display(k): display(v) for k, v in received.headers_kept.items()})


def _identity(name: str, value: str | None, limit: int) -> None:
    if value is not None and len(value) > limit:
        raise PayloadInvalid(f"{name} is longer than {limit} characters")
    if value is not None and not storable(value):
        raise PayloadInvalid(f"{name} holds a NUL or an unpaired surrogate")


def _lookup(value: object, limit: int) -> str | None:
    """An id to look something up by, if storage could hold it (else nothing stored could ever equal it)."""
    return value if isinstance(value, str) and len(value) <= limit and storable(value) else None


def _checked_payment(payment: PaymentEvent) -> PaymentEvent:
    for name, limit in PAYMENT_IDENTITY_LIMITS.items():
        _identity(name, getattr(payment, name), limit)
    for money in (payment.amount, payment.reported_balance, payment.invoice_total):
        if money is not None and abs(money.minor) >= MAX_MINOR_UNITS:
            raise PayloadInvalid(f"amount {money} is out of range")
    if payment.amount.minor < 0:
        raise PayloadInvalid(f"amount {payment.amount} is negative")
    lookups: dict[str, Any] = {name: _lookup(getattr(payment, name), limit) for name, limit in LOOKUP_LIMITS.items()}
    unusable = sorted(name for name, value in lookups.items() if value is None and getattr(payment, name) is not None)
    if unusable:
        log.warning("%s payment %s: dropped %s (too long or unstorable to match anything)",
                    payment.source, payment.payment_ref, ", ".join(unusable))
    details = {display(k): display(v) for k, v in payment.details.items()}
    return replace(
        payment, **lookups,
        payer_name=_shown(payment.payer_name, DISPLAY_LIMITS["payer_name"]),
        payer_phone=_shown(payment.payer_phone),
        invoice_numbers=tuple(display(n) for n in payment.invoice_numbers),
        texts=tuple(display(t) for t in payment.texts),
        reverses=tuple(display(r) for r in payment.reverses),
        details=details | ({"unusable_fields": ",".join(unusable)} if unusable else {}),
    )


async def read(parse: Callable[[InboundRequest], Awaitable[Received]], request: InboundRequest) -> Received:
    """Parse a verified request. A payload of a shape the parser did not foresee is the sender's malformed
    input (400), not our failure: it is refused, never a 500. The exception's text may quote the payload, so
    neither the answer nor the log carries it: the type and where the parser tripped are enough to find it."""
    try:
        return checked(await parse(request))
    except (InboundError, ProviderError):
        raise
    except Exception as exc:  # noqa: BLE001  the boundary: whatever the parser tripped on
        log.warning("payload of an unforeseen shape (%s), at %s", type(exc).__name__, tripped_at(exc))
        raise PayloadInvalid(f"payload has an unexpected shape ({type(exc).__name__})") from exc


def tripped_at(exc: BaseException) -> str:
    """Where an exception was raised, as `file.py:123 in function` (the innermost frame)."""
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return "an unknown place"
    last = frames[-1]
    return f"{last.filename.rsplit('/', 1)[-1]}:{last.lineno} in {last.name}"
