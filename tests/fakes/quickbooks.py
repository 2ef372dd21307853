"""Fake QuickBooks Online: the accounting API (`/v3/company/{realmId}/…` with `Authorization: Bearer`, `?minorversion`)
and Intuit's OAuth2 token endpoint (`/oauth2/v1/tokens/bearer`, client id/secret in Basic auth), as Intuit words
them: entities wrapped in their name (`{"Payment": {...}, "time": ...}`), errors as `Fault` bodies (an expired token
401 `AUTHENTICATION` / 3200, a deleted entity 400 `ValidationFault` / 610 "Object Not Found", throttling 429
`ThrottleExceeded`), refresh tokens rotated on every refresh (the old one then fails with `invalid_grant`), and
Change Data Capture (`/cdc?entities=…&changedSince=…`). `delay` makes every API read slow (the benchmark).
"""

from __future__ import annotations

import asyncio
import base64
import itertools
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from tests.fakes.base import FakeProvider

CLIENT_ID, CLIENT_SECRET = "ABqbo-fake-client-id", "qbo-fake-client-secret"
VERIFIER_TOKEN = "qbo-fake-verifier-token-7f3a"
REALM, OTHER_REALM = "9130357992221046", "9130357992221099"
TIME = "2026-11-28T04:00:00-08:00"


def fault(status: int, kind: str, code: str, message: str, detail: str, **headers: str) -> web.Response:
    return web.json_response({"Fault": {"Error": [{"Message": message, "Detail": detail, "code": code,
                                                   "element": ""}], "type": kind}, "time": TIME},
                             status=status, headers=headers)


def expired() -> web.Response:
    # Intuit's 401 spells its envelope in lower case.
    return web.json_response({"fault": {"error": [{
        "message": "message=AuthenticationFailed; errorCode=003200; statusCode=401",
        "detail": "Token expired: see https://developer.intuit.com/", "code": "3200"}], "type": "AUTHENTICATION"},
        "time": TIME}, status=401, headers={"WWW-Authenticate": 'Bearer realm="Intuit"'})


def throttled(retry_after: int = 60) -> web.Response:
    return fault(429, "ThrottleExceeded", "003001", "ThrottleExceeded",
                 "The request exceeded the maximum number of requests allowed.", **{"Retry-After": str(retry_after)})


def unavailable() -> web.Response:
    return fault(503, "SystemFault", "10000", "An application error has occurred while processing your request",
                 "System Failure Error: Service Unavailable")


def not_found(entity: str, entity_id: str) -> web.Response:
    return fault(400, "ValidationFault", "610", "Object Not Found",
                 f"Object Not Found : Something you're trying to use has been made inactive. {entity} {entity_id}")


class FakeQuickBooks(FakeProvider):
    def __init__(self) -> None:
        super().__init__()
        self.entities: dict[tuple[str, str, str], dict[str, Any]] = {}  # (realm, entity, id) -> object
        self.deleted: dict[tuple[str, str, str], str] = {}  # (realm, entity, id) -> when
        self.companies = {REALM: "Acme Welding LLC", OTHER_REALM: "Acme Welding (second company)"}
        self._numbers = itertools.count(1)
        self.refresh_tokens: dict[str, str] = {}  # valid refresh token -> realm
        self.access_tokens: dict[str, str] = {}   # valid access token -> realm
        self.codes: dict[str, str] = {}           # authorization code -> realm
        self.refreshes = 0
        self.delay = 0.0
        self.cdc_time = "2026-11-28T12:00:00Z"
        self.cdc_queries: list[str] = []  # each CDC call's changedSince
        self.app.router.add_post("/oauth2/v1/tokens/bearer", self.tokens)
        self.app.router.add_get("/v3/company/{realm}/cdc", self.cdc)
        self.app.router.add_get("/v3/company/{realm}/companyinfo/{id}", self.company_info)
        self.app.router.add_get("/v3/company/{realm}/{entity}/{id}", self.read)

    # --- set-up helpers ---
    def grant(self, realm: str = REALM) -> str:
        """A refresh token for `realm`, as the consent flow would have issued."""
        token = f"AB11-refresh-{next(self._numbers)}"
        self.refresh_tokens[token] = realm
        return token

    def code(self, realm: str = REALM) -> str:
        code = f"AB11-code-{next(self._numbers)}"
        self.codes[code] = realm
        return code

    def revoke_all(self) -> None:
        self.refresh_tokens.clear()
        self.access_tokens.clear()

    def expire_access(self) -> None:
        self.access_tokens.clear()

    def put(self, realm: str, entity: str, obj: dict[str, Any]) -> None:
        self.entities[(realm, entity.lower(), str(obj["Id"]))] = obj

    def delete(self, realm: str, entity: str, entity_id: str) -> None:
        self.entities.pop((realm, entity.lower(), entity_id), None)
        self.deleted[(realm, entity.lower(), entity_id)] = self.cdc_time

    def reads(self, entity: str = "") -> list[str]:
        return [c.path for c in self.calls if c.path.startswith("/v3/") and f"/{entity}" in c.path]

    # --- Intuit's token endpoint ---
    async def tokens(self, request: web.Request) -> web.Response:
        expected = "Basic " + base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
        if request.headers.get("Authorization") != expected:
            return web.json_response({"error": "invalid_client"}, status=401)
        form = await request.post()
        if form.get("grant_type") == "refresh_token":
            realm = self.refresh_tokens.pop(str(form.get("refresh_token")), None)  # rotated: the old one dies
            if realm is None:
                return web.json_response({"error": "invalid_grant"}, status=400)
            self.refreshes += 1
        elif form.get("grant_type") == "authorization_code":
            realm = self.codes.pop(str(form.get("code")), None)
            if realm is None or not form.get("redirect_uri"):
                return web.json_response({"error": "invalid_grant"}, status=400)
        else:
            return web.json_response({"error": "unsupported_grant_type"}, status=400)
        access, refresh = f"eyJ-access-{next(self._numbers)}", self.grant(realm)
        self.access_tokens[access] = realm
        return web.json_response({"token_type": "bearer", "access_token": access, "refresh_token": refresh,
                                  "expires_in": 3600, "x_refresh_token_expires_in": 8726400})

    # --- the accounting API ---
    async def _authorised(self, request: web.Request) -> web.Response | None:
        if self.delay:
            await asyncio.sleep(self.delay)  # the platform's latency, not the test's timing
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if self.access_tokens.get(token) != request.match_info["realm"]:
            return expired()
        if request.headers.get("Accept") != "application/json":
            return fault(400, "ValidationFault", "4000", "Unsupported Media Type", "Accept must be application/json")
        return None

    async def read(self, request: web.Request) -> web.Response:
        if (refused := await self._authorised(request)) is not None:
            return refused
        realm, entity, entity_id = (request.match_info[k] for k in ("realm", "entity", "id"))
        found = self.entities.get((realm, entity, entity_id))
        if found is None:
            return not_found(entity.capitalize(), entity_id)
        return web.json_response({_wrapper(entity): found, "time": TIME})

    async def company_info(self, request: web.Request) -> web.Response:
        if (refused := await self._authorised(request)) is not None:
            return refused
        realm = request.match_info["realm"]
        return web.json_response({"CompanyInfo": {"Id": "1", "CompanyName": self.companies.get(realm, "Company"),
                                                  "Country": "US"}, "time": TIME})

    async def cdc(self, request: web.Request) -> web.Response:
        if (refused := await self._authorised(request)) is not None:
            return refused
        realm = request.match_info["realm"]
        since = request.query.get("changedSince")
        entities = request.query.get("entities", "")
        if not since or not entities:
            return fault(400, "ValidationFault", "2020", "Required param missing, need to supply the required value "
                         "for the API", "Required parameter changedSince/entities is missing in the request")
        self.cdc_queries.append(since)
        after = datetime.fromisoformat(since.replace("Z", "+00:00"))
        responses = []
        for entity in entities.split(","):
            changed = [obj for (r, e, _), obj in self.entities.items() if r == realm and e == entity.lower()
                       and _updated(obj) > after]
            changed += [{"domain": "QBO", "status": "Deleted", "Id": i, "MetaData": {"LastUpdatedTime": when}}
                        for (r, e, i), when in self.deleted.items() if r == realm and e == entity.lower()]
            responses.append({entity: changed, "startPosition": 1, "maxResults": len(changed)} if changed else {})
        return web.json_response({"CDCResponse": [{"QueryResponse": responses}], "time": self.cdc_time})


