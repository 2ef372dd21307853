"""Fake Square API: `POST /v2/invoices/search` with Bearer auth, Square's error envelope
(`{"errors": [{"category", "code", "detail"}]}`), cursor pagination and scripted 429s."""

from __future__ import annotations

import base64
import json
from typing import Any

from aiohttp import web

from tests.fakes.base import FakeProvider

ACCESS_TOKEN = "EAAAl-paybot-fake-sandbox-token"


def square_error(status: int, category: str, code: str, detail: str, *, field: str | None = None,
                 **headers: str) -> web.Response:
    error = {"category": category, "code": code, "detail": detail} | ({"field": field} if field else {})
    return web.json_response({"errors": [error]}, status=status, headers=headers)


def rate_limited() -> web.Response:
    return square_error(429, "RATE_LIMIT_ERROR", "RATE_LIMITED", "Rate limit exceeded. Please try again later.")


def unauthorized() -> web.Response:
    return square_error(401, "AUTHENTICATION_ERROR", "UNAUTHORIZED", "This request could not be authorized.")


def not_found(detail: str) -> web.Response:
    return square_error(404, "INVALID_REQUEST_ERROR", "NOT_FOUND", detail)


class FakeSquare(FakeProvider):
    def __init__(self, page_size: int = 200) -> None:
        super().__init__()
        self.invoices: list[dict[str, Any]] = []
        self.page_size = page_size  # Square's own cap is 200; smaller pages exercise the cursor
        self.app.router.add_post("/v2/invoices/search", self.search_invoices)
        self.app.router.add_get("/v2/locations", self.list_locations)

    async def list_locations(self, request: web.Request) -> web.Response:
        if (refusal := self.refused(request)) is not None:
            return refusal
        return web.json_response({"locations": [{"id": "L0WELDSHOP", "name": "Weld Shop", "status": "ACTIVE"}]})

    @staticmethod
    def refused(request: web.Request) -> web.Response | None:
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("Bearer ") or auth.removeprefix("Bearer ") != ACCESS_TOKEN:
            return unauthorized()
        return None

    async def search_invoices(self, request: web.Request) -> web.Response:
        if (refusal := self.refused(request)) is not None:
            return refusal
        try:
            args = json.loads(await request.read())
            query = args["query"]
            locations = query["filter"]["location_ids"]
        except (ValueError, KeyError, TypeError):
            return square_error(400, "INVALID_REQUEST_ERROR", "MISSING_REQUIRED_PARAMETER",
                                "Field must be set", field="query.filter.location_ids")
        customers = query["filter"].get("customer_ids") or []
        if len(locations) != 1 or len(customers) > 1:
            return square_error(400, "INVALID_REQUEST_ERROR", "INVALID_ARRAY_LENGTH",
                                "Only one location and at most one customer may be searched",
                                field="query.filter.location_ids" if len(locations) != 1 else "query.filter.customer_ids")
        found = [i for i in self.invoices if i.get("location_id") == locations[0]
                 and (not customers or (i.get("primary_recipient") or {}).get("customer_id") == customers[0])]
        descending = (query.get("sort") or {}).get("order", "DESC") == "DESC"
        found.sort(key=lambda i: i.get("scheduled_at") or i.get("created_at") or "", reverse=descending)
        start = int(base64.b64decode(args["cursor"])) if args.get("cursor") else 0
        end = start + min(int(args.get("limit", 100)), 200, self.page_size)
        page: dict[str, Any] = {"invoices": found[start:end]} if found[start:end] else {}
        if end < len(found):
            page["cursor"] = base64.b64encode(str(end).encode()).decode()
        return web.json_response(page)
