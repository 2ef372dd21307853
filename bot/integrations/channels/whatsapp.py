"""WhatsApp Cloud API: an approved template message, `POST /{version}/{phone_number_id}/messages` (Bearer token,
200 with the message's WAMID); and the signed status webhooks at `/callbacks/whatsapp`.

A business may open a conversation only with a template, so the acknowledgement is `WHATSAPP_TEMPLATE` in the
customer's language with four body parameters: their name, the invoice, the amount paid and what is still owed
(money written by babel in the customer's locale). The template's words are Meta-approved; ours are the values.

Our notification key rides as `biz_opaque_callback_data`, which Meta echoes in every status of the message. A
`failed` status (a closed re-engagement window, an undeliverable number) arrives after the 200: it is a failure
signal like a bounce, and the receipt falls back to the customer's next channel.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any, ClassVar

import aiohttp
from pydantic import SecretStr

from bot.domain.parties import Customer
from bot.errors import PayloadInvalid, ProviderRejected, SignatureInvalid
from bot.integrations.base import IntegrationSettings, secret, settings_config
from bot.integrations.channels import unkeyed
from bot.integrations.channels.base import Payload, StatusUpdate, echoed_key
from bot.integrations.checks import Finding, ok, problem
from bot.integrations.http import Delivery, Failed, Headers, Retry, Sent, retry_hint
from bot.integrations.sources.base import InboundRequest, Reply, display
from bot.integrations.sources.common import digest_matches, fetch_json, from_unix, json_object, path_segment
from bot.messages import TEST_MARK, Message, whatsapp_parameters
from bot.settings import Settings as CoreSettings

SIGNATURE = "X-Hub-Signature-256"
#: A message's statuses in Meta's webhooks (`deleted` and `warning` tell nothing about delivery).
STATUSES = frozenset({"sent", "delivered", "read", "failed"})
#: Graph error codes after which the same request may be accepted later: throughput (130429), the pair rate limit
#: (131056), Meta's unknown/service/temporary errors (131000, 1, 2) and app/account rate limits (4, 80007).
RETRYABLE_CODES = frozenset({130429, 131056, 131000, 1, 2, 4, 80007})
#: Why a code is permanent, for the codes an operator meets most (the rest say Meta's own title).
PERMANENT_CODES = {
    131047: "more than 24 hours since the customer last wrote (re-engagement window)",
    131026: "undeliverable: not a WhatsApp number, or the customer cannot receive it",
    132000: "the template's parameters do not match WHATSAPP_TEMPLATE's placeholders",
    132001: "WHATSAPP_TEMPLATE does not exist in the customer's language",
    131008: "a required parameter is missing",
    190: "WHATSAPP_ACCESS_TOKEN expired or revoked",
}


class WhatsAppSettings(IntegrationSettings):
    model_config = settings_config("WHATSAPP")
    required = ("access_token", "phone_number_id", "template")

    access_token: SecretStr | None = None      # a system user's permanent token (whatsapp_business_messaging)
    phone_number_id: str | None = None         # the business number's id, not the number
    template: str | None = None                # an approved template with four body placeholders
    template_languages: str = ""               # the template's approved languages, e.g. `en_US,es_MX,es`
    app_secret: SecretStr | None = None        # signs the status webhooks (X-Hub-Signature-256)
    verify_token: SecretStr | None = None      # our word in the webhook's subscription handshake
    base_url: str = "https://graph.facebook.com"
    api_version: str = "v21.0"                 # pinned: Graph versions change behaviour; upgrade on purpose

    @property
    def api_root(self) -> str:
        return f"{self.base_url.rstrip('/')}/{path_segment(self.api_version)}"


class WhatsAppChannel:
    name: ClassVar[str] = "whatsapp"
    serves: ClassVar[str] = "whatsapp"
    Settings: ClassVar[type[IntegrationSettings]] = WhatsAppSettings

    def __init__(self, settings: WhatsAppSettings, http: aiohttp.ClientSession) -> None:
        self.settings = settings
        self.http = http

    def address(self, customer: Customer) -> str | None:
        """The customer's number as WhatsApp takes it: E.164 digits without the `+` (stored numbers are E.164)."""
        digits = (customer.phone or "")[1:]
        return digits if (customer.phone or "").startswith("+") and digits.isdigit() and 8 <= len(digits) <= 15 \
            else None

    def render(self, message: Message) -> Payload:
        name, invoice, amount, balance = whatsapp_parameters(message)
        values = [name, f"{TEST_MARK}{invoice}" if message.test else invoice, amount, balance]
        return {
            "messaging_product": "whatsapp", "recipient_type": "individual", "to": message.recipient,
            "type": "template",
            "template": {"name": self.settings.template, "language": {"code": self.language(message.locale)},
                         "components": [{"type": "body", "parameters": [
                             {"type": "text", "text": " ".join(v.split())} for v in values]}]},  # no space runs
        }

    def language(self, locale: str) -> str:
        """The template language for a locale: `es-MX` → `es_MX`; with WHATSAPP_TEMPLATE_LANGUAGES, the closest
        approved one (`es_MX`, else `es`, else another `es_…`, else the first listed)."""
        wanted = locale.replace("-", "_")
        approved = [code.strip() for code in self.settings.template_languages.split(",") if code.strip()]
        if not approved:
            return wanted
        language = wanted.split("_")[0]
        for candidate in (wanted, language):
            if candidate in approved:
                return candidate
        return next((code for code in approved if code.split("_")[0] == language), approved[0])

    async def send(self, payload: Payload, *, key: str) -> Delivery:
        url = f"{self.settings.api_root}/{path_segment(self.settings.phone_number_id)}/messages"
        body = payload | {"biz_opaque_callback_data": key}
        return await unkeyed.post(self.http, self.name, url, self._outcome, json=body, headers=self._auth())

    def _outcome(self, status: int, body: str, headers: Headers) -> Delivery:
        if 200 <= status < 300:
            try:
                messages = json.loads(body).get("messages") or [{}]
                return Sent(str(messages[0].get("id") or "") or None)
            except (ValueError, AttributeError, LookupError, TypeError):
                return Sent()
        code, reason = _graph_error(body)
        if code in RETRYABLE_CODES:
            return Retry(f"whatsapp error {code}: {reason}", **retry_hint(headers))
        if code is not None:
            return Failed(f"whatsapp error {code}: {PERMANENT_CODES.get(code, reason)}")
        return unkeyed.outcome(self.name, status, reason, headers)

    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {secret(self.settings.access_token)}"}

    def rate_limit(self, payload: Payload) -> tuple[str, float] | None:
        return None

    def handshake(self, request: InboundRequest) -> Reply | None:
        """Meta's subscription check: `GET ?hub.mode=subscribe&hub.verify_token=…&hub.challenge=…`, answered with
        the challenge when the token is ours."""
        if request.method != "GET":
            return None
        mode, token = request.query.get("hub.mode"), request.query.get("hub.verify_token", "")
        challenge = request.query.get("hub.challenge", "")
        if mode != "subscribe" or not challenge:
            raise PayloadInvalid("expected hub.mode=subscribe with a hub.challenge")
        ours = secret(self.settings.verify_token)
        if not ours or not digest_matches(ours, [token.encode("utf-8", "surrogatepass")]):
            return Reply(status=403, body="verify token does not match")
        return Reply(body=challenge[:200])

    def statuses(self, request: InboundRequest) -> list[StatusUpdate]:
        app_secret = secret(self.settings.app_secret)
        if not app_secret:
            raise SignatureInvalid("WHATSAPP_APP_SECRET is not set: status webhooks cannot be verified")
        expected = "sha256=" + hmac.new(app_secret.encode(), request.body, hashlib.sha256).hexdigest()
        if not digest_matches(expected, [request.headers.get(SIGNATURE, "")]):
            raise SignatureInvalid(f"{SIGNATURE} missing or wrong")
        body = json_object(request.body)
        if body.get("object") != "whatsapp_business_account" or not isinstance(body.get("entry"), list):
            raise PayloadInvalid("not a whatsapp_business_account notification")
        updates = []
        for status in _statuses(body["entry"]):
            key, word = echoed_key(status.get("biz_opaque_callback_data")), status.get("status")
            if key is None or not isinstance(word, str) or word not in STATUSES:
                continue  # a message another app sent from this number, or a word we do not know: not ours
            updates.append(StatusUpdate(key=key, status=word, failed=word == "failed",
                                        at=from_unix(status.get("timestamp"), request.received_at),
                                        detail=display(_status_errors(status), 300)))
        return updates

    async def check(self, settings: CoreSettings) -> list[Finding]:
        """`GET /{phone_number_id}`: the token is accepted and the number is the business's."""
        url = f"{self.settings.api_root}/{path_segment(self.settings.phone_number_id)}"
        try:
            number = await fetch_json(self.http, self.name, "GET", url, what="the business phone number",
                                      headers=self._auth(),
                                      params={"fields": "display_phone_number,verified_name,quality_rating"})
        except ProviderRejected as exc:
            code, reason = _graph_error(exc.body)
            if code == 190:
                return [problem(f"WHATSAPP_ACCESS_TOKEN was refused ({reason}): create a system user's permanent "
                                "token with whatsapp_business_messaging (Business Settings → System users)")]
            return [problem(f"WHATSAPP_PHONE_NUMBER_ID {self.settings.phone_number_id} could not be read "
                            f"(HTTP {exc.status}, error {code}: {reason}): copy the Phone number ID from "
                            "WhatsApp → API Setup, not the number itself")]
        found = [ok(f"WHATSAPP_ACCESS_TOKEN accepted; sending from {number.get('display_phone_number')} "
                    f"({number.get('verified_name')}, quality {number.get('quality_rating', 'unknown')})")]
        if not self.settings.app_secret:
            found.append(problem("WHATSAPP_APP_SECRET is not set: failed deliveries cannot be verified, so none "
                                 "falls back to the customer's next channel"))
        return found