def _wrapper(entity: str) -> str:
    return {"payment": "Payment", "invoice": "Invoice", "customer": "Customer"}.get(entity, entity.capitalize())


def _updated(obj: dict[str, Any]) -> datetime:
    value = (obj.get("MetaData") or {}).get("LastUpdatedTime", "1970-01-01T00:00:00Z")
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)


# --- entities as the API returns them ---
def invoice(invoice_id: str = "130", *, number: str = "INV-1042", total: str = "1250.00", balance: str = "0",
            customer: str = "58", email: str | None = "jane@example.com",
            updated: str = "2026-11-28T03:55:00-08:00") -> dict[str, Any]:
    return {"Id": invoice_id, "SyncToken": "1", "DocNumber": number, "TxnDate": "2026-11-01",
            "DueDate": "2026-12-01", "TotalAmt": float(total), "Balance": float(balance),
            "CurrencyRef": {"value": "USD", "name": "United States Dollar"},
            "CustomerRef": {"value": customer, "name": "Jane Doe"},
            **({"BillEmail": {"Address": email}} if email else {}),
            "MetaData": {"CreateTime": "2026-11-01T09:00:00-08:00", "LastUpdatedTime": updated},
            "Line": [{"Id": "1", "LineNum": 1, "Amount": float(total), "DetailType": "SalesItemLineDetail"}]}


def payment(payment_id: str = "163", *, amount: str = "1250.00", invoices: tuple[tuple[str, str], ...] = (("130", "1250.00"),),
            customer: str = "58", updated: str = "2026-11-28T04:00:00-08:00",
            txn_date: str = "2026-11-28") -> dict[str, Any]:
    return {"Id": payment_id, "SyncToken": "0", "TxnDate": txn_date, "TotalAmt": float(amount),
            "UnappliedAmt": 0, "PaymentRefNum": "1043", "CurrencyRef": {"value": "USD", "name": "United States Dollar"},
            "CustomerRef": {"value": customer, "name": "Jane Doe"},
            "MetaData": {"CreateTime": updated, "LastUpdatedTime": updated},
            "Line": [{"Amount": float(paid), "LinkedTxn": [{"TxnId": inv, "TxnType": "Invoice"}]}
                     for inv, paid in invoices]}


def customer(customer_id: str = "58", *, email: str | None = "jane@example.com",
             phone: str | None = "(555) 010-4477") -> dict[str, Any]:
    return {"Id": customer_id, "DisplayName": "Jane Doe", "GivenName": "Jane", "FamilyName": "Doe",
            **({"PrimaryEmailAddr": {"Address": email}} if email else {}),
            **({"PrimaryPhone": {"FreeFormNumber": phone}} if phone else {}),
            "MetaData": {"LastUpdatedTime": "2026-10-01T10:00:00-07:00"}}
