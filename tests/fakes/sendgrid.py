"""Fake SendGrid v3: `POST /v3/mail/send` with Bearer auth, 202 + `X-Message-Id`, SendGrid's error envelope."""

from __future__ import annotations

import itertools
import json
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


class FakeSendGrid(FakeProvider):
    def __init__(self) -> None:
        super().__init__()
        self._ids = itertools.count(1)
        self.accepted: list[dict[str, Any]] = []
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
        self.accepted.append(mail)
        return web.Response(status=202, headers={"X-Message-Id": f"sgmsg{next(self._ids):06d}"})
