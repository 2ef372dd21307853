"""Fake Stripe API: `GET /v1/invoices/{id}` and `GET /v1/invoice_payments` (filtered by invoice or by payment, with
`expand[]=data.invoice`), Bearer `sk_…` auth, Stripe's error envelope, scripted 429s."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from tests.fakes.base import FakeProvider

API_KEY = "sk_test_123"


def stripe_error(status: int, error_type: str, message: str, *, param: str | None = None,
                 **headers: str) -> web.Response:
    error = {"type": error_type, "message": message} | ({"param": param} if param else {})
    return web.json_response({"error": error}, status=status, headers=headers)


def rate_limited(retry_after: int = 2) -> web.Response:
    return stripe_error(429, "rate_limit_error",
                        "Too many requests hit the API too quickly. We recommend an exponential backoff of your "
                        "requests.", **{"Retry-After": str(retry_after)})


def invoice_payment(payment_id: str, invoice_id: str, payment_intent: str, amount: int, *, currency: str = "usd",
                    status: str = "paid", paid_at: int = 1795867200) -> dict[str, Any]:
    """An InvoicePayment as Stripe returns it (API 2025-05-28.basil)."""
    return {
        "id": payment_id, "object": "invoice_payment", "amount_paid": amount if status == "paid" else None,
        "amount_requested": amount, "created": paid_at - 5, "currency": currency, "invoice": invoice_id,
        "is_default": True, "livemode": False,
        "payment": {"type": "payment_intent", "payment_intent": payment_intent},
        "status": status, "status_transitions": {"canceled_at": None, "paid_at": paid_at if status == "paid" else None},
    }


class FakeStripe(FakeProvider):
    def __init__(self) -> None:
        super().__init__()
        self.invoices: dict[str, dict[str, Any]] = {}
        self.invoice_payments: list[dict[str, Any]] = []
        self.app.router.add_get("/v1/invoices/{id}", self.get_invoice)
        self.app.router.add_get("/v1/account", self.get_account)
        self.app.router.add_get("/v1/invoice_payments", self.list_invoice_payments)

    @staticmethod
    def refused(request: web.Request) -> web.Response | None:
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("Bearer "):
            return stripe_error(401, "invalid_request_error",
                                "You did not provide an API key. You need to provide your API key in the "
                                "Authorization header, using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY').")
        if auth.removeprefix("Bearer ") != API_KEY:
            return stripe_error(401, "invalid_request_error", "Invalid API Key provided: sk_test_****")
        return None

    async def get_account(self, request: web.Request) -> web.Response:
        if (refusal := self.refused(request)) is not None:
            return refusal
        return web.json_response({"id": "acct_1PaybotFake", "object": "account", "country": "US",
                                  "default_currency": "usd", "charges_enabled": True})

    async def get_invoice(self, request: web.Request) -> web.Response:
        if (refusal := self.refused(request)) is not None:
            return refusal
        invoice = self.invoices.get(request.match_info["id"])
        if invoice is None:
            return stripe_error(404, "invalid_request_error", f"No such invoice: '{request.match_info['id']}'",
                                param="id")
        return web.json_response(invoice, headers={"Request-Id": "req_fake1"})

    async def list_invoice_payments(self, request: web.Request) -> web.Response:
        if (refusal := self.refused(request)) is not None:
            return refusal
        query = request.query
        intent, kind = query.get("payment[payment_intent]"), query.get("payment[type]")
        if intent and kind is None:
            return stripe_error(400, "invalid_request_error", "Missing required param: payment[type].",
                                param="payment[type]")
        if kind not in (None, "payment_intent", "payment_record"):
            return stripe_error(400, "invalid_request_error",
                                "Invalid payment[type]: must be one of payment_intent or payment_record",
                                param="payment[type]")
        found = [p for p in self.invoice_payments
                 if (intent is None or p["payment"].get("payment_intent") == intent)
                 and (query.get("invoice") is None or p["invoice"] == query["invoice"])
                 and (query.get("status") is None or p["status"] == query["status"])]
        limit = int(query.get("limit", "10"))
        expand_invoice = "data.invoice" in query.getall("expand[]", [])
        data = [p | {"invoice": self.invoices.get(p["invoice"], p["invoice"])} if expand_invoice else p
                for p in found[:limit]]
        return web.json_response({"object": "list", "data": data, "has_more": len(found) > limit,
                                  "url": "/v1/invoice_payments"}, headers={"Request-Id": "req_fake2"})
