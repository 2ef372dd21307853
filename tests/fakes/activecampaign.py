"""Fake ActiveCampaign API v3 under `/api/3`: contact sync, tags, contact tags, deals, `users/me`.

`Api-Token` header; 5 requests a second per account (a token bucket on the clock it is given: the test's), past it 429 with
`Retry-After`; `RateLimit-*` headers; 422 `errors` lists and 404 `{"message": "No Result found for …"}` as
ActiveCampaign words them. `drop_next(path)` makes the next request to that path vanish after it is read (the
connection closes without an answer): the ambiguous failure of a request that may have been applied.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from bot.domain.ratelimit import TokenBucket
from tests.fakes.base import FakeProvider

TOKEN = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef01234567"
ROOT = "/api/3"
FIELD_ID = "12"
PER_SECOND = 5


def not_found(what: str) -> web.Response:
    return web.json_response({"message": f"No Result found for {what}"}, status=404)


def unprocessable(title: str, code: str, pointer: str) -> web.Response:
    return web.json_response({"errors": [{"title": title, "detail": "", "code": code,
                                          "source": {"pointer": pointer}}]}, status=422)


def too_many(retry_after: int) -> web.Response:
    return web.json_response({"message": "Too Many Requests"}, status=429, headers={
        "Retry-After": str(retry_after), "RateLimit-Limit": str(PER_SECOND), "RateLimit-Remaining": "0"})


class FakeActiveCampaign(FakeProvider):
    def __init__(self, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        super().__init__()
        self.clock = clock
        self.contacts: dict[str, dict[str, Any]] = {}      # by id
        self.tags: dict[str, dict[str, Any]] = {}
        self.contact_tags: list[dict[str, Any]] = []
        self.deals: dict[str, dict[str, Any]] = {}
        self._ids = itertools.count(1)
        self._bucket: TokenBucket | None = None
        self._drop: set[str] = set()
        self.app.middlewares.append(self._gate)
        add = self.app.router
        add.add_post(f"{ROOT}/contact/sync", self.sync)
        add.add_get(f"{ROOT}/tags", self.list_tags)
        add.add_post(f"{ROOT}/tags", self.create_tag)
        add.add_post(f"{ROOT}/contactTags", self.tag_contact)
        add.add_get(f"{ROOT}/deals", self.list_deals)
        add.add_put(f"{ROOT}/deals/{{id}}", self.update_deal)
        add.add_get(f"{ROOT}/users/me", self.me)

    def drop_next(self, path: str) -> None:
        self._drop.add(path)

    def add_deal(self, contact: str, stage: str, value: int = 0) -> dict[str, Any]:
        deal_id = str(next(self._ids))
        deal = self.deals[deal_id] = {"id": deal_id, "contact": contact, "stage": stage, "status": "0",
                                      "value": str(value), "currency": "usd", "group": "1"}
        return deal

    def contact_by_email(self, email: str) -> dict[str, Any] | None:
        return next((c for c in self.contacts.values() if c["email"] == email), None)

    @web.middleware
    async def _gate(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if request.headers.get("Api-Token") != TOKEN:
            return web.json_response({"message": "Forbidden"}, status=403)
        if self._bucket is None:
            self._bucket = TokenBucket.full(PER_SECOND, PER_SECOND, self.clock())
        if not self._bucket.take(self.clock()):
            return too_many(1)
        response = await handler(request)
        if request.path in self._drop:  # applied, and then the answer never arrives
            self._drop.discard(request.path)
            assert request.transport is not None
            request.transport.close()
        response.headers.update({"RateLimit-Limit": str(PER_SECOND),
                                 "RateLimit-Remaining": str(int(self._bucket.tokens))})
        return response

    async def sync(self, request: web.Request) -> web.Response:
        body = (json.loads(await request.read()).get("contact") or {})
        if not body.get("email"):
            return unprocessable("Email can't be blank", "field_missing", "/data/attributes/email")
        for value in body.get("fieldValues") or []:
            if str(value.get("field")) != FIELD_ID:
                return unprocessable(f"Field {value.get('field')} does not exist", "field_invalid",
                                     "/data/attributes/fieldValues")
        contact = self.contact_by_email(body["email"])
        created = contact is None
        if contact is None:
            contact_id = str(next(self._ids))
            contact = self.contacts[contact_id] = {"id": contact_id, "email": body["email"], "fields": {}}
        if body.get("phone"):
            contact["phone"] = body["phone"]
        for value in body.get("fieldValues") or []:
            contact["fields"][str(value["field"])] = value["value"]
        field_values = [{"contact": contact["id"], "field": k, "value": v} for k, v in contact["fields"].items()]
        return web.json_response({"fieldValues": field_values, "contact": {
            "email": contact["email"], "id": contact["id"], "cdate": self.clock().isoformat()}},
            status=201 if created else 200)

    async def list_tags(self, request: web.Request) -> web.Response:
        search = request.query.get("search", "").lower()
        found = [t for t in self.tags.values() if search in t["tag"].lower()]
        return web.json_response({"tags": found, "meta": {"total": str(len(found))}})

    async def create_tag(self, request: web.Request) -> web.Response:
        tag = json.loads(await request.read()).get("tag") or {}
        if any(t["tag"].lower() == str(tag.get("tag", "")).lower() for t in self.tags.values()):
            return unprocessable("The tag name already exists", "duplicate", "/data/attributes/tag")
        tag_id = str(next(self._ids))
        self.tags[tag_id] = {"id": tag_id, "tag": tag.get("tag"), "tagType": tag.get("tagType"),
                             "description": tag.get("description", "")}
        return web.json_response({"tag": self.tags[tag_id]}, status=201)

    async def tag_contact(self, request: web.Request) -> web.Response:
        link = json.loads(await request.read()).get("contactTag") or {}
        if str(link.get("contact")) not in self.contacts:
            return not_found(f"Subscriber with id {link.get('contact')}")
        if str(link.get("tag")) not in self.tags:
            return not_found(f"Tag with id {link.get('tag')}")
        existing = next((t for t in self.contact_tags
                         if (t["contact"], t["tag"]) == (str(link["contact"]), str(link["tag"]))), None)
        if existing is None:
            existing = {"contact": str(link["contact"]), "tag": str(link["tag"]), "id": str(next(self._ids))}
            self.contact_tags.append(existing)
        return web.json_response({"contactTag": existing}, status=201)

    async def list_deals(self, request: web.Request) -> web.Response:
        q = request.query
        found = [d for d in self.deals.values()
                 if d["contact"] == q.get("filters[contact]", d["contact"]) and d["stage"] == q.get(
                     "filters[stage]", d["stage"]) and d["status"] == q.get("filters[status]", d["status"])]
        return web.json_response({"deals": found, "meta": {"total": str(len(found))}})

    async def update_deal(self, request: web.Request) -> web.Response:
        deal = self.deals.get(request.match_info["id"])
        if deal is None:
            return not_found(f"Deal with id {request.match_info['id']}")
        change = json.loads(await request.read()).get("deal") or {}
        if not isinstance(change.get("value", 0), int) or change.get("status") not in (None, 0, 1, 2):
            return unprocessable("Value must be an integer number of cents", "invalid", "/data/attributes/value")
        deal.update({k: str(v) for k, v in change.items()})
        return web.json_response({"deal": deal})

    async def me(self, request: web.Request) -> web.Response:
        return web.json_response({"user": {"username": "admin", "email": "ops@weld.example", "id": "1"}})
