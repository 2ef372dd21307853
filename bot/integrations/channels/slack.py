"""Slack: `chat.postMessage` through the official slack_sdk AsyncWebClient, one message per second per channel.

Finance messages are Block Kit cards from `cards/slack.py`; a customer whose preference is `slack` gets the
plain thank-you in their shared (Slack Connect) channel.

Slack has no idempotency key, so each message carries ours as message metadata; after a worker died mid-send,
`find_sent` looks for it in `conversations.history` (scope `channels:history`/`groups:history`) before posting again.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, ClassVar
from urllib.parse import urlsplit

import aiohttp
from pydantic import SecretStr
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.domain.parties import Customer
from bot.integrations.base import IntegrationSettings, secret, settings_config
from bot.integrations.channels.base import CannotTell, Payload
from bot.integrations.checks import Finding, ok, problem
from bot.integrations.http import Delivery, Failed, Retry, Sent, retry_hint
from bot.messages import Message, Purpose, Surface, render, template_data
from bot.settings import Settings as CoreSettings
from bot.text import Mrkdwn
from cards import slack as cards

#: Slack errors after which the same request may succeed later.
TRANSIENT = frozenset({"ratelimited", "rate_limited", "internal_error", "fatal_error", "service_unavailable",
                       "request_timeout"})
PER_CHANNEL_INTERVAL = 1.0
EVENT_TYPE = "paybot_notification"
#: Reading back: how far before the attempt to start (our clock against Slack's), and how much history to read.
CLOCK_SKEW = timedelta(minutes=5)
HISTORY_PAGES, HISTORY_PAGE_SIZE = 5, 200


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
                "event_type": EVENT_TYPE, "event_payload": {"key": key}})
        except SlackApiError as exc:
            return _retry_later(exc, "slack") or Failed(f"slack: {_error(exc)}")
        except (aiohttp.ClientError, TimeoutError) as exc:
            return Retry(f"slack unreachable: {exc.__class__.__name__}")
        return Sent(f"{response.get('channel')}:{response.get('ts')}")

    async def find_sent(self, payload: Payload, *, key: str, since: datetime) -> Sent | Retry | CannotTell | None:
        channel, cursor = payload["channel"], None
        oldest = f"{(since - CLOCK_SKEW).timestamp():.6f}"
        try:
            for _ in range(HISTORY_PAGES):
                page = await self.client.conversations_history(
                    channel=channel, oldest=oldest, include_all_metadata=True, limit=HISTORY_PAGE_SIZE, cursor=cursor)
                for message in page.get("messages") or []:
                    if _carries(message, key):
                        return Sent(f"{channel}:{message.get('ts')}")
                cursor = (page.get("response_metadata") or {}).get("next_cursor")
                if not page.get("has_more") or not cursor:
                    return None
        except SlackApiError as exc:  # e.g. missing_scope: asking again will not help, so the worker sends
            return _retry_later(exc, "slack history") or CannotTell(f"slack history: {_error(exc)}")
        except (aiohttp.ClientError, TimeoutError) as exc:
            return Retry(f"slack unreachable: {exc.__class__.__name__}")
        return CannotTell(f"slack history: more than {HISTORY_PAGES * HISTORY_PAGE_SIZE} messages since the attempt")

    def rate_limit(self, payload: Payload) -> tuple[str, float] | None:
        return f"slack:{payload['channel']}", PER_CHANNEL_INTERVAL

    async def check(self, settings: CoreSettings) -> list[Finding]:
        """`auth.test` with SLACK_BOT_TOKEN, then `conversations.info` on each staff channel: is the bot in it?"""
        if (wrong := base_url_problem(self.settings.base_url)) is not None:
            return [problem(wrong)]
        try:
            me = await self.client.auth_test()
        except SlackApiError as exc:
            return [problem(f"SLACK_BOT_TOKEN was refused ({_error(exc)}): copy the Bot User OAuth Token (xoxb-…) "
                            "from the app's OAuth & Permissions page")]
        bot = str(me.get("user") or "paybot")
        found = [ok(f"SLACK_BOT_TOKEN accepted, @{bot} in {me.get('team')}")]
        for setting, channel in (("FINANCE_SLACK_CHANNEL", settings.finance_slack_channel),
                                 ("ESCALATION_SLACK_CHANNEL", settings.escalation_slack_channel)):
            if channel:
                found.append(await self._membership(setting, channel, bot))
        return found

    async def _membership(self, setting: str, channel: str, bot: str) -> Finding:
        try:
            info = await self.client.conversations_info(channel=channel)
        except SlackApiError as exc:
            error = _error(exc)
            if error == "channel_not_found":  # also a private channel the bot was never invited to
                return problem(f"{setting} {channel}: channel not found: check the id (channel details → "
                               f"bottom), or invite the bot if it is private (/invite @{bot})")
            if error == "missing_scope":
                needed = exc.response.get("needed") if exc.response is not None else None
                return problem(f"{setting} {channel}: the bot cannot look the channel up (missing scope "
                               f"{needed or 'channels:read'}): add it and reinstall the app")
            return problem(f"{setting} {channel}: {error}")
        conversation = info.get("channel") or {}
        name = conversation.get("name") or channel
        if not conversation.get("is_member"):
            return problem(f"{setting} {channel}: the bot is not in #{name}: invite the bot to #{name} "
                           f"(/invite @{bot} in the channel)")
        return ok(f"{setting} {channel}: the bot is in #{name}")


def base_url_problem(url: str) -> str | None:
    """Slack methods are joined onto SLACK_BASE_URL: without the final `/`, `…/api` + `chat.postMessage` becomes
    `…/chat.postMessage`, a 404 at the first payment."""
    parts = urlsplit(url)
    on_slack = (parts.hostname or "").endswith("slack.com")
    if not url.endswith("/") or (on_slack and parts.path != "/api/"):
        return (f"SLACK_BASE_URL {url!r} must be the Web API root ending in /api/ (https://slack.com/api/): "
                "Slack method names are appended to it")
    return None


def _carries(message: dict[str, Any], key: str) -> bool:
    metadata = message.get("metadata") or {}
    return metadata.get("event_type") == EVENT_TYPE and (metadata.get("event_payload") or {}).get("key") == key


def _error(exc: SlackApiError) -> str:
    if exc.response is None:
        return "no answer"
    return str(exc.response.get("error") or exc.response.status_code)


def _retry_later(exc: SlackApiError, what: str) -> Retry | None:
    """A Retry (after Slack's Retry-After) when the same request may succeed later, else None."""
    if exc.response is None or not (exc.response.status_code == 429 or _error(exc) in TRANSIENT):
        return None
    return Retry(f"{what}: {_error(exc)}", **retry_hint(dict(exc.response.headers)))
