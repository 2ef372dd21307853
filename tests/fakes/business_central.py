"""Fake Dynamics 365 Business Central: the Microsoft Entra token endpoint (client credentials, `.default` scope),
`api/v2.0/companies({id})/salesInvoices({id})`, the `$filter` list with `@odata.nextLink` paging,
`customerPayments({id})`, and `subscriptions` (POST runs the handshake against the notification URL, PATCH needs
the `@odata.etag` in If-Match, expiry three days out, a dropped subscription is 404). Errors as BC words them:
`{"error": {"code": "BadRequest_NotFound", "message": "…  CorrelationId: …"}}`."""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from tests.fakes.base import FakeProvider

TENANT = "6f1c2d3e-0000-4000-8000-00000000a1b2"
ENVIRONMENT = "production"
COMPANY = "b18aed47-c385-49d2-b954-dbdf8ad71780"
CLIENT_ID = "3c0a9e55-7d2e-4c8a-9f5b-000000000bc1"
CLIENT_SECRET = "bc-client-secret-fake"
CLIENT_STATE = "bc-client-state-fake-2048"
SCOPE = "https://api.businesscentral.dynamics.com/.default"
ROOT = f"/v2.0/{TENANT}/{ENVIRONMENT}/api/v2.0"
COMPANY_ROOT = f"{ROOT}/companies({COMPANY})"
LIFETIME = timedelta(days=3)


def bc_error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": f"{message}  CorrelationId:  "
                                        "2e0b5ff8-51c7-4a5c-bd5c-f3d1d9a8f0a1."}}, status=status)


def invoice_id(n: int) -> str:
    return f"9e0f5c9c-44e3-ea11-bb43-{n:012d}"


