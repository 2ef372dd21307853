"""Fake Mailgun: `POST /v3/{domain}/messages` (multipart form, Basic `api:<key>`), 200 `{"id", "message"}`,
Mailgun's `{"message": …}` errors (and its plain-text 401), `GET /v3/domains/{domain}`; and its signed events."""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import secrets
from email.parser import BytesParser
from email.policy import HTTP
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

from tests.fakes.base import FakeProvider

API_KEY = "key-0123456789abcdef0123456789abcdef"
DOMAIN = "mg.weld.example"
SIGNING_KEY = "mailgun-webhook-signing-key-0123456789"


def message(status: int, text: str, **headers: str) -> web.Response:
    return web.json_response({"message": text}, status=status, headers=headers)


def too_many_requests(retry_after: int) -> web.Response:
    return message(429, "Too many requests", **{"Retry-After": str(retry_after)})


class FakeMailgun(FakeProvider):
    def __init__(self, domain: str = DOMAIN, clock: Callable[[], datetime] | None = None) -> None:
        super().__init__()
        self.domain = domain
        self.state = "active"
        self._ids = itertools.count(1)
        self.accepted: list[dict[str, Any]] = []  # each a field → list of values
        self.app.router.add_post("/v3/{domain}/messages", self.messages)
        self.app.router.add_get("/v3/domains/{domain}", self.domain_info)
        self.app.router.add_get("/v3/{domain}/events", self.events)
        self.accepted_at: list[float] = []  # when each accepted message entered the event log (epoch seconds)
        self.clock = clock
        self.lose_answers = 0  # how many accepted messages are answered 500 all the same

    def _authorized(self, request: web.Request) -> bool:
        return request.headers.get("Authorization") == "Basic " + base64.b64encode(f"api:{API_KEY}".encode()).decode()

    async def domain_info(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return web.Response(status=401, text="Forbidden")
        if request.match_info["domain"] != self.domain:
            return message(404, "Domain not found")
        return web.json_response({"domain": {"name": self.domain, "state": self.state, "type": "custom"},
                                  "receiving_dns_records": [], "sending_dns_records": []})

    async def messages(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return web.Response(status=401, text="Forbidden")
        if request.match_info["domain"] != self.domain:
            return message(404, "Domain not found")
        fields = form_fields(request.headers.get("Content-Type", ""), await request.read())
        if not fields.get("from"):
            return message(400, "from parameter is missing")
        if not fields.get("to"):
            return message(400, "to parameter is missing")
        if "@" not in fields["to"][0]:
            return message(400, "to parameter is not a valid address. please check documentation")
        if not any(fields.get(part) for part in ("text", "html", "template")):
            return message(400, "Need at least one of 'text', 'html' or 'template' parameters specified")
        msg_id = f"<20261128120000.{next(self._ids):06d}@{self.domain}>"
        self.accepted.append(fields | {"id": [msg_id]})
        self.accepted_at.append(self.clock().timestamp() if self.clock else datetime.now(UTC).timestamp())
        if self.lose_answers:  # taken, but the answer never makes it back
            self.lose_answers -= 1
            return web.Response(status=500, text="Internal Server Error")
        return web.json_response({"id": msg_id, "message": "Queued. Thank you."})

    async def events(self, request: web.Request) -> web.Response:
        """The event log's `accepted` events, oldest first, 2 a page to exercise paging; an empty page ends it."""
        if not self._authorized(request):
            return web.Response(status=401, text="Forbidden")
        begin = float(request.query.get("begin", "0"))
        skip = int(request.query.get("page", "0"))
        found = [event("accepted", sent, int(at), **{"log-level": "info"})
                 for sent, at in zip(self.accepted, self.accepted_at)
                 if at >= begin and request.query.get("recipient") in (None, sent["to"][0])
                 and request.query.get("event") in (None, "accepted")]
        page = found[skip:skip + 2]
        query = dict(request.query) | {"page": str(skip + 2)}
        next_url = str(request.url.with_query(query))
        return web.json_response({"items": page, "paging": {"next": next_url, "previous": next_url,
                                                            "first": next_url, "last": next_url}})


def form_fields(content_type: str, body: bytes) -> dict[str, list[str]]:
    """The fields of a multipart/form-data or urlencoded body (the recorder has read the stream already)."""
    fields: dict[str, list[str]] = {}
    if content_type.startswith("multipart/form-data"):
        parsed = BytesParser(policy=HTTP).parsebytes(f"Content-Type: {content_type}\r\n\r\n".encode() + body)
        pairs = [(str(part.get_param("name", header="content-disposition")), part.get_content())
                 for part in parsed.iter_parts()]
    else:
        pairs = parse_qsl(body.decode(), keep_blank_values=True)
    for name, value in pairs:
        fields.setdefault(name, []).append(str(value).replace("\r\n", "\n"))
    return fields


class EventSigner:
    def __init__(self, key: str = SIGNING_KEY) -> None:
        self.key = key

    def signature(self, timestamp: int, token: str | None = None) -> dict[str, str]:
        token = token or secrets.token_hex(25)  # 50 characters, as Mailgun's
        digest = hmac.new(self.key.encode(), f"{timestamp}{token}".encode(), hashlib.sha256).hexdigest()
        return {"timestamp": str(timestamp), "token": token, "signature": digest}

    def body(self, event_data: dict[str, Any], timestamp: int, token: str | None = None) -> bytes:
        return json.dumps({"signature": self.signature(timestamp, token), "event-data": event_data}).encode()


def event(kind: str, sent: dict[str, Any], timestamp: int, **extra: Any) -> dict[str, Any]:
    """An event about a message the fake accepted, as Mailgun posts it: `v:` fields in `user-variables`."""
    variables = {name[2:]: values[0] for name, values in sent.items() if name.startswith("v:")}
    return {"event": kind, "timestamp": timestamp + 0.123456, "id": f"ev-{kind}-{timestamp}",
            "log-level": "error" if kind == "failed" else "info", "recipient": sent["to"][0],
            "tags": sent.get("o:tag", []),
            "message": {"headers": {"message-id": sent["id"][0].strip("<>"), "to": sent["to"][0],
                                    "from": sent["from"][0], "subject": sent["subject"][0]}},
            "user-variables": variables, **extra}


def bounce(sent: dict[str, Any], timestamp: int, severity: str = "permanent") -> dict[str, Any]:
    permanent = severity == "permanent"
    return event("failed", sent, timestamp, severity=severity, reason="bounce" if permanent else "generic",
                 **{"delivery-status": {"code": 550 if severity == "permanent" else 421,
                                        "message": "5.1.1 The email account that you tried to reach does not exist"
                                        if severity == "permanent" else "4.4.2 Connection timed out",
                                        "description": ""}})
