"""The Protocol every channel implements.

    channel.address(customer)        → where this customer is reached on it, or None
    channel.render(message)          → the provider request, stored in the outbox (so what was sent is on record)
    await channel.send(payload, key) → Sent | Retry | Failed; raises only for bugs

A channel whose provider reports delivery afterwards also implements `ReportsStatus`, served at
`POST /callbacks/{name}`. One whose provider can be asked whether it already holds a message implements
`FindsSent`: the worker asks before re-sending a message whose previous attempt died mid-send.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, Protocol, runtime_checkable

import aiohttp

from bot.domain.parties import Customer
from bot.integrations.base import IntegrationSettings
from bot.integrations.http import Delivery, Retry, Sent
from bot.integrations.sources.base import InboundRequest, Reply, storable
from bot.messages import Message

Payload = dict[str, Any]


class Channel(Protocol):
    name: ClassVar[str]          # the provider: "sendgrid"
    serves: ClassVar[str]        # the customer preference it fulfils: "email"
    Settings: ClassVar[type[IntegrationSettings]]

    def address(self, customer: Customer) -> str | None: ...

    def render(self, message: Message) -> Payload: ...

    async def send(self, payload: Payload, *, key: str) -> Delivery: ...

    def rate_limit(self, payload: Payload) -> tuple[str, float] | None:
        """A key shared by every worker and the minimum seconds between two sends on it, if the provider has one."""
        ...


class ChannelFactory(Protocol):
    """A channel class itself: its names, its settings class, and its constructor."""

    name: str
    serves: str
    Settings: type[IntegrationSettings]

    def __call__(self, settings: Any, http: aiohttp.ClientSession) -> Channel: ...


@dataclass(frozen=True, slots=True)
class StatusUpdate:
    """What a provider says happened to a message after it accepted it."""

    key: str          # our notification's idempotency key, as we handed it to the provider
    status: str       # the provider's word: delivered, bounce, dropped, undelivered, …
    failed: bool      # the message will not arrive: fall back and tell finance
    at: datetime
    detail: str = ""  # the provider's reason, shortened
    provider_id: str | None = None  # the provider's message id, when the callback names it (for the logs)


@dataclass(frozen=True, slots=True)
class ConsentChange:
    """A person opted out of (STOP, or the provider refusing because they did) or back in to (START) a channel."""

    preference: str   # the channel kind it covers: "sms"
    address: str      # where: "+15125550123"
    opted_out: bool
    reason: str       # for the audit trail: "replied STOP", "twilio error 21610"
    at: datetime


@runtime_checkable
class ReportsStatus(Protocol):
    def statuses(self, request: InboundRequest) -> Sequence[StatusUpdate | ConsentChange]:
        """Verify the callback (SignatureInvalid) and read its updates (PayloadInvalid). Statuses are joined
        back to our notification by `key`; a confirmed delivery is one whose status is in `DELIVERED`."""
        ...


#: Provider words for "it arrived": the end of a fallback chain; a failure reported after it changes nothing.
DELIVERED = frozenset({"delivered", "read"})


@runtime_checkable
class RepliesToCallbacks(Protocol):
    def callback_reply(self) -> tuple[str, str]:
        """The body and content type the provider expects back (Twilio: an empty TwiML `<Response/>`)."""
        ...


@dataclass(frozen=True, slots=True)
class CannotTell:
    """The provider cannot say whether it holds the message (no permission to read it back, too much to search)."""

    reason: str


@runtime_checkable
class FindsSent(Protocol):
    async def find_sent(self, payload: Payload, *, key: str, since: datetime) -> Sent | Retry | CannotTell | None:
        """The message this provider accepted under `key` at or after `since` (Sent with its id), None when it
        holds none, Retry when it cannot be asked just now, CannotTell when it can never answer."""
        ...


@runtime_checkable
class PollsStatus(Protocol):
    """A provider that accepts a message and finishes it later, and must be asked how it ended (HubSpot's
    transactional send). Rows sent with a `delivery_status` in `pending_statuses` are polled by the worker."""

    pending_statuses: ClassVar[frozenset[str]]

    async def poll_status(self, provider_id: str, *, key: str, now: datetime) -> StatusUpdate | None:
        """How the message ended, or None while it is still under way (or the provider cannot say just now)."""
        ...


@runtime_checkable
class UsesDatabase(Protocol):
    """A channel that keeps state of its own in paybot's database (Teams' conversation references)."""

    def attach(self, db: Any) -> None: ...


@runtime_checkable
class AnswersHandshake(Protocol):
    def handshake(self, request: InboundRequest) -> Reply | None:
        """The provider's subscription check on `GET /callbacks/{name}` (WhatsApp's `hub.challenge`): the answer,
        or None when the request is not one; PayloadInvalid when it is malformed."""
        ...


#: Notification.idempotency_key's length: a longer "key" in a callback was never ours.
KEY_LIMIT = 120


def echoed_key(value: object) -> str | None:
    """A notification key a provider's callback echoes back, if it could be one we gave it; None (not ours, ignored)
    for anything else, e.g. text no column can hold (NUL, a lone surrogate) even inside a signed callback."""
    return value if isinstance(value, str) and 0 < len(value) <= KEY_LIMIT and storable(value) else None
