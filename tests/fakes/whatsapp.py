"""Fake WhatsApp Cloud API (Graph): `POST /{version}/{phone_number_id}/messages` (Bearer token) answering 200 with
contacts and a WAMID, or the Graph error envelope; `GET /{version}/{phone_number_id}`; and status webhooks signed
as Meta signs them (X-Hub-Signature-256)."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
from typing import Any

from aiohttp import web

from tests.fakes.base import FakeProvider

ACCESS_TOKEN = "EAAGtest0123456789"
PHONE_NUMBER_ID = "106540352242922"
VERSION = "v21.0"
MESSAGES = f"/{VERSION}/{PHONE_NUMBER_ID}/messages"
APP_SECRET = "whatsapp-app-secret-0123"
VERIFY_TOKEN = "paybot-verify-token"
TEMPLATE = "payment_received"
APPROVED = {"en_US", "es_MX", "es"}  # the template's approved translations


def graph_error(status: int, code: int, message: str, details: str = "", error_type: str = "OAuthException",
                **headers: str) -> web.Response:
    error: dict[str, Any] = {"message": message, "type": error_type, "code": code, "fbtrace_id": "AbCdEfGh123"}
    if details:
        error["error_data"] = {"messaging_product": "whatsapp", "details": details}
    return web.json_response({"error": error}, status=status, headers=headers)


def throttled(retry_after: int) -> web.Response:
    return graph_error(429, 130429, "(#130429) Rate limit hit", "Cloud API message throughput has been reached.",
                       **{"Retry-After": str(retry_after)})


class FakeWhatsApp(FakeProvider):
    def __init__(self) -> None:
        super().__init__()
        self._ids = itertools.count(1)
        self.accepted: list[dict[str, Any]] = []
        self.app.router.add_post("/{version}/{phone}/messages", self.messages)
        self.app.router.add_get("/{version}/{phone}", self.phone_number)

    def _refused(self, request: web.Request) -> web.Response | None:
        if request.headers.get("Authorization") != f"Bearer {ACCESS_TOKEN}":
            return graph_error(401, 190, "Invalid OAuth access token - Cannot parse access token")
        if request.match_info["phone"] != PHONE_NUMBER_ID:
            return graph_error(400, 100, f"Unsupported post request. Object with ID '{request.match_info['phone']}' "
                               "does not exist, cannot be loaded due to missing permissions, or does not support "
                               "this operation.", error_type="GraphMethodException")
        return None

    async def phone_number(self, request: web.Request) -> web.Response:
        if (refused := self._refused(request)) is not None:
            return refused
        return web.json_response({"display_phone_number": "+1 555-010-0999", "verified_name": "Weld Shop",
                                  "quality_rating": "GREEN", "id": PHONE_NUMBER_ID})

    async def messages(self, request: web.Request) -> web.Response:
        if (refused := self._refused(request)) is not None:
            return refused
        try:
            body = json.loads(await request.read())
        except ValueError:
            return graph_error(400, 100, "(#100) Invalid parameter")
        if body.get("messaging_product") != "whatsapp" or not body.get("to"):
            return graph_error(400, 100, "(#100) Invalid parameter", "messaging_product and to are required")
        if body.get("type") != "template":  # business-initiated: outside the 24-hour window
            return graph_error(400, 131047, "Re-engagement message", "Message failed to send because more than "
                               "24 hours have passed since the customer last replied to this number.")
        template = body.get("template") or {}
        language = (template.get("language") or {}).get("code")
        if template.get("name") != TEMPLATE or language not in APPROVED:
            return graph_error(404, 132001, "(#132001) Template name does not exist in the translation",
                               f"template name ({template.get('name')}) does not exist in {language}")
        parameters = [p for c in template.get("components") or [] if c.get("type") == "body"
                      for p in c.get("parameters") or []]
        if len(parameters) != 4 or not all(isinstance(p.get("text"), str) and p["text"] for p in parameters):
            return graph_error(400, 132000, "(#132000) Number of parameters does not match the expected number "
                               "of params", "body: number of localizable_params (%d) does not match the expected "
                               "number of params (4)" % len(parameters))
        wamid = f"wamid.HBgL{next(self._ids):012d}"
        self.accepted.append(body | {"id": wamid})
        return web.json_response({"messaging_product": "whatsapp",
                                  "contacts": [{"input": body["to"], "wa_id": body["to"]}],
                                  "messages": [{"id": wamid, "message_status": "accepted"}]})


def status(sent: dict[str, Any], word: str, timestamp: int, errors: list[dict[str, Any]] | None = None,
           ) -> dict[str, Any]:
    """One entry of `statuses`, as Meta reports a message the fake accepted."""
    found: dict[str, Any] = {"id": sent["id"], "status": word, "timestamp": str(timestamp),
                             "recipient_id": sent["to"]}
    if "biz_opaque_callback_data" in sent:
        found["biz_opaque_callback_data"] = sent["biz_opaque_callback_data"]
    if word in ("sent", "delivered"):
        found["conversation"] = {"id": "CONVERSATION_ID", "origin": {"type": "utility"}}
        found["pricing"] = {"billable": True, "pricing_model": "PMP", "category": "utility"}
    if errors:
        found["errors"] = errors
    return found


def undeliverable() -> list[dict[str, Any]]:
    return [{"code": 131026, "title": "Message undeliverable", "message": "Message undeliverable",
             "error_data": {"details": "Message Undeliverable."}}]


def notification(*statuses: dict[str, Any]) -> bytes:
    return json.dumps({"object": "whatsapp_business_account", "entry": [{"id": "WABA_ID", "changes": [{
        "value": {"messaging_product": "whatsapp",
                  "metadata": {"display_phone_number": "15550100999", "phone_number_id": PHONE_NUMBER_ID},
                  "statuses": list(statuses)},
        "field": "messages"}]}]}).encode()


def signed(body: bytes, secret: str = APP_SECRET) -> dict[str, str]:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"X-Hub-Signature-256": f"sha256={digest}", "Content-Type": "application/json"}
