"""Fake HubSpot: contacts batch upsert by email, the transactional single-send API and its send statuses.

Bearer private-app tokens; HubSpot's error body (`status`, `message`, `category`, `correlationId`, and
`policyName` on a 429); `X-HubSpot-RateLimit-*` headers on every answer. A send completes when its status is
first read: `SENT`, or `IDEMPOTENT_IGNORE` for a sendId already sent (one email per sendId, as HubSpot promises).
"""

from __future__ import annotations

import email.utils
import itertools
import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from tests.fakes.base import FakeProvider

TOKEN = "pat-na1-11111111-2222-3333-4444-555555555555"
EMAIL_ID = 123456789012
LIMIT_HEADERS = {"X-HubSpot-RateLimit-Max": "100", "X-HubSpot-RateLimit-Remaining": "99",
                 "X-HubSpot-RateLimit-Interval-Milliseconds": "10000", "X-HubSpot-RateLimit-Daily": "250000",
                 "X-HubSpot-RateLimit-Daily-Remaining": "249999"}


def hubspot_error(status: int, message: str, category: str, **extra: Any) -> web.Response:
    body = {"status": "error", "message": message, "correlationId": str(uuid.uuid4()), "category": category} | extra
    return web.json_response(body, status=status, headers=LIMIT_HEADERS)


def ten_secondly_limit() -> web.Response:
    return web.json_response({
        "status": "error", "message": "You have reached your ten_secondly_rolling limit.", "errorType": "RATE_LIMIT",
        "correlationId": str(uuid.uuid4()), "policyName": "TEN_SECONDLY_ROLLING", "requestId": str(uuid.uuid4())},
        status=429, headers=LIMIT_HEADERS | {"X-HubSpot-RateLimit-Remaining": "0"})


def daily_limit(at: datetime) -> web.Response:
    return web.json_response({
        "status": "error", "message": "You have reached your daily limit.", "errorType": "RATE_LIMIT",
        "correlationId": str(uuid.uuid4()), "policyName": "DAILY", "requestId": str(uuid.uuid4())},
        status=429, headers=LIMIT_HEADERS | {"X-HubSpot-RateLimit-Daily-Remaining": "0",
                                             "Date": email.utils.format_datetime(at, usegmt=True)})


class FakeHubSpot(FakeProvider):
    def __init__(self, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        super().__init__()
        self.clock = clock
        self.properties = {"email", "firstname", "lastname", "last_payment_invoice", "last_payment_amount",
                           "last_payment_at", "paybot_payment"}
        self.contacts: dict[str, dict[str, Any]] = {}  # by email
        self.sends: list[dict[str, Any]] = []           # every accepted single-send request
        self.emails_sent: list[dict[str, Any]] = []     # one per sendId: what a recipient receives
        self.statuses: dict[str, dict[str, Any]] = {}
        self._ids = itertools.count(501)
        self.lose_next_answer = False  # the next send is made, and its answer lost in a gateway timeout
        self.bounced: set[str] = set()  # addresses HubSpot will not send to (PREVIOUSLY_BOUNCED)
        self.app.router.add_post("/crm/v3/objects/contacts/batch/upsert", self.upsert)
        self.app.router.add_get("/crm/v3/objects/contacts", self.list_contacts)
        self.app.router.add_post("/marketing/v3/transactional/single-email/send", self.single_send)
        self.app.router.add_get("/marketing/v3/email/send-statuses/{status_id}", self.send_status)

    def _refused(self, request: web.Request) -> web.Response | None:
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return hubspot_error(401, "Authentication credentials not found. This API supports OAuth 2.0 "
                                      "authentication and you can find more details at "
                                      "https://developers.hubspot.com/docs/methods/auth/oauth-overview",
                                 "INVALID_AUTHENTICATION")
        return None

    def _ok(self, body: dict[str, Any], status: int = 200) -> web.Response:
        return web.json_response(body, status=status, headers=LIMIT_HEADERS)

    async def upsert(self, request: web.Request) -> web.Response:
        if (refused := self._refused(request)) is not None:
            return refused
        results = []
        for item in (json.loads(await request.read()).get("inputs") or []):
            if item.get("idProperty") != "email" or not item.get("id"):
                return hubspot_error(400, "idProperty email and an id are required", "VALIDATION_ERROR")
            unknown = sorted(set(item.get("properties") or {}) - self.properties)
            if unknown:
                return hubspot_error(400, f"Property values were not valid: Property \"{unknown[0]}\" does not exist",
                                     "VALIDATION_ERROR")
            now = self.clock().isoformat()
            contact = self.contacts.get(item["id"])
            new = contact is None
            if contact is None:
                contact = self.contacts[item["id"]] = {"id": str(next(self._ids)), "properties": {}, "createdAt": now}
            contact["properties"].update({k: str(v) for k, v in item["properties"].items()} | {"email": item["id"]})
            contact["updatedAt"] = now
            results.append({"id": contact["id"], "properties": contact["properties"], "createdAt": contact["createdAt"],
                            "updatedAt": now, "archived": False, "new": new})
        return self._ok({"status": "COMPLETE", "results": results, "startedAt": self.clock().isoformat(),
                         "completedAt": self.clock().isoformat()})

    async def list_contacts(self, request: web.Request) -> web.Response:
        if (refused := self._refused(request)) is not None:
            return refused
        return self._ok({"results": [{"id": c["id"], "properties": c["properties"]} for c in self.contacts.values()][:1]})

    async def single_send(self, request: web.Request) -> web.Response:
        if (refused := self._refused(request)) is not None:
            return refused
        body = json.loads(await request.read())
        if body.get("emailId") != EMAIL_ID:
            return hubspot_error(400, f"Email {body.get('emailId')} is not a transactional email saved for single "
                                      "send", "VALIDATION_ERROR")
        message = body.get("message") or {}
        if not message.get("to"):
            return hubspot_error(400, "message.to is required", "VALIDATION_ERROR")
        send_id = message.get("sendId")
        repeated = send_id is not None and any(s["message"].get("sendId") == send_id for s in self.sends)
        self.sends.append(body)
        if not repeated:
            self.emails_sent.append(body)
        status_id = str(uuid.uuid4())
        now = self.clock().isoformat()
        self.statuses[status_id] = {"statusId": status_id, "status": "PENDING", "requestedAt": now,
                                    "eventId": {"id": str(uuid.uuid4()), "created": now},
                                    "result": "IDEMPOTENT_IGNORE" if repeated else
                                    "PREVIOUSLY_BOUNCED" if message["to"] in self.bounced else "SENT"}
        if self.lose_next_answer:
            self.lose_next_answer = False
            return web.Response(status=504, text="<html><body><h1>504 Gateway Time-out</h1></body></html>",
                                content_type="text/html")
        return self._ok({k: v for k, v in self.statuses[status_id].items() if k != "result"})

    async def send_status(self, request: web.Request) -> web.Response:
        if (refused := self._refused(request)) is not None:
            return refused
        status = self.statuses.get(request.match_info["status_id"])
        if status is None:
            return hubspot_error(404, "Send status not found", "OBJECT_NOT_FOUND")
        now = self.clock().isoformat()
        status.update(status="COMPLETE", sendResult=status["result"], startedAt=now, completedAt=now)
        return self._ok({k: v for k, v in status.items() if k != "result"})
