"""Fake Stripe API: `GET /v1/invoices/{id}` with Bearer `sk_…` auth, Stripe's error envelope, scripted 429s."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from tests.fakes.base import FakeProvider

API_KEY = "sk_test_123"


def stripe_error(status: int, error_type: str, message: str, **headers: str) -> web.Response:
    return web.json_response({"error": {"type": error_type, "message": message}}, status=status, headers=headers)


def rate_limited(retry_after: int = 2) -> web.Response:
    return stripe_error(429, "rate_limit_error",
                        "Too many requests hit the API too quickly. We recommend an exponential backoff of your "
                        "requests.", **{"Retry-After": str(retry_after)})


class FakeStripe(FakeProvider):
    def __init__(self) -> None:
        super().__init__()
        self.invoices: dict[str, dict[str, Any]] = {}
        self.app.router.add_get("/v1/invoices/{id}", self.get_invoice)

    async def get_invoice(self, request: web.Request) -> web.Response:
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("Bearer "):
            return stripe_error(401, "invalid_request_error",
                                "You did not provide an API key. You need to provide your API key in the "
                                "Authorization header, using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY').")
        if auth.removeprefix("Bearer ") != API_KEY:
            return stripe_error(401, "invalid_request_error", "Invalid API Key provided: sk_test_****")
        invoice = self.invoices.get(request.match_info["id"])
        if invoice is None:
            return stripe_error(404, "invalid_request_error", f"No such invoice: '{request.match_info['id']}'")
        return web.json_response(invoice, headers={"Request-Id": "req_fake1"})
