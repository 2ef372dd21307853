"""Pusher Beams: a push notification to the customer's devices, `POST /publish_api/v1/instances/{id}/publishes/users`
(Bearer secret key, 200 `{"publishId": …}`), in the customer's locale: `render_push`, the email's subject as the
title and the SMS words as the body.

The Beams user id is the customer's `pusher-beams:` external id (`pusher-beams:user-42` → `user-42`), else their
paybot id: the id the customer's app authenticates its devices with (Beams' `generate_token`). One request carries
the APNs, FCM and web forms of the same words. Beams reports no delivery, so `publishId` is the last word.
"""

from __future__ import annotations

import json
from typing import ClassVar

import aiohttp
from pydantic import SecretStr

from bot.domain.parties import Customer
from bot.integrations.base import IntegrationSettings, secret, settings_config
from bot.integrations.channels import unkeyed
from bot.integrations.channels.base import Payload
from bot.integrations.checks import Finding, ok, problem
from bot.integrations.http import Delivery, Headers, Sent
from bot.integrations.sources.common import path_segment
from bot.messages import Message, render_push
from bot.settings import Settings as CoreSettings

EXTERNAL_ID = "pusher-beams"
MAX_USER_ID = 164  # Beams' limit on a user id


class PusherBeamsSettings(IntegrationSettings):
    model_config = settings_config("PUSHER_BEAMS")
    required = ("instance_id", "secret_key")

    instance_id: str | None = None
    secret_key: SecretStr | None = None
    base_url: str | None = None  # default https://{instance_id}.pushnotifications.pusher.com

    @property
    def api_root(self) -> str:
        return (self.base_url or f"https://{self.instance_id}.pushnotifications.pusher.com").rstrip("/")

    @property
    def publish_url(self) -> str:
        return f"{self.api_root}/publish_api/v1/instances/{path_segment(self.instance_id)}/publishes/users"


class PusherBeamsChannel:
    name: ClassVar[str] = "pusher-beams"
    serves: ClassVar[str] = "push"
    Settings: ClassVar[type[IntegrationSettings]] = PusherBeamsSettings

    def __init__(self, settings: PusherBeamsSettings, http: aiohttp.ClientSession) -> None:
        self.settings = settings
        self.http = http

    def address(self, customer: Customer) -> str | None:
        user = customer.external_ids.get(EXTERNAL_ID) or customer.id
        return user if 0 < len(user) <= MAX_USER_ID else None

    def render(self, message: Message) -> Payload:
        title, body = render_push(message)
        data = {"payment_id": str(message.receipt.payment_id), "invoice": message.receipt.invoice_number or "",
                "purpose": message.purpose.value}
        return {
            "users": [message.recipient],
            "apns": {"aps": {"alert": {"title": title, "body": body}}, "data": data},
            "fcm": {"notification": {"title": title, "body": body}, "data": data},
            "web": {"notification": {"title": title, "body": body}, "data": data},
        }

    async def send(self, payload: Payload, *, key: str) -> Delivery:
        # Beams has no idempotency key; ours rides in each platform's data, for the app that receives it.
        body: Payload = dict(payload)
        for platform in ("apns", "fcm", "web"):
            if platform in body:
                body[platform] = body[platform] | {"data": body[platform].get("data", {}) | {"notification_key": key}}
        return await unkeyed.post(self.http, self.name, self.settings.publish_url, self._outcome, json=body,
                                  headers=self._auth())

    def _outcome(self, status: int, body: str, headers: Headers) -> Delivery:
        """2xx: published; 429: retried; another 4xx: refused for good; 5xx: see `unkeyed.outcome`."""
        outcome = unkeyed.outcome(self.name, status, _reason(body), headers)
        if isinstance(outcome, Sent):
            try:
                return Sent(str(json.loads(body).get("publishId") or "") or None)
            except (ValueError, AttributeError):
                return Sent()
        return outcome

    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {secret(self.settings.secret_key)}"}

    def rate_limit(self, payload: Payload) -> tuple[str, float] | None:
        return None

    async def check(self, settings: CoreSettings) -> list[Finding]:
        """Beams has no read endpoint: a publish to no users is refused as invalid (400) once the instance and
        key are accepted, and nothing is sent."""
        try:
            async with self.http.post(self.settings.publish_url, json={"users": []}, headers=self._auth(),
                                      timeout=aiohttp.ClientTimeout(total=10)) as resp:
                status, reason = resp.status, _reason(await resp.text(errors="replace"))
        except (aiohttp.ClientError, TimeoutError) as exc:
            return [problem(f"could not reach {self.settings.api_root} ({exc.__class__.__name__})")]
        if status == 404:
            return [problem(f"PUSHER_BEAMS_INSTANCE_ID {self.settings.instance_id} is not a Beams instance "
                            f"({reason}): copy it from the dashboard's Keys tab")]
        if status in (401, 403):
            return [problem(f"PUSHER_BEAMS_SECRET_KEY was refused ({reason}): copy the primary key from the "
                            "instance's Keys tab")]
        if status in (400, 422):
            return [ok(f"PUSHER_BEAMS_SECRET_KEY accepted by instance {self.settings.instance_id}")]
        return [problem(f"Beams answered {status} ({reason}) to a publish to no users; try again later")]


def _reason(body: str) -> str:
    """Beams' `{"error": …, "description": …}`, shortened."""
    try:
        error = json.loads(body)
        return f"{error.get('error') or ''}: {error.get('description') or ''}".strip(": ")[:300] or body[:300]
    except (ValueError, AttributeError):
        return body[:300]