class FakeBusinessCentral(FakeProvider):
    def __init__(self, clock: Callable[[], datetime]) -> None:
        super().__init__()
        self.clock = clock
        self.tokens: set[str] = set()
        self.invoices: dict[str, dict[str, Any]] = {}
        self.customer_payments: dict[str, dict[str, Any]] = {}
        self.subscriptions: dict[str, dict[str, Any]] = {}
        self.page_size = 20
        #: BC's handshake: called with the notification URL and a validation token; True if echoed correctly.
        self.handshake: Callable[[str, str], Awaitable[bool]] | None = None
        r = self.app.router
        r.add_post(f"/{TENANT}/oauth2/v2.0/token", self.token)
        r.add_get(COMPANY_ROOT + "/salesInvoices({id})", self.invoice)
        r.add_get(f"{COMPANY_ROOT}/salesInvoices", self.list_invoices)
        r.add_get(COMPANY_ROOT + "/customerPayments({id})", self.customer_payment)
        r.add_get(f"{ROOT}/companies", self.companies)
        r.add_post(f"{ROOT}/subscriptions", self.subscribe)
        r.add_patch(ROOT + "/subscriptions('{id}')", self.renew)

    # --- the books ----------------------------------------------------------------------------------------------

    def add_invoice(self, n: int, number: str, total: str, remaining: str, *, status: str | None = None,
                    modified: str = "2026-11-28T11:59:00Z") -> str:
        key = invoice_id(n)
        self.invoices[key] = {
            "@odata.etag": f'W/"JzE5OzE{n}Oyc="', "id": key, "number": number, "customerNumber": "10000",
            "customerName": "Jane Doe", "email": "jane@example.com", "phoneNumber": "+15125550100",
            "currencyCode": "", "status": status or ("Paid" if float(remaining) == 0 else "Open"),
            "totalAmountIncludingTax": float(total), "remainingAmount": float(remaining),
            "lastModifiedDateTime": modified}
        return key

    def drop(self, subscription_id: str) -> None:
        """BC deleted the subscription (it expired, or a notification was answered with a 4xx)."""
        del self.subscriptions[subscription_id]

    # --- the API ------------------------------------------------------------------------------------------------

    async def token(self, request: web.Request) -> web.Response:
        form = await request.post()
        if form.get("grant_type") != "client_credentials" or form.get("scope") != SCOPE:
            return web.json_response({"error": "invalid_request", "error_codes": [900144]}, status=400)
        if (form.get("client_id"), form.get("client_secret")) != (CLIENT_ID, CLIENT_SECRET):
            return web.json_response({"error": "invalid_client", "error_codes": [7000215]}, status=401)
        token = f"eyJ0eXAi.bc-at-{len(self.tokens) + 1}"
        self.tokens.add(token)
        return web.json_response({"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599,
                                  "access_token": token})

    def refused(self, request: web.Request) -> web.Response | None:
        if request.headers.get("Authorization", "").removeprefix("Bearer ") not in self.tokens:
            return bc_error(401, "Authentication_InvalidCredentials", "The credentials provided are incorrect")
        return None

    async def companies(self, request: web.Request) -> web.Response:
        if (refusal := self.refused(request)) is not None:
            return refusal
        return web.json_response({"value": [{"id": COMPANY, "name": "CRONUS USA, Inc."}]})

    async def invoice(self, request: web.Request) -> web.Response:
        if (refusal := self.refused(request)) is not None:
            return refusal
        found = self.invoices.get(request.match_info["id"])
        if found is None:
            return bc_error(404, "BadRequest_NotFound", "The salesInvoice does not exist.")
        return web.json_response(found)

    async def customer_payment(self, request: web.Request) -> web.Response:
        if (refusal := self.refused(request)) is not None:
            return refusal
        found = self.customer_payments.get(request.match_info["id"])
        if found is None:
            return bc_error(404, "BadRequest_NotFound", "The customerPayment does not exist.")
        return web.json_response(found)

    async def list_invoices(self, request: web.Request) -> web.Response:
        if (refusal := self.refused(request)) is not None:
            return refusal
        given = request.query.get("$filter", "")
        field, _, rest = given.partition(" gt ")
        if field != "lastModifiedDateTime" or not rest:
            return bc_error(400, "BadRequest", "Could not find a property named '…'")
        after = rest.strip()
        rows = sorted((i for i in self.invoices.values() if i["lastModifiedDateTime"] > after),
                      key=lambda i: i["lastModifiedDateTime"])
        skip = int(request.query.get("$skiptoken", 0))
        answer: dict[str, Any] = {"@odata.context": "…/$metadata#companies(…)/salesInvoices",
                                  "value": rows[skip:skip + self.page_size]}
        if skip + self.page_size < len(rows):
            answer["@odata.nextLink"] = str(request.url.with_query(None)) + "?" + urlencode(
                {"$filter": given, "$skiptoken": skip + self.page_size})
        return web.json_response(answer)

    async def subscribe(self, request: web.Request) -> web.Response:
        if (refusal := self.refused(request)) is not None:
            return refusal
        body = await request.json()
        if not await self._handshake(body["notificationUrl"]):
            return bc_error(400, "BadRequest", "The subscription notification URL validation failed.")
        sub_id = secrets.token_hex(16)
        self.subscriptions[sub_id] = self._subscription(sub_id, body)
        return web.json_response(self.subscriptions[sub_id], status=201)

    async def renew(self, request: web.Request) -> web.Response:
        if (refusal := self.refused(request)) is not None:
            return refusal
        sub_id = request.match_info["id"]
        found = self.subscriptions.get(sub_id)
        if found is None:
            return bc_error(404, "BadRequest_NotFound", "The subscription does not exist.")
        if request.headers.get("If-Match") != found["@odata.etag"]:
            return bc_error(412, "Request_EntityChanged", "Another user has already changed the record.")
        body = await request.json()
        if not await self._handshake(body.get("notificationUrl", found["notificationUrl"])):
            return bc_error(400, "BadRequest", "The subscription notification URL validation failed.")
        self.subscriptions[sub_id] = self._subscription(sub_id, found | body)
        return web.json_response(self.subscriptions[sub_id])

    def _subscription(self, sub_id: str, body: dict[str, Any]) -> dict[str, Any]:
        now = self.clock()
        return {"@odata.etag": f'W/"JzQ0O{secrets.token_hex(4)}Oyc="', "subscriptionId": sub_id,
                "notificationUrl": body["notificationUrl"], "resource": body["resource"], "userId": CLIENT_ID,
                "lastModifiedDateTime": now.isoformat().replace("+00:00", "Z"), "clientState": body["clientState"],
                "expirationDateTime": (now + LIFETIME).isoformat().replace("+00:00", "Z"),
                "systemCreatedAt": now.isoformat().replace("+00:00", "Z")}

    async def _handshake(self, notification_url: str) -> bool:
        return True if self.handshake is None else await self.handshake(notification_url, secrets.token_urlsafe(24))
