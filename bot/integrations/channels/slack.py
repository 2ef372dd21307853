"""Slack: `chat.postMessage` through the official slack_sdk AsyncWebClient, one message per second per channel.

Finance messages are Block Kit cards from `cards/slack.py`; a customer whose preference is `slack` gets the
plain thank-you in their shared (Slack Connect) channel.
"""

from __future__ import annotations

from typing import ClassVar

import aiohttp
from pydantic import SecretStr
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.domain.parties import Customer
from bot.integrations.base import IntegrationSettings, secret, settings_config
from bot.integrations.channels.base import Payload
from bot.integrations.http import Delivery, Failed, Retry, Sent, retry_hint
from bot.messages import Message, Purpose, Surface, render, template_data
from bot.text import Mrkdwn
from cards import slack as cards

#: Slack errors after which the same request may succeed later.
TRANSIENT = frozenset({"ratelimited", "rate_limited", "internal_error", "fatal_error", "service_unavailable",
                       "request_timeout"})
PER_CHANNEL_INTERVAL = 1.0


class SlackSettings(IntegrationSettings):
    model_config = settings_config("SLACK")
    required = ("bot_token",)

    bot_token: SecretStr | None = None
    signing_secret: SecretStr | None = None
    base_url: str = "https://slack.com/api/"


class SlackChannel:
    name: ClassVar[str] = "slack"
    serves: ClassVar[str] = "slack"
    Settings: ClassVar[type[IntegrationSettings]] = SlackSettings

    def __init__(self, settings: SlackSettings, http: aiohttp.ClientSession) -> None:
        self.settings = settings
        self.client = AsyncWebClient(token=secret(settings.bot_token), base_url=settings.base_url, session=http)

    def address(self, customer: Customer) -> str | None:
        return customer.slack_channel or None

    def render(self, message: Message) -> Payload:
        words = render(message, Surface.SLACK)
        assert isinstance(words.text, Mrkdwn)
        if message.purpose is Purpose.RECEIPT:
            blocks = cards.customer_receipt(words.text)
        else:
            # Without the signing secret nobody can answer a button: the card carries none.
            blocks = cards.FINANCE_CARDS[message.purpose.value](template_data(message),
                                                                buttons=bool(self.settings.signing_secret))
        return {"channel": message.recipient, "text": words.text, "blocks": blocks}

    async def send(self, payload: Payload, *, key: str) -> Delivery:
        try:
            response = await self.client.chat_postMessage(**payload, metadata={
                "event_type": "paybot_notification", "event_payload": {"key": key}})
        except SlackApiError as exc:
            error = str(exc.response.get("error", "")) if exc.response is not None else ""
            status = exc.response.status_code if exc.response is not None else 0
            if status == 429 or error in TRANSIENT:
                headers = dict(exc.response.headers) if exc.response is not None else {}
                return Retry(f"slack: {error or status}", **retry_hint(headers))
            return Failed(f"slack: {error or status}")
        except (aiohttp.ClientError, TimeoutError) as exc:
            return Retry(f"slack unreachable: {exc.__class__.__name__}")
        return Sent(f"{response.get('channel')}:{response.get('ts')}")

    def rate_limit(self, payload: Payload) -> tuple[str, float] | None:
        return f"slack:{payload['channel']}", PER_CHANNEL_INTERVAL
