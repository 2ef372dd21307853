"""Fake Klaviyo: `POST /api/events` (JSON:API) and `GET /api/accounts`.

`Authorization: Klaviyo-API-Key pk_…` and a `revision` header are required; events answer 202 with an empty
body and `RateLimit-*` headers; errors are JSON:API `errors` lists. Events are de-duplicated as Klaviyo does: one
per profile, metric and `unique_id` (by default the event time to the second).
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

from aiohttp import web

from tests.fakes.base import FakeProvider

API_KEY = "pk_test_0123456789abcdef"
LIMIT_HEADERS = {"RateLimit-Limit": "350, 350;w=1, 3500;w=60", "RateLimit-Remaining": "349", "RateLimit-Reset": "1"}


def klaviyo_error(status: int, code: str, title: str, detail: str, pointer: str = "/data/", **headers: str) -> web.Response:
    body = {"errors": [{"id": str(uuid.uuid4()), "status": status, "code": code, "title": title, "detail": detail,
                        "source": {"pointer": pointer}, "links": {}, "meta": {}}]}
    return web.json_response(body, status=status, headers=headers, content_type="application/vnd.api+json")


def throttled(retry_after: int) -> web.Response:
    return klaviyo_error(429, "throttled", "Request was throttled.",
                         f"Request was throttled. Expected available in {retry_after} seconds.",
                         **{"Retry-After": str(retry_after)})


class FakeKlaviyo(FakeProvider):
    def __init__(self) -> None:
        super().__init__()
        self.events: list[dict[str, Any]] = []  # kept events (after de-duplication)
        self.app.router.add_post("/api/events", self.create_event)
        self.app.router.add_get("/api/accounts", self.accounts)

    def _refused(self, request: web.Request) -> web.Response | None:
        if request.headers.get("Authorization") != f"Klaviyo-API-Key {API_KEY}":
            return klaviyo_error(401, "not_authenticated", "Authentication credentials were not provided.",
                                 "Missing or invalid private key.")
        if not request.headers.get("revision"):
            return klaviyo_error(400, "invalid", "Invalid input.", "A revision header is required.")
        return None

    async def accounts(self, request: web.Request) -> web.Response:
        if (refused := self._refused(request)) is not None:
            return refused
        return web.json_response({"data": [{"type": "account", "id": "XyZ123", "attributes": {
            "contact_information": {"organization_name": "Weld Co"}}}]}, content_type="application/vnd.api+json")

    async def create_event(self, request: web.Request) -> web.Response:
        if (refused := self._refused(request)) is not None:
            return refused
        if not request.content_type == "application/vnd.api+json":
            return klaviyo_error(415, "unsupported_media_type", "Unsupported media type.",
                                 "Content-Type must be application/vnd.api+json")
        try:
            data = json.loads(await request.read())["data"]
            attributes = data["attributes"]
            metric = attributes["metric"]["data"]["attributes"]["name"]
            profile = attributes["profile"]["data"]["attributes"]
        except (ValueError, KeyError, TypeError):
            return klaviyo_error(400, "invalid", "Invalid input.", "The request body is not a valid event.")
        if data.get("type") != "event" or not any(profile.get(k) for k in ("id", "email", "phone_number")):
            return klaviyo_error(400, "invalid", "Invalid input.", "A profile identifier is required.",
                                 "/data/attributes/profile/data/attributes")
        when = datetime.fromisoformat(str(attributes.get("time")).replace("Z", "+00:00"))
        unique = attributes.get("unique_id") or when.replace(microsecond=0).isoformat()
        identity = (profile.get("email") or profile.get("phone_number"), metric, unique)
        if not any((e["_identity"] == identity) for e in self.events):
            self.events.append(attributes | {"_identity": identity})
        return web.Response(status=202, headers=LIMIT_HEADERS)
