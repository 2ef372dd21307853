"""Sending to a provider that takes no idempotency key (Mailgun, WhatsApp, Pusher Beams): retry only what the
provider said it did not accept.

A 429, a gateway's 502/503 (the request never reached the application) or a connection that could not be opened
are safe to send again. A 500, a 504 or a connection lost after the request went out leave it unknown whether the
provider took the message. Where it can be asked (Mailgun's event log) the worker asks before the next attempt;
elsewhere sending again could thank the customer twice, so such an attempt is failed with that reason (the
customer's next channel is tried and finance is told, who can see it in the audit trail).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import aiohttp

from bot.integrations.http import Delivery, Failed, Headers, Retry, Sent, retry_hint

#: Statuses after which the provider did not process the request.
NOT_PROCESSED = frozenset({429, 502, 503})
TIMEOUT = aiohttp.ClientTimeout(total=15)

Classify = Callable[[int, str, Headers], Delivery]


def outcome(provider: str, status: int, reason: str, headers: Headers, *, askable: bool = False) -> Delivery:
    """The outcome of an answer that says nothing more specific (no provider error code we know). `askable`: the
    channel can look up whether the provider took a message (`FindsSent`)."""
    if 200 <= status < 300:
        return Sent()
    if status in NOT_PROCESSED:
        return Retry(f"{provider} answered {status}: {reason}", **retry_hint(headers))
    if status >= 500 or status == 408:
        return unknown(f"{provider} answered {status}: {reason}", askable=askable)
    return Failed(f"{provider} answered {status}: {reason}")


def unknown(what: str, *, askable: bool = False) -> Delivery:
    """A provider that can be asked is asked before the next attempt (the worker's `FindsSent` step); one that
    cannot is not sent the message again."""
    if askable:
        return Retry(f"{what}; whether it took the message is unknown: asked before sending again", unknown=True)
    return Failed(f"{what}; whether it took the message is unknown, and it has no idempotency key: not sent again")


async def post(http: aiohttp.ClientSession, provider: str, url: str, classify: Classify, *, askable: bool = False,
               **request: Any) -> Delivery:
    """POST once and classify the answer (`classify(status, body text, headers)`)."""
    try:
        async with http.post(url, timeout=TIMEOUT, **request) as resp:
            return classify(resp.status, await resp.text(errors="replace"), resp.headers)
    except aiohttp.ClientConnectorError as exc:  # no connection, so nothing was sent
        return Retry(f"{provider} unreachable: {exc.__class__.__name__}")
    except (aiohttp.ClientError, TimeoutError) as exc:
        return unknown(f"{provider}: connection lost mid-request ({exc.__class__.__name__})", askable=askable)
