"""The Protocol every payment source implements, and the request and result types it works with.

A source is verified on the raw bytes first, then parsed; it never touches the database. Flow, per request:

    reply = await source.handshake(request)   # subscription handshakes; None for an ordinary notification
    source.verify(request)                    # raises SignatureInvalid
    received = await source.parse(request)    # raises PayloadInvalid; may fetch details from the platform

A platform that wants its answer before it can be verified (PayPal IPN: an empty 200 at once, then a postback)
returns `Received(confirm_later=True)`: the event is stored unconfirmed and answered, and the source's `confirm`
(see `ConfirmsLater`) verifies it afterwards, from the stored bytes.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
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


#: What storage holds of an event; a verified payload with a longer value is refused, never cut short.
TEXT_LIMITS = {"event_id": 255, "event_type": 120}
PAYMENT_TEXT_LIMITS = {"payment_ref": 255, "payer_email": 320, "payer_name": 255, "invoice_external_id": 255,
                       "customer_external_id": 255}
MAX_MINOR_UNITS = 10**15  # ten trillion dollars: anything larger is a malformed payload, not a payment


def checked(received: Received) -> Received:
    """`received`, if storage can hold it as it is; PayloadInvalid naming the field otherwise."""
    for name, limit in TEXT_LIMITS.items():
        if len(getattr(received, name)) > limit:
            raise PayloadInvalid(f"{name} is longer than {limit} characters")
    for payment in received.payments:
        for name, limit in PAYMENT_TEXT_LIMITS.items():
            value = getattr(payment, name)
            if value is not None and len(value) > limit:
                raise PayloadInvalid(f"{name} is longer than {limit} characters")
        for money in (payment.amount, payment.reported_balance, payment.invoice_total):
            if money is not None and abs(money.minor) >= MAX_MINOR_UNITS:
                raise PayloadInvalid(f"amount {money} is out of range")
        if payment.amount.minor < 0:
            raise PayloadInvalid(f"amount {payment.amount} is negative")
    return received


async def read(parse: Callable[[InboundRequest], Awaitable[Received]], request: InboundRequest) -> Received:
    """Parse a verified request. A payload of a shape the parser did not foresee is the sender's malformed
    input (400), not our failure: it is refused, never a 500. The exception's text may quote the payload, so
    neither the answer nor the log carries it: the type and where the parser tripped are enough to find it."""
    try:
        return checked(await parse(request))
    except (InboundError, ProviderError):
        raise
    except Exception as exc:  # noqa: BLE001  the boundary: whatever the parser tripped on
        log.warning("payload of an unforeseen shape: %s at %s", type(exc).__name__, _where(exc))
        raise PayloadInvalid(f"payload has an unexpected shape ({type(exc).__name__})") from exc


def _where(exc: BaseException) -> str:
    frame = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
    return f"{frame[0].filename.rsplit('/', 1)[-1]}:{frame[0].lineno}" if frame else "?"
