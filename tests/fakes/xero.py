"""Fake Xero: the identity server's token endpoint, `GET /connections`, and the Accounting API's Invoices and
Contacts with Bearer auth and the `xero-tenant-id` header, `If-Modified-Since` and 100-a-page paging, the
rate-limit headers (`X-MinLimit-Remaining`, `X-DayLimit-Remaining`, `Retry-After` and `X-Rate-Limit-Problem` on
429) and Xero's error bodies (problem+json for 401/403, plain text for 404)."""

from __future__ import annotations

import email.utils
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from tests.fakes.base import FakeProvider
from tests.fakes.oauth_tokens import TokenEndpoint

CLIENT_ID, CLIENT_SECRET = "XEROCLIENTID0000000000000000000", "xero-client-secret-fake"
TENANT = "c2cc9b6e-9458-4c7d-93cc-f02b81b0594f"
OTHER_TENANT = "0a1b2c3d-0000-4000-8000-00000000beef"
PAGE = 100


def ms(moment: datetime) -> str:
    return f"/Date({int(moment.timestamp() * 1000)}+0000)/"


def problem(status: int, title: str, detail: str) -> web.Response:
    return web.json_response({"Type": None, "Title": title, "Status": status, "Detail": detail,
                              "Instance": "f8a1c2de-58c8-4a7b-8c3a-0f4b3c2d1e00", "Extensions": {}}, status=status,
                             content_type="application/problem+json")


def rate_limited(problem_kind: str = "minute", retry_after: int | None = 37) -> web.Response:
    headers = {"X-Rate-Limit-Problem": problem_kind, "X-MinLimit-Remaining": "0" if problem_kind == "minute" else "12",
               "X-DayLimit-Remaining": "0" if problem_kind == "day" else "4200"}
    if retry_after is not None:
        headers["Retry-After"] = str(retry_after)
    return web.Response(status=429, text="", headers=headers)


def unavailable() -> web.Response:
    return web.Response(status=503, text="The Xero API is currently offline for maintenance", headers={"Retry-After": "120"})


class FakeXero(FakeProvider):
    def __init__(self) -> None:
        super().__init__()
        self.tokens = TokenEndpoint(CLIENT_ID, CLIENT_SECRET, rotates=True)
        self.connections: dict[str, str] = {TENANT: "Weld Shop Ltd"}  # tenants the token reaches
        self.invoices: dict[str, dict[str, dict[str, Any]]] = {TENANT: {}}
        self.contacts: dict[str, dict[str, dict[str, Any]]] = {TENANT: {}}
        self.app.router.add_post("/connect/token", self.tokens.handle)
        self.app.router.add_get("/connections", self.list_connections)
        self.app.router.add_get("/api.xro/2.0/Invoices/{id}", self.get_invoice)
        self.app.router.add_get("/api.xro/2.0/Invoices", self.list_invoices)
        self.app.router.add_get("/api.xro/2.0/Contacts/{id}", self.get_contact)

    def add_invoice(self, invoice: dict[str, Any], tenant: str = TENANT) -> None:
        self.invoices.setdefault(tenant, {})[invoice["InvoiceID"]] = invoice

    async def list_connections(self, request: web.Request) -> web.Response:
        if not self.tokens.valid(request.headers.get("Authorization", "")):
            return problem(401, "Unauthorized", "AuthenticationUnsuccessful")
        return web.json_response([{"id": f"conn-{i}", "authEventId": "auth-1", "tenantId": tenant,
                                   "tenantType": "ORGANISATION", "tenantName": name,
                                   "createdDateUtc": "2026-11-01T09:00:00.0000000",
                                   "updatedDateUtc": "2026-11-01T09:00:00.0000000"}
                                  for i, (tenant, name) in enumerate(self.connections.items())])

    def refused(self, request: web.Request) -> web.Response | None:
        if not self.tokens.valid(request.headers.get("Authorization", "")):
            return problem(401, "Unauthorized", "AuthenticationUnsuccessful")
        tenant = request.headers.get("xero-tenant-id", "")
        if tenant not in self.connections:
            return problem(403, "Forbidden", "AuthenticationUnsuccessful")
        return None

    @staticmethod
    def limits() -> dict[str, str]:
        return {"X-MinLimit-Remaining": "59", "X-DayLimit-Remaining": "4999", "X-AppMinLimit-Remaining": "9999"}

    async def get_invoice(self, request: web.Request) -> web.Response:
        if (refusal := self.refused(request)) is not None:
            return refusal
        found = self.invoices.get(request.headers["xero-tenant-id"], {}).get(request.match_info["id"])
        if found is None:
            return web.Response(status=404, text="The resource you're looking for cannot be found")
        return web.json_response({"Id": "a0b1", "Status": "OK", "ProviderName": "paybot",
                                  "DateTimeUTC": ms(datetime.now(UTC)), "Invoices": [found]}, headers=self.limits())

    async def list_invoices(self, request: web.Request) -> web.Response:
        if (refusal := self.refused(request)) is not None:
            return refusal
        since = request.headers.get("If-Modified-Since")
        after = email.utils.parsedate_to_datetime(since) if since else None
        listed = [i for i in self.invoices.get(request.headers["xero-tenant-id"], {}).values()
                  if (request.query.get("where") != 'Type=="ACCREC"' or i.get("Type") == "ACCREC")
                  and (after is None or updated(i) >= after)]
        listed.sort(key=updated)
        page = int(request.query.get("page", "1"))
        summaries = [{k: v for k, v in i.items() if k != "Contact"} | {"Contact": {
            "ContactID": i["Contact"]["ContactID"], "Name": i["Contact"]["Name"]}} for i in listed]
        return web.json_response({"Id": "a0b2", "Status": "OK", "Invoices": summaries[(page - 1) * PAGE:page * PAGE]},
                                 headers=self.limits())

    async def get_contact(self, request: web.Request) -> web.Response:
        if (refusal := self.refused(request)) is not None:
            return refusal
        found = self.contacts.get(request.headers["xero-tenant-id"], {}).get(request.match_info["id"])
        if found is None:
            return web.Response(status=404, text="The resource you're looking for cannot be found")
        return web.json_response({"Id": "a0b3", "Status": "OK", "Contacts": [found]}, headers=self.limits())


def updated(invoice: dict[str, Any]) -> datetime:
    millis = int(invoice["UpdatedDateUTC"].removeprefix("/Date(").split("+")[0].rstrip(")/"))
    return datetime.fromtimestamp(millis / 1000, UTC)