def _statuses(entries: list[Any]) -> list[dict[str, Any]]:
    found = []
    for entry in entries:
        changes = entry.get("changes") if isinstance(entry, dict) else None
        for change in changes if isinstance(changes, list) else []:
            value = change.get("value") if isinstance(change, dict) else None
            if isinstance(value, dict) and isinstance(value.get("statuses"), list):
                found += [s for s in value["statuses"] if isinstance(s, dict)]
    return found


def _status_errors(status: dict[str, Any]) -> str:
    errors = status.get("errors")
    words = []
    for error in errors if isinstance(errors, list) else []:
        if isinstance(error, dict):
            data = error.get("error_data")
            details = data.get("details") if isinstance(data, dict) else None
            words.append(f"{error.get('code')} {error.get('title') or ''} {details or ''}".strip())
    return "; ".join(words)[:300]


def _graph_error(body: str) -> tuple[int | None, str]:
    """The Graph API envelope `{"error": {"code", "message", "error_data": {"details"}}}`: (code, words)."""
    try:
        error = json.loads(body).get("error") or {}
        details = (error.get("error_data") or {}).get("details") or ""
        code = error.get("code")
        return (int(code) if isinstance(code, int) else None), \
            f"{error.get('message') or ''} {details}".strip()[:300] or body[:300]
    except (ValueError, AttributeError, TypeError):
        return None, body[:300]
