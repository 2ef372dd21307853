"""Fake Sage Intacct: the JWKS that signs platform-trigger JWTs (keys generated here), the REST API's OAuth2 token
endpoint (client credentials), `objects/accounts-receivable/{payment,invoice}/{key}` and `services/core/query`,
answering in the `ia::result` / `ia::meta` envelope, errors as `ia::error`."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

import jwt
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.fakes.base import FakeProvider

CLIENT_ID = "paybot-weld.app.sage.com"
CLIENT_SECRET = "intacct-client-secret-fake"
USERNAME = "paybot_ws"
COMPANY_ID = "WELD-SHOP"
ISSUER = "https://id.intacct.example/"
AUDIENCE = CLIENT_ID
KID = "intacct-2026-1"
API = "/ia/api/v1"


def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def ia_error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"ia::result": {"ia::error": {"code": code, "message": message,
                                                           "supportId": "Kx7f0WEB"}},
                              "ia::meta": {"totalCount": 1, "totalSuccess": 0, "totalError": 1}}, status=status)


class FakeIntacct(FakeProvider):
    def __init__(self) -> None:
        super().__init__()
        self.signing = {KID: rsa_key()}
        self.tokens: set[str] = set()
        self.payments: dict[str, dict[str, Any]] = {}
        self.invoices: dict[str, dict[str, Any]] = {}
        self.customers: dict[str, dict[str, Any]] = {}
        self.page_size = 100
        r = self.app.router
        r.add_get("/.well-known/jwks.json", self.jwks)
        r.add_post(f"{API}/oauth2/token", self.token)
        r.add_get(API + "/objects/accounts-receivable/payment/{key}", self.payment)
        r.add_get(API + "/objects/accounts-receivable/invoice/{key}", self.invoice)
        r.add_post(f"{API}/services/core/query", self.query)

    # --- what Sage sends ----------------------------------------------------------------------------------------

    def mint(self, now: datetime, *, kid: str = KID, audience: str = AUDIENCE, issuer: str = ISSUER,
             lifetime: timedelta = timedelta(minutes=5), key: rsa.RSAPrivateKey | None = None,
             algorithm: str = "RS256") -> str:
        claims = {"iss": issuer, "aud": audience, "sub": CLIENT_ID, "iat": int(now.timestamp()),
                  "nbf": int(now.timestamp()), "exp": int((now + lifetime).timestamp()), "cny": COMPANY_ID}
        signing = key or self.signing[kid]
        return jwt.encode(claims, signing, algorithm=algorithm, headers={"kid": kid})

    def rotate(self, kid: str) -> None:
        self.signing[kid] = rsa_key()

    def add_payment(self, record_no: str, *lines: tuple[str, str], customer: str = "C-100", total: str | None = None,
                    state: str = "Confirmed", modified: str = "2026-11-28T11:59:00Z") -> None:
        self.payments[record_no] = {
            "RECORDNO": record_no, "CUSTOMERID": customer, "CUSTOMERNAME": "Jane Doe", "PAYMENTMETHOD": "Cheque",
            "RECEIPTDATE": "2026-11-28", "CURRENCY": "USD", "STATE": state, "WHENMODIFIED": modified,
            "TOTALENTERED": total or str(sum(float(a) for _, a in lines)),
            "ARPYMTDETAILS": [{"RECORDNO": f"{record_no}0{i}", "RECORDKEY": key, "TRX_PAYMENTAMOUNT": amount}
                              for i, (key, amount) in enumerate(lines)]}

    def add_invoice(self, key: str, number: str, total: str, paid: str, customer: str = "C-100") -> None:
        due = f"{float(total) - float(paid):.2f}"
        self.invoices[key] = {"RECORDNO": key, "RECORDID": number, "CUSTOMERID": customer, "CURRENCY": "USD",
                              "TOTALENTERED": total, "TOTALPAID": paid, "TOTALDUE": due,
                              "STATE": "Paid" if float(due) == 0 else "Partially Paid"}

    # --- the API ------------------------------------------------------------------------------------------------

    async def jwks(self, request: web.Request) -> web.Response:
        keys = []
        for kid, key in self.signing.items():
            jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
            keys.append(jwk | {"kid": kid, "use": "sig", "alg": "RS256"})
        return web.json_response({"keys": keys})

    async def token(self, request: web.Request) -> web.Response:
        form = await request.post()
        if form.get("grant_type") != "client_credentials":
            return web.json_response({"error": "unsupported_grant_type"}, status=400)
        if (form.get("client_id"), form.get("client_secret")) != (CLIENT_ID, CLIENT_SECRET):
            return web.json_response({"error": "invalid_client"}, status=401)
        if form.get("username") != f"{USERNAME}@{COMPANY_ID}":
            return web.json_response({"error": "invalid_grant", "error_description": "unknown user"}, status=400)
        token = f"intacct-at-{len(self.tokens) + 1}"
        self.tokens.add(token)
        return web.json_response({"access_token": token, "token_type": "Bearer", "expires_in": 21600})

    def refused(self, request: web.Request) -> web.Response | None:
        if request.headers.get("Authorization", "").removeprefix("Bearer ") not in self.tokens:
            return ia_error(401, "invalidToken", "The access token is invalid or has expired.")
        return None

    async def payment(self, request: web.Request) -> web.Response:
        return self._one(request, self.payments, "accounts-receivable/payment")

    async def invoice(self, request: web.Request) -> web.Response:
        return self._one(request, self.invoices, "accounts-receivable/invoice")

    def _one(self, request: web.Request, records: dict[str, dict[str, Any]], name: str) -> web.Response:
        if (refusal := self.refused(request)) is not None:
            return refusal
        found = records.get(request.match_info["key"])
        if found is None:
            return ia_error(404, "notFound", f"The requested {name} was not found.")
        return web.json_response({"ia::result": found, "ia::meta": {"totalCount": 1, "totalSuccess": 1,
                                                                    "totalError": 0}})

    async def query(self, request: web.Request) -> web.Response:
        if (refusal := self.refused(request)) is not None:
            return refusal
        body = await request.json()
        name, filters = body["object"], body.get("filters") or []
        if name == "accounts-receivable/customer":
            wanted = filters[0]["$eq"]["CUSTOMERID"]
            rows = [{f: c.get(f) for f in body["fields"]} for c in self.customers.values() if c["CUSTOMERID"] == wanted]
        elif name == "accounts-receivable/payment":
            after = filters[0]["$gt"]["WHENMODIFIED"] if filters else ""
            rows = sorted(({f: p.get(f) for f in body["fields"]} for p in self.payments.values()
                           if p["WHENMODIFIED"] > after), key=lambda p: str(p.get("WHENMODIFIED")))
        else:
            return ia_error(400, "invalidRequest", f"Unknown object {name}")
        start, size = int(body.get("start", 1)), min(int(body.get("size", 100)), self.page_size)
        page = rows[start - 1:start - 1 + size]
        following = start + size if start - 1 + size < len(rows) else None
        return web.json_response({"ia::result": page, "ia::meta": {
            "totalCount": len(rows), "start": start, "pageSize": size, "next": following,
            "previous": max(start - size, 1) if start > 1 else None}})
