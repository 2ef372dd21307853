"""Fake Intercom: contacts (search, create, update), data events, and `/me`.

Bearer tokens; the `error.list` envelope; `X-RateLimit-*` headers (the reset an epoch second). Custom attributes
must exist as data attributes first; events are de-duplicated on (contact, event_name, created_at) and still
answered 202; metadata past ten keys is dropped silently, as Intercom does.
"""

from __future__ import annotations

import itertools
import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from tests.fakes.base import FakeProvider

TOKEN = "dG9rOmludGVyY29tLXRlc3Q="
ATTRIBUTES = {"last_payment_invoice", "last_payment_amount", "last_payment_at"}


def intercom_error(status: int, code: str, message: str, **headers: str) -> web.Response:
    return web.json_response({"type": "error.list", "request_id": str(uuid.uuid4()),
                              "errors": [{"code": code, "message": message}]}, status=status, headers=headers)


def rate_limited(reset_epoch: int) -> web.Response:
    return intercom_error(429, "rate_limit_exceeded", "Exceeded rate limit of 1666 in 10_seconds", **{
        "X-RateLimit-Limit": "1666", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(reset_epoch)})


class FakeIntercom(FakeProvider):
    def __init__(self, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        super().__init__()
        self.clock = clock
        self.contacts: dict[str, dict[str, Any]] = {}
        self.events: list[dict[str, Any]] = []  # kept events, after de-duplication
        self._ids = itertools.count(1)
        self.app.router.add_get("/me", self.me)
        self.app.router.add_post("/contacts/search", self.search)
        self.app.router.add_post("/contacts", self.create)
        self.app.router.add_put("/contacts/{id}", self.update)
        self.app.router.add_post("/events", self.event)

    def _headers(self) -> dict[str, str]:
        return {"X-RateLimit-Limit": "1666", "X-RateLimit-Remaining": "1665",
                "X-RateLimit-Reset": str(int(self.clock().timestamp()) + 10)}

    def _ok(self, body: dict[str, Any] | None, status: int = 200) -> web.Response:
        if body is None:
            return web.Response(status=status, headers=self._headers())
        return web.json_response(body, status=status, headers=self._headers())

    def _refused(self, request: web.Request) -> web.Response | None:
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return intercom_error(401, "unauthorized", "Access Token Invalid")
        return None

    def add_contact(self, email: str, external_id: str | None = None, role: str = "user") -> dict[str, Any]:
        contact_id = f"6{next(self._ids):023x}"
        contact = self.contacts[contact_id] = {"type": "contact", "id": contact_id, "role": role, "email": email,
                                               "external_id": external_id, "custom_attributes": {}}
        return contact

    async def me(self, request: web.Request) -> web.Response:
        if (refused := self._refused(request)) is not None:
            return refused
        return self._ok({"type": "admin", "id": "991", "email": "ops@weld.example", "name": "Ops",
                         "app": {"type": "app", "id_code": "abc123de", "name": "Weld Co", "region": "US"}})

    def _matches(self, contact: dict[str, Any], condition: dict[str, Any]) -> bool:
        if "value" in condition and isinstance(condition["value"], list):  # a nested AND/OR
            results = [self._matches(contact, c) for c in condition["value"]]
            return any(results) if condition.get("operator") == "OR" else all(results)
        return condition.get("operator") == "=" and contact.get(condition.get("field", "")) == condition["value"]

    async def search(self, request: web.Request) -> web.Response:
        if (refused := self._refused(request)) is not None:
            return refused
        query = json.loads(await request.read()).get("query")
        if not isinstance(query, dict):
            return intercom_error(400, "parameter_invalid", "query is required")
        found = [c for c in self.contacts.values() if self._matches(c, query)]
        return self._ok({"type": "list", "data": found, "total_count": len(found),
                         "pages": {"type": "pages", "page": 1, "per_page": 50, "total_pages": 1}})

    async def create(self, request: web.Request) -> web.Response:
        if (refused := self._refused(request)) is not None:
            return refused
        body = json.loads(await request.read())
        for contact in self.contacts.values():
            if body.get("external_id") and contact.get("external_id") == body["external_id"]:
                return intercom_error(409, "conflict", f"A contact matching those details already exists with "
                                                       f"id={contact['id']}")
        contact = self.add_contact(body.get("email"), body.get("external_id"), body.get("role", "user"))
        contact["name"] = body.get("name")
        return self._ok(contact)

    async def update(self, request: web.Request) -> web.Response:
        if (refused := self._refused(request)) is not None:
            return refused
        contact = self.contacts.get(request.match_info["id"])
        if contact is None:
            return intercom_error(404, "not_found", "Contact Not Found")
        attributes = json.loads(await request.read()).get("custom_attributes") or {}
        unknown = sorted(set(attributes) - ATTRIBUTES)
        if unknown:
            return intercom_error(400, "parameter_invalid", f"Custom attribute '{unknown[0]}' does not exist")
        contact["custom_attributes"].update(attributes)
        return self._ok(contact)

    async def event(self, request: web.Request) -> web.Response:
        if (refused := self._refused(request)) is not None:
            return refused
        body = json.loads(await request.read())
        if not body.get("event_name") or not isinstance(body.get("created_at"), int):
            return intercom_error(400, "parameter_invalid", "event_name and created_at are required")
        contact = self.contacts.get(str(body.get("id"))) or next(
            (c for c in self.contacts.values() if body.get("user_id") and c.get("external_id") == body["user_id"]),
            None)
        if contact is None:
            return intercom_error(404, "not_found", "User Not Found")
        metadata = dict(list((body.get("metadata") or {}).items())[:10])
        identity = (contact["id"], body["event_name"], body["created_at"])
        if not any(e["_identity"] == identity for e in self.events):
            self.events.append(body | {"metadata": metadata, "_identity": identity})
        return self._ok(None, status=202)
