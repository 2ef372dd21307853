"""Errors typed by what the caller should do.

    BotError
    ├── InboundError                 a request we refuse (counted, never stored); a short reason
    │   ├── SignatureInvalid         → 401
    │   ├── PayloadInvalid           → 400, with the reason
    │   └── PayloadTooLarge          → 413
    ├── ProviderError                an outbound call failed; carries provider, status and a short body
    │   ├── ProviderUnavailable      retry later (also a ConnectionError)
    │   ├── ProviderRejected         permanent: do not retry
    │   └── ConnectionLost           the platform's authorisation is gone (never connected, refresh token dead):
    │                                wait for `paybot connect`, finance told once; no retry storm
    └── ConfigError                  a setting or input file is wrong → exit code 2
"""

from __future__ import annotations

import re

#: A refusal's reason goes back to an unauthenticated sender, into the log and into the refusal summaries: short.
MAX_REASON = 120
_QUOTED = re.compile(r"b?'[^']*'|b?\"[^\"]*\"")  # a repr() of something the sender sent
_UNPRINTABLE = re.compile(r"[^\x20-\x7e\u00a0-\ud7ff\ue000-\ufffd]+")


def short_reason(message: str) -> str:
    """`message` safe to show anyone: quoted input fragments elided, no control characters, at most MAX_REASON
    characters. The one place a refusal's reason is bounded, whoever composed it."""
    text = " ".join(_UNPRINTABLE.sub(" ", _QUOTED.sub("'…'", message)).split())
    return text if len(text) <= MAX_REASON else text[:MAX_REASON - 1] + "…"


class BotError(Exception):
    """paybot failed."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())


class InboundError(BotError):
    status = 400

    def __init__(self, message: str | None = None) -> None:
        super().__init__(short_reason(message or (self.__doc__ or "").strip()))


class SignatureInvalid(InboundError):
    """missing or invalid signature"""

    status = 401


class PayloadInvalid(InboundError):
    """unparseable body"""

    status = 400


class PayloadTooLarge(InboundError):
    """body too large"""

    status = 413


class ProviderError(BotError):
    """a provider call failed"""

    def __init__(self, provider: str, message: str, *, status: int | None = None, body: str = "") -> None:
        super().__init__(f"{provider}: {message}" + (f" (HTTP {status})" if status else ""))
        self.provider = provider
        self.status = status
        self.body = body[:500]


class ProviderUnavailable(ProviderError, ConnectionError):
    """the provider is unreachable or failing; try again later"""

    def __init__(self, provider: str, message: str, *, status: int | None = None, body: str = "",
                 retry_after: float | None = None) -> None:
        super().__init__(provider, message, status=status, body=body)
        self.retry_after = retry_after


class ProviderRejected(ProviderError):
    """the provider refused the request; retrying will not help"""


class ConnectionLost(ProviderError):
    """paybot is not (or no longer) connected to this account of the platform: someone must run `paybot connect`"""

    def __init__(self, provider: str, message: str, *, tenant: str = "", since: str = "", status: int | None = None,
                 body: str = "") -> None:
        super().__init__(provider, message, status=status, body=body)
        self.tenant = tenant  # the realm / tenant / account / organization, when the platform has several
        self.since = since  # when it was found lost (ISO time), so each loss is told to finance once


class ConfigError(BotError):
    """bad configuration"""
