"""Fake SendGrid v3: `POST /v3/mail/send` with Bearer auth, 202 + `X-Message-Id`, SendGrid's error envelope.

Opt-in faults (`FakeSendGrid(faults=Faults(...))`, used by benchmarks/soak.py): a seeded share of valid calls
answered 500, 429 with Retry-After, or not in time, either without taking the message ("hang") or after taking it
("late": accepted, then answered after the client gave up, the window in which a retry sends it twice).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from tests.fakes.base import FakeProvider

API_KEY = "SG.test-key"


def errors(status: int, message: str, field: str | None = None, **headers: str) -> web.Response:
    body = {"errors": [{"message": message, "field": field, "help": None}]}
    return web.json_response(body, status=status, headers=headers)


def too_many_requests(reset_epoch: int) -> web.Response:
    return errors(429, "too many requests", None, **{
        "X-RateLimit-Limit": "600", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(reset_epoch)})


FAULTS = ("500", "429", "hang", "late")


@dataclass(frozen=True)
class Faults:
    rate: float             # share of valid calls given one of FAULTS, drawn evenly
    seed: int
    hang_seconds: float     # how long "hang" and "late" keep the caller waiting: past its client timeout
    retry_after: int = 1    # the 429's Retry-After, seconds


@dataclass(frozen=True)
class Outcome:
    at: float               # time.monotonic() when the call arrived
    kind: str               # "accepted", or one of FAULTS ("late" is accepted too)
    mail: dict[str, Any]


class FakeSendGrid(FakeProvider):
    def __init__(self, faults: Faults | None = None) -> None:
        super().__init__()
        self._ids = itertools.count(1)
        self.accepted: list[dict[str, Any]] = []
        self.faults = faults
        self._draw = random.Random(faults.seed if faults else 0)
        self.outcomes: list[Outcome] = []  # every valid call, in arrival order (with faults only)
        self.scopes = ["mail.send", "user.profile.read"]  # what API_KEY was granted
        self.app.router.add_post("/v3/mail/send", self.mail_send)
        self.app.router.add_get("/v3/scopes", self.list_scopes)

    async def list_scopes(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {API_KEY}":
            return errors(401, "authorization required")
        return web.json_response({"scopes": self.scopes})

    async def mail_send(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {API_KEY}":
            return errors(401, "The provided authorization grant is invalid, expired, or revoked")
        if "mail.send" not in self.scopes:
            return errors(403, "access forbidden")
        try:
            mail = json.loads(await request.read())
        except ValueError:
            return errors(400, "Bad Request")
        if not (mail.get("from") or {}).get("email"):
            return errors(400, "The from object must be provided for every email send.", "from")
        personalizations = mail.get("personalizations") or []
        if not personalizations or not all(p.get("to") for p in personalizations):
            return errors(400, "The to array is required for all personalization objects", "personalizations.0.to")
        for p in personalizations:
            if any(not isinstance(v, str) for v in (p.get("custom_args") or {}).values()):
                return errors(400, "Bad Request", "personalizations.0.custom_args")
        if not mail.get("subject") and not all(p.get("subject") for p in personalizations):
            return errors(400, "The subject is required.", "subject")
        if not mail.get("content"):
            return errors(400, "Unless a valid template_id is provided, the content parameter is required.", "content")
        if self.faults is not None:
            return await self._faulty(mail)
        self.accepted.append(mail)
        return web.Response(status=202, headers={"X-Message-Id": f"sgmsg{next(self._ids):06d}"})

    async def _faulty(self, mail: dict[str, Any]) -> web.Response:
        assert self.faults is not None
        arrived = time.monotonic()
        kind = self._draw.choice(FAULTS) if self._draw.random() < self.faults.rate else "accepted"
        self.outcomes.append(Outcome(arrived, kind, mail))
        if kind in ("accepted", "late"):
            self.accepted.append(mail)
        if kind in ("hang", "late"):
            await asyncio.sleep(self.faults.hang_seconds)
        if kind == "500":
            return errors(500, "Internal Server Error")
        if kind == "hang":  # a gateway giving up on the application: not taken
            return errors(503, "Service Unavailable")
        if kind == "429":
            return errors(429, "too many requests", None, **{"Retry-After": str(self.faults.retry_after)})
        return web.Response(status=202, headers={"X-Message-Id": f"sgmsg{next(self._ids):06d}"})
