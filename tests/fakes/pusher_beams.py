"""Fake Pusher Beams publish API: `POST /publish_api/v1/instances/{id}/publishes/users` (Bearer secret key),
200 `{"publishId"}`, Beams' `{"error", "description"}` errors, 429 + Retry-After when scripted."""

from __future__ import annotations

import itertools
import json
from typing import Any

from aiohttp import web

from tests.fakes.base import FakeProvider

INSTANCE_ID = "8f9a6e22-2483-49aa-8552-125f1a4c5781"
SECRET_KEY = "C3F8B0C1A4D1E7F2A3B4C5D6E7F8A9B0"
PUBLISH = f"/publish_api/v1/instances/{INSTANCE_ID}/publishes/users"


def error(status: int, name: str, description: str, **headers: str) -> web.Response:
    return web.json_response({"error": name, "description": description}, status=status, headers=headers)


def too_many_requests(retry_after: int) -> web.Response:
    return error(429, "Too Many Requests", "Rate limit exceeded", **{"Retry-After": str(retry_after)})


class FakePusherBeams(FakeProvider):
    def __init__(self) -> None:
        super().__init__()
        self._ids = itertools.count(1)
        self.published: list[dict[str, Any]] = []
        self.app.router.add_post("/publish_api/v1/instances/{instance}/publishes/users", self.publish)

    async def publish(self, request: web.Request) -> web.Response:
        if request.match_info["instance"] != INSTANCE_ID:
            return error(404, "Instance not found", "Could not find the instance")
        if request.headers.get("Authorization") != f"Bearer {SECRET_KEY}":
            return error(401, "Unauthorized", "Invalid secret key")
        try:
            body = json.loads(await request.read())
        except ValueError:
            return error(400, "Invalid request", "Request body must be valid JSON")
        users = body.get("users")
        if not isinstance(users, list) or not 1 <= len(users) <= 1000:
            return error(400, "Invalid request", "users must contain between 1 and 1000 user ids")
        if any(not isinstance(u, str) or not u or len(u) > 164 for u in users):
            return error(400, "Invalid request", "User ids must be strings of at most 164 characters")
        if not any(platform in body for platform in ("apns", "fcm", "web")):
            return error(400, "Invalid request", "Publish must contain at least one of apns, fcm or web")
        self.published.append(body)
        return web.json_response({"publishId": f"pubid-{next(self._ids):04d}"})
