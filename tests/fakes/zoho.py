"""Fake Zoho Books: the accounts server's token endpoint (`/oauth/v2/token`, parameters in the query or the form;
Zoho does not rotate refresh tokens), and the Books API v3 with `Authorization: Zoho-oauthtoken …` and the
`organization_id` parameter: organizations, one customer payment, and payments listed newest-modified first with
`page_context.has_more_page`. Errors in Zoho's envelope, `{"code": <non-zero>, "message": …}`."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from tests.fakes.base import FakeProvider
from tests.fakes.oauth_tokens import TokenEndpoint

CLIENT_ID, CLIENT_SECRET = "1000.ZOHOFAKECLIENT", "zoho-client-secret-fake"
ORGANIZATION = "10234695"
OTHER_ORGANIZATION = "60000001"


def zoho_error(status: int, code: int, message: str, **headers: str) -> web.Response:
    return web.json_response({"code": code, "message": message}, status=status, headers=headers)


def not_authorized() -> web.Response:
    return zoho_error(401, 57, "You are not authorized to perform this operation")


def rate_limited() -> web.Response:
    return zoho_error(429, 44, "You have made too many requests continuously. Please try again after some time.",
                      **{"Retry-After": "60"})


class FakeZohoBooks(FakeProvider):
    def __init__(self, page_size: int = 200) -> None:
        super().__init__()
        self.tokens = TokenEndpoint(CLIENT_ID, CLIENT_SECRET, rotates=False, lifetime=3600)
        self.page_size = page_size
        self.organizations = {ORGANIZATION: "Weld Shop"}
        self.payments: dict[str, dict[str, Any]] = {}
        router = self.app.router
        router.add_post("/oauth/v2/token", self.tokens.handle)
        router.add_get("/books/v3/organizations", self.list_organizations)
        router.add_get("/books/v3/customerpayments/{id}", self.get_payment)
        router.add_get("/books/v3/customerpayments", self.list_payments)

    def refused(self, request: web.Request, *, organization: bool = True) -> web.Response | None:
        if not self.tokens.valid(request.headers.get("Authorization", ""), scheme="Zoho-oauthtoken"):
            return not_authorized()
        if organization and request.query.get("organization_id") not in self.organizations:
            return zoho_error(400, 6041, "This user is not associated with the CompanyID/CompanyName:"
                              f"{request.query.get('organization_id')}.")
        return None

    async def list_organizations(self, request: web.Request) -> web.Response:
        if (refusal := self.refused(request, organization=False)) is not None:
            return refusal
        return web.json_response({"code": 0, "message": "success", "organizations": [
            {"organization_id": oid, "name": name, "contact_name": "Jo Welder", "currency_code": "USD",
             "is_default_org": True} for oid, name in self.organizations.items()]})

    async def get_payment(self, request: web.Request) -> web.Response:
        if (refusal := self.refused(request)) is not None:
            return refusal
        found = self.payments.get(request.match_info["id"])
        if found is None:
            return zoho_error(404, 1002, "Payment does not exist.")
        return web.json_response({"code": 0, "message": "success", "payment": found})

    async def list_payments(self, request: web.Request) -> web.Response:
        if (refusal := self.refused(request)) is not None:
            return refusal
        listed = sorted(self.payments.values(), key=lambda p: p["last_modified_time"],
                        reverse=request.query.get("sort_order", "D") == "D")
        per_page = min(int(request.query.get("per_page", "200")), self.page_size)
        page = int(request.query.get("page", "1"))
        chunk = listed[(page - 1) * per_page:page * per_page]
        summaries = [{k: v for k, v in p.items() if k != "invoices"} for p in chunk]
        return web.json_response({"code": 0, "message": "success", "customerpayments": summaries, "page_context": {
            "page": page, "per_page": per_page, "has_more_page": page * per_page < len(listed),
            "sort_column": "last_modified_time", "sort_order": request.query.get("sort_order", "D")}})
