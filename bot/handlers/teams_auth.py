"""The Bot Framework's inbound authentication: every activity's `Authorization: Bearer <JWT>` checked against the
OpenID metadata at TEAMS_OPENID_METADATA_URL (production: login.botframework.com).

Checked: the RS256 signature with a key from the metadata's `jwks_uri` (a key listing `endorsements` must endorse
the activity's channel), the issuer the metadata names, the audience (TEAMS_APP_ID), expiry and not-before on
paybot's clock (five minutes' leeway, as the Bot Framework allows), and the `serviceurl` claim against the
activity's `serviceUrl` (a token issued for one service URL cannot steer replies to another).

PyJWT does the cryptography. The Agents SDK's own validator (`microsoft_agents.hosting.core` JwtTokenValidator)
derives its key URLs from built-in constants and the token's issuer and fetches them with a blocking client, so it
cannot be pointed at a test's keys; this module follows its checks against the configured metadata instead.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import aiohttp
import jwt
from jwt import PyJWK

from bot.storage.database import Clock

log = logging.getLogger(__name__)

LEEWAY = timedelta(minutes=5)
KEYS_FOR = timedelta(hours=24)             # the metadata and keys are re-read after a day
UNKNOWN_KEY_REFRESH = timedelta(minutes=5)  # a token naming an unknown key re-reads them, at most this often
ALGORITHMS = ("RS256",)


class Unauthenticated(Exception):
    """Why a token was refused (logged; the caller answers 401 without a reason)."""


@dataclass
class _Keys:
    issuer: str
    keys: dict[str, tuple[PyJWK, list[str] | None]]  # kid → key, endorsements (channels it may sign for)
    fetched_at: datetime


@dataclass
class BotFrameworkAuth:
    app_id: str
    metadata_url: str
    http: aiohttp.ClientSession
    clock: Clock
    _keys: _Keys | None = None
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def validate(self, authorization: str | None, channel_id: str | None) -> dict[str, Any]:
        """The token's claims, or Unauthenticated. `channel_id` is the activity's (e.g. `msteams`; None when the
        body is not an activity, which is then refused with 400 whatever the token)."""
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthenticated("no Bearer token")
        try:
            header = jwt.get_unverified_header(token.strip())
        except jwt.PyJWTError as exc:
            raise Unauthenticated(f"not a JWT: {exc}") from None
        if header.get("alg") not in ALGORITHMS:
            raise Unauthenticated(f"algorithm {header.get('alg')!r} not accepted")
        keys = await self._current(str(header.get("kid") or ""))
        found = keys.keys.get(str(header.get("kid") or ""))
        if found is None:
            raise Unauthenticated("signed by a key the metadata does not list")
        key, endorsements = found
        if endorsements is not None and channel_id is not None and channel_id not in endorsements:
            raise Unauthenticated(f"the key is not endorsed for channel {channel_id!r}")
        try:  # expiry is checked below, on paybot's clock
            claims: dict[str, Any] = jwt.decode(
                token.strip(), key=key, algorithms=list(ALGORITHMS), audience=self.app_id, issuer=keys.issuer,
                options={"verify_exp": False, "verify_nbf": False, "verify_iat": False,
                         "require": ["exp", "aud", "iss"]})
        except jwt.PyJWTError as exc:
            raise Unauthenticated(str(exc)) from None
        now = self.clock().timestamp()
        if not isinstance(claims["exp"], (int, float)) or claims["exp"] + LEEWAY.total_seconds() < now:
            raise Unauthenticated("token expired")
        nbf = claims.get("nbf")
        if isinstance(nbf, (int, float)) and nbf - LEEWAY.total_seconds() > now:
            raise Unauthenticated("token not valid yet")
        return claims

    async def _current(self, kid: str) -> _Keys:
        async with self._lock:
            now = self.clock()
            stale = self._keys is None or now - self._keys.fetched_at >= KEYS_FOR
            unknown = self._keys is not None and kid not in self._keys.keys and \
                now - self._keys.fetched_at >= UNKNOWN_KEY_REFRESH  # keys rotate: look again, not on every request
            if stale or unknown:
                try:
                    self._keys = await self._fetch(now)
                except (aiohttp.ClientError, TimeoutError, ValueError, KeyError, TypeError) as exc:
                    log.warning("could not read the Bot Framework keys from %s: %s", self.metadata_url, exc)
                    if self._keys is None:
                        raise Unauthenticated("signing keys unavailable") from None
            assert self._keys is not None
            return self._keys

    async def _fetch(self, now: datetime) -> _Keys:
        metadata = await self._json(self.metadata_url)
        jwks = await self._json(str(metadata["jwks_uri"]))
        keys: dict[str, tuple[PyJWK, list[str] | None]] = {}
        for entry in jwks.get("keys") or []:
            try:
                key = PyJWK(entry, algorithm="RS256")
            except (jwt.PyJWTError, ValueError, TypeError):
                continue
            endorsements = entry.get("endorsements")
            keys[str(entry.get("kid"))] = (key, list(endorsements) if isinstance(endorsements, list) else None)
        return _Keys(str(metadata["issuer"]), keys, now)

    async def _json(self, url: str) -> dict[str, Any]:
        async with self.http.get(url, timeout=aiohttp.ClientTimeout(total=10)) as resp:
            if resp.status != 200:
                raise ValueError(f"{url} answered {resp.status}")
            answer = json.loads(await resp.read())
        if not isinstance(answer, dict):
            raise ValueError(f"{url} did not answer a JSON object")
        return answer
