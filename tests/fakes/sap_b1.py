"""Fake SAP Business One Service Layer (`/b1s/v1`): `POST Login` → `B1SESSION` cookie, sessions that time out,
`IncomingPayments({DocEntry})`, `Invoices({DocEntry})`, `BusinessPartners('{CardCode}')` and the
`IncomingPayments?$filter=UpdateDate ge '…'` list with `odata.nextLink` paging; errors as OData envelopes."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from tests.fakes.base import FakeProvider

COMPANY_DB = "SBODEMOUS"
USERNAME = "manager"
PASSWORD = "b1-password-fake"
ROOT = "/b1s/v1"


def odata_error(status: int, code: int, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": {"lang": "en-us", "value": message}}}, status=status)


class FakeServiceLayer(FakeProvider):
    def __init__(self) -> None:
        super().__init__()
        self.sessions: set[str] = set()
        self.payments: dict[int, dict[str, Any]] = {}
        self.invoices: dict[int, dict[str, Any]] = {}
        self.partners: dict[str, dict[str, Any]] = {}
        self.page_size = 20
        r = self.app.router
        r.add_post(f"{ROOT}/Login", self.login)
        r.add_get(ROOT + r"/IncomingPayments({entry:\d+})", self.payment)
        r.add_get(f"{ROOT}/IncomingPayments", self.list_payments)
        r.add_get(ROOT + r"/Invoices({entry:\d+})", self.invoice)
        r.add_get(ROOT + "/BusinessPartners('{code}')", self.partner)

    def expire_sessions(self) -> None:
        """B1's SessionTimeout passed (30 minutes idle by default)."""
        self.sessions.clear()

    def add_invoice(self, entry: int, num_at_card: str, total: str, paid: str, card: str = "C20000") -> None:
        self.invoices[entry] = {"DocEntry": entry, "DocNum": 1000 + entry, "NumAtCard": num_at_card, "CardCode": card,
                                "DocCurrency": "$", "DocTotal": float(total), "PaidToDate": float(paid),
                                "DocumentStatus": "bost_Close" if total == paid else "bost_Open"}

    def add_payment(self, entry: int, *applied: tuple[int, str], card: str = "C20000", cash: str | None = None,
                    updated: str = "2026-11-28") -> None:
        total = cash or str(sum(float(a) for _, a in applied))
        self.payments[entry] = {
            "DocEntry": entry, "DocNum": 500 + entry, "DocDate": "2026-11-28", "CardCode": card, "CardName": "Jane Doe",
            "DocCurrency": "$", "CashSum": 0.0, "TransferSum": float(total), "Cancelled": "tNO",
            "UpdateDate": updated, "PaymentChecks": [], "PaymentCreditCards": [],
            "PaymentInvoices": [{"LineNum": i, "DocEntry": e, "SumApplied": float(a), "AppliedFC": 0.0,
                                 "InvoiceType": "it_Invoice"} for i, (e, a) in enumerate(applied)]}

    async def login(self, request: web.Request) -> web.Response:
        body = await request.json()
        if body.get("CompanyDB") != COMPANY_DB:
            return odata_error(401, -304, "Fail to get DB Credentials from SLD")
        if (body.get("UserName"), body.get("Password")) != (USERNAME, PASSWORD):
            return odata_error(401, -304, "Invalid login credential.")
        session = f"b1-{len(self.calls)}-{COMPANY_DB}"
        self.sessions.add(session)
        response = web.json_response({"odata.metadata": f"{ROOT}/$metadata#B1Sessions/@Element",
                                      "SessionId": session, "Version": "1000190", "SessionTimeout": 30})
        response.set_cookie("B1SESSION", session, path="/b1s", httponly=True)
        response.set_cookie("ROUTEID", ".node1", path="/b1s")
        return response

    def refused(self, request: web.Request) -> web.Response | None:
        if request.cookies.get("B1SESSION") not in self.sessions:
            return odata_error(401, 301, "Invalid session or session already timeout.")
        return None

    def _one(self, request: web.Request, records: dict[Any, dict[str, Any]], key: Any) -> web.Response:
        if (refusal := self.refused(request)) is not None:
            return refusal
        found = records.get(key)
        if found is None:
            return odata_error(404, -2028, "No matching records found (ODBC -2028)")
        return web.json_response(found)

    async def payment(self, request: web.Request) -> web.Response:
        return self._one(request, self.payments, int(request.match_info["entry"]))

    async def invoice(self, request: web.Request) -> web.Response:
        return self._one(request, self.invoices, int(request.match_info["entry"]))

    async def partner(self, request: web.Request) -> web.Response:
        return self._one(request, self.partners, request.match_info["code"].replace("''", "'"))

    async def list_payments(self, request: web.Request) -> web.Response:
        if (refusal := self.refused(request)) is not None:
            return refusal
        found = re.fullmatch(r"UpdateDate ge '(\d{4}-\d{2}-\d{2})'", request.query.get("$filter", ""))
        if found is None:
            return odata_error(400, -1000, "Invalid filter")
        rows = sorted((p for p in self.payments.values() if p["UpdateDate"] >= found[1]), key=lambda p: p["DocEntry"])
        skip = int(request.query.get("$skip", 0))
        page = [{"DocEntry": p["DocEntry"], "UpdateDate": p["UpdateDate"]} for p in rows[skip:skip + self.page_size]]
        answer: dict[str, Any] = {"odata.metadata": f"{ROOT}/$metadata#IncomingPayments", "value": page}
        if skip + self.page_size < len(rows):
            query = {k: v for k, v in request.query.items() if k != "$skip"} | {"$skip": str(skip + self.page_size)}
            answer["odata.nextLink"] = f"IncomingPayments?{urlencode(query)}"
        return web.json_response(answer)
