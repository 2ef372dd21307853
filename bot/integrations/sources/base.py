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

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import ClassVar, Generic, Protocol, TypeVar, runtime_checkable

import aiohttp

from bot.domain.payments import PaymentEvent
from bot.integrations.base import IntegrationSettings


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
    name: ClassVar[str]
    Settings: ClassVar[type[IntegrationSettings]]

    def __call__(self, settings: IntegrationSettings, http: aiohttp.ClientSession) -> PaymentSource: ...
