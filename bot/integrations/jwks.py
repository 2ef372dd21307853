"""Bearer JWTs signed by a platform and checked against its published keys (JWKS): Sage Intacct's platform triggers.

The key set is fetched once and kept; a token naming a key we do not hold makes us fetch again, at most once per
`REFETCH_COOLDOWN` (the platform rotated its keys; a flood of made-up key ids must not become a flood of fetches).
A kid still unknown after that fetch is refused (401). One arriving within the cooldown, before we could look, is
answered 503: the platform retries that (Sage: after 10, 30, 90 s), so a genuine token signed with a key published
a moment after our last fetch is not lost, and a forger gains nothing. When the JWKS endpoint cannot be reached and
no key is held, the request is answered 503 too: a token is never accepted unverified. `exp`/`nbf` are checked against the request's arrival time (an injected
clock), with a small leeway; the signature, `iss` and `aud` by PyJWT.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import aiohttp
import jwt

from bot.errors import ProviderError, ProviderUnavailable, SignatureInvalid

log = logging.getLogger(__name__)

#: Asymmetric algorithms only: `none` and the HMAC family (a public key used as a shared secret) are refused.
ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512")
REFETCH_COOLDOWN = timedelta(seconds=60)
MAX_AGE = timedelta(hours=24)  # even without a new kid, keys are looked at again daily (a revoked key goes)


@dataclass(frozen=True, slots=True)
class Expected:
    issuer: str
    audience: str
    leeway: timedelta = timedelta(seconds=60)


def bearer(header: str) -> str:
    """The token of an `Authorization: Bearer …` header, or SignatureInvalid."""
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise SignatureInvalid("Authorization: Bearer token missing")
    return token.strip()


def unverified_header(token: str) -> dict[str, Any]:
    """The token's header, checked before any key is looked for: an asymmetric `alg` and a `kid`."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as exc:
        raise SignatureInvalid("bearer token is not a JWT") from exc
    if header.get("alg") not in ALGORITHMS:
        raise SignatureInvalid("bearer token's algorithm is not accepted")
    if not isinstance(header.get("kid"), str) or not header["kid"]:
        raise SignatureInvalid("bearer token names no key (kid)")
    return header


class KeySet:
    """A platform's JWKS, fetched when needed and kept (see the module's note)."""

    def __init__(self, provider: str, url: str, http: aiohttp.ClientSession, clock: Callable[[], datetime]) -> None:
        self.provider = provider
        self.url = url
        self.http = http
        self.clock = clock
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at: datetime | None = None
        self._lock = asyncio.Lock()
        self.fetches = 0

    async def key(self, kid: str) -> jwt.PyJWK:
        now = self.clock()
        if kid in self._keys and self._fetched_at is not None and now - self._fetched_at < MAX_AGE:
            return self._keys[kid]
        async with self._lock:
            fetched = self._fetched_at
            due = fetched is None or now - fetched >= MAX_AGE or (kid not in self._keys
                                                                  and now - fetched >= REFETCH_COOLDOWN)
            if due:
                await self._refresh(now)
            elif kid not in self._keys:
                raise ProviderUnavailable(self.provider, "token names a key not held; keys are fetched again shortly",
                                          retry_after=REFETCH_COOLDOWN.total_seconds())
        if kid not in self._keys:
            raise SignatureInvalid("bearer token is signed with a key the platform does not publish")
        return self._keys[kid]

    async def _refresh(self, now: datetime) -> None:
        try:
            answer = await fetch_json(self.http, self.provider, "GET", self.url, what="the signing keys (JWKS)")
        except ProviderError as exc:
            if self._keys:  # the keys held still verify what they signed; a new kid waits for the endpoint
                log.warning("%s: could not fetch the JWKS, keeping the keys held: %s", self.provider, exc)
                return
            raise ProviderUnavailable(self.provider, f"signing keys unavailable: {exc}") from exc
        self.fetches += 1
        keys: dict[str, jwt.PyJWK] = {}
        for entry in answer.get("keys") or []:
            try:
                key = jwt.PyJWK.from_json(json.dumps(entry))
            except (jwt.PyJWTError, TypeError, ValueError) as exc:  # a key type we cannot use: skip it, say so
                log.warning("%s: JWKS entry skipped (%s)", self.provider, type(exc).__name__)
                continue
            if key.key_id:
                keys[key.key_id] = key
        if not keys and not self._keys:
            raise ProviderUnavailable(self.provider, "the JWKS holds no usable key")
        self._keys = keys or self._keys
        self._fetched_at = now


async def verified_claims(keys: KeySet, token: str, expected: Expected, now: datetime) -> dict[str, Any]:
    """The claims of a token signed by a key of `keys`, issued by and for whom `expected` says, valid at `now`;
    SignatureInvalid otherwise, ProviderUnavailable when the keys cannot be had."""
    header = unverified_header(token)
    key = await keys.key(header["kid"])
    try:
        claims: dict[str, Any] = jwt.decode(
            token, key=key.key, algorithms=[header["alg"]], audience=expected.audience, issuer=expected.issuer,
            options={"require": ["exp", "iss", "aud"], "verify_exp": False, "verify_nbf": False,
                     "verify_iat": False})  # times are checked below, against the injected clock
    except jwt.PyJWTError as exc:
        raise SignatureInvalid(f"bearer token refused: {type(exc).__name__}") from exc
    _check_times(claims, now, expected.leeway)
    return claims


def _check_times(claims: dict[str, Any], now: datetime, leeway: timedelta) -> None:
    stamp, slack = now.timestamp(), leeway.total_seconds()
    try:
        expires, not_before = float(claims["exp"]), float(claims.get("nbf", 0))
    except (TypeError, ValueError) as exc:
        raise SignatureInvalid("bearer token's exp or nbf is not a time") from exc
    if stamp > expires + slack:
        raise SignatureInvalid("bearer token has expired")
    if stamp < not_before - slack:
        raise SignatureInvalid("bearer token is not valid yet")


async def fetch_json(*args: Any, **kwargs: Any) -> dict[str, Any]:
    """`sources.common.fetch_json`, imported when first called: the sources package imports this module."""
    from bot.integrations.sources.common import fetch_json as fetch

    return await fetch(*args, **kwargs)
