"""Fake FreshBooks: the token endpoint (`/auth/oauth/token`, JSON body, rotating refresh tokens), `GET
/auth/api/v1/users/me`, the accounting API's payments (one, and listed with `search[updated_min]` and paging),
invoices and clients under `/accounting/account/{account_id}/…` in FreshBooks' `{"response": {"result": …}}`
envelope and its error envelope (`errno` 1012 for a missing object), and the callback verification
`PUT /events/account/{account_id}/events/callbacks/{callback_id}`."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from tests.fakes.base import FakeProvider
from tests.fakes.oauth_tokens import TokenEndpoint

CLIENT_ID, CLIENT_SECRET = "fb-client-id-0001", "fb-client-secret-fake"
ACCOUNT = "6BApk"
BUSINESS = 6543
CALLBACK_ID = "2209"
VERIFIER = "scADVVi5QuKuj5qTjVkbJNYQe7V7USpGd"


def unauthenticated() -> web.Response:
    return web.json_response({"error": "unauthenticated",
                              "error_description": "This action requires authentication to continue."}, status=401)


def missing(obj: str, field: str, value: str) -> web.Response:
    return web.json_response({"response": {"errors": [{
        "errno": 1012, "field": field, "message": f"The requested {obj} could not be found.", "object": obj,
        "value": value}]}}, status=404)


def rate_limited() -> web.Response:
    return web.json_response({"error": "rate_limited", "error_description": "Too Many Requests"}, status=429,
                             headers={"Retry-After": "20"})


def result(key: str, value: Any, **paging: Any) -> web.Response:
    return web.json_response({"response": {"result": {key: value, **paging}}})


class FakeFreshBooks(FakeProvider):
    def __init__(self, page_size: int = 100) -> None:
        super().__init__()
        self.tokens = TokenEndpoint(CLIENT_ID, CLIENT_SECRET, rotates=True, lifetime=43200)
        self.page_size = page_size
        self.payments: dict[str, dict[str, Any]] = {}
        self.invoices: dict[str, dict[str, Any]] = {}
        self.clients: dict[str, dict[str, Any]] = {}
        self.callbacks: dict[str, dict[str, Any]] = {CALLBACK_ID: {"callbackid": int(CALLBACK_ID),
                                                                   "event": "payment.create", "verified": False,
                                                                   "uri": "https://paybot.example.com/webhooks/freshbooks"}}
        self.verifiers: dict[str, str] = {CALLBACK_ID: VERIFIER}
        router = self.app.router
        router.add_post("/auth/oauth/token", self.tokens.handle)
        router.add_get("/auth/api/v1/users/me", self.me)
        base = "/accounting/account/{account}"
        router.add_get(base + "/payments/payments/{id}", self.get_payment)
        router.add_get(base + "/payments/payments", self.list_payments)
        router.add_get(base + "/invoices/invoices/{id}", self.get_invoice)
        router.add_get(base + "/users/clients/{id}", self.get_client)
        router.add_put("/events/account/{account}/events/callbacks/{id}", self.verify_callback)

    def refused(self, request: web.Request) -> web.Response | None:
        if not self.tokens.valid(request.headers.get("Authorization", "")):
            return unauthenticated()
        if request.match_info.get("account", ACCOUNT) != ACCOUNT:
            return web.json_response({"response": {"errors": [{"errno": 1003, "field": "account_id", "message":
                                      "The server could not verify that you are authorized to access the URL requested.",
                                      "object": "account", "value": request.match_info["account"]}]}}, status=403)
        return None

    async def me(self, request: web.Request) -> web.Response:
        if (refusal := self.refused(request)) is not None:
            return refusal
        return web.json_response({"response": {"id": 1234, "first_name": "Jo", "last_name": "Welder",
                                               "business_memberships": [{"id": 99, "role": "owner", "business": {
                                                   "id": BUSINESS, "name": "Weld Shop", "account_id": ACCOUNT}}]}})

    async def get_payment(self, request: web.Request) -> web.Response:
        if (refusal := self.refused(request)) is not None:
            return refusal
        found = self.payments.get(request.match_info["id"])
        return result("payment", found) if found else missing("payment", "paymentid", request.match_info["id"])

    async def list_payments(self, request: web.Request) -> web.Response:
        if (refusal := self.refused(request)) is not None:
            return refusal
        since = request.query.get("search[updated_min]", "")
        listed = sorted((p for p in self.payments.values() if p["updated"] >= since), key=lambda p: p["updated"])
        per_page = min(int(request.query.get("per_page", "15")), self.page_size)
        page = int(request.query.get("page", "1"))
        pages = max(1, -(-len(listed) // per_page))
        return result("payments", listed[(page - 1) * per_page:page * per_page], page=page, pages=pages,
                      per_page=per_page, total=len(listed))

    async def get_invoice(self, request: web.Request) -> web.Response:
        if (refusal := self.refused(request)) is not None:
            return refusal
        found = self.invoices.get(request.match_info["id"])
        return result("invoice", found) if found else missing("invoice", "invoiceid", request.match_info["id"])

    async def get_client(self, request: web.Request) -> web.Response:
        if (refusal := self.refused(request)) is not None:
            return refusal
        found = self.clients.get(request.match_info["id"])
        return result("client", found) if found else missing("client", "userid", request.match_info["id"])

    async def verify_callback(self, request: web.Request) -> web.Response:
        if (refusal := self.refused(request)) is not None:
            return refusal
        callback = self.callbacks.get(request.match_info["id"])
        if callback is None:
            return missing("callback", "callbackid", request.match_info["id"])
        sent = (json.loads(await request.read() or b"{}").get("callback") or {}).get("verifier")
        if sent != self.verifiers.get(request.match_info["id"]):
            return web.json_response({"response": {"errors": [{"errno": 2001, "field": "verifier", "message":
                                      "Invalid verifier.", "object": "callback", "value": ""}]}}, status=422)
        callback["verified"] = True
        return result("callback", callback)
