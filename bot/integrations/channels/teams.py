"""Microsoft Teams through the Bot Framework connector: the bot posts Adaptive Cards to conversations it was
installed in (`POST {serviceUrl}/v3/conversations/{id}/activities`) and updates them (`PUT …/activities/{id}`).

The service URL comes from the conversation reference saved when the bot was installed there
(`bot.services.teams_conversations`), so posts are proactive and survive restarts; a conversation the bot was never
installed in, or was removed from, fails at once and for good (the customer's next channel is tried, finance told).
Outbound calls carry a client-credentials token from TEAMS_TOKEN_URL (scope `https://api.botframework.com/.default`),
cached until shortly before it expires. Without TEAMS_APP_ID (TEAMS_LOCAL_MODE=true, for the Emulator) no token is
sent and inbound activities are not authenticated.

Graph cannot post ordinary channel messages as an application (only for migration), so posting is the bot's.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, ClassVar
from urllib.parse import quote

import aiohttp
from pydantic import SecretStr

from bot.domain.parties import Customer
from bot.integrations.base import IntegrationSettings, given, secret, settings_config
from bot.integrations.channels.base import Payload
from bot.integrations.checks import Finding, ok, problem
from bot.integrations.http import Delivery, Failed, Retry, Sent, retry_hint
from bot.messages import Message, Purpose, render, template_data
from bot.services.teams_conversations import TeamsConversations
from bot.settings import Settings as CoreSettings
from bot.storage.database import Database
from bot import text
from cards import teams as cards

log = logging.getLogger(__name__)

BOT_FRAMEWORK_SCOPE = "https://api.botframework.com/.default"
#: Teams' own advice: back off and retry on these; any other refusal is final (a 5xx after the body was sent may
#: have posted the message, and the connector has no idempotency key: not retried, so never posted twice).
TRANSIENT = frozenset({429, 412, 502, 504})
#: The bot is not (or no longer) in the conversation, or the conversation or its service URL is gone.
GONE = frozenset({403, 404, 410})
TOKEN_MARGIN = timedelta(minutes=5)
PER_CONVERSATION_INTERVAL = 1.0


class TeamsSettings(IntegrationSettings):
    model_config = settings_config("TEAMS")
    required = ("app_id",)

    app_id: str | None = None                 # the Azure Bot's Microsoft App ID
    app_password: SecretStr | None = None     # its client secret
    app_tenant_id: str | None = None          # single-tenant bots: the tenant that owns the app registration
    local_mode: bool = False                  # no app id: the Emulator's unauthenticated mode, on purpose only
    openid_metadata_url: str = "https://login.botframework.com/v1/.well-known/openidconfiguration"
    token_url: str | None = None              # default: the tenant's (or botframework.com's) v2.0 token endpoint

    def missing(self) -> list[str]:
        return [] if self.local_mode or given(self.app_id) else super().missing()

    @property
    def authenticated(self) -> bool:
        return given(self.app_id)

    @property
    def token_endpoint(self) -> str:
        tenant = (self.app_tenant_id or "").strip() or "botframework.com"
        return self.token_url or f"https://login.microsoftonline.com/{quote(tenant)}/oauth2/v2.0/token"


@dataclass(frozen=True, slots=True)
class Gone(Failed):
    """A final refusal meaning the bot cannot post there any more (removed, or the conversation is gone)."""


@dataclass
class _Token:
    value: str
    expires_at: datetime


class TeamsConnector:
    """The Bot Framework connector REST API, with the bot's token."""

    def __init__(self, settings: TeamsSettings, http: aiohttp.ClientSession, db: Database) -> None:
        self.settings = settings
        self.http = http
        self.clock = db.clock
        self._token: _Token | None = None
        self._lock = asyncio.Lock()

    async def headers(self) -> dict[str, str]:
        if not self.settings.authenticated:
            return {}
        async with self._lock:  # one token request at a time: the others wait for its answer
            if self._token is None or self.clock() >= self._token.expires_at:
                self._token = await self._fetch_token()
        return {"Authorization": f"Bearer {self._token.value}"}

    def forget_token(self) -> None:
        self._token = None

    async def _fetch_token(self) -> _Token:
        form = {"grant_type": "client_credentials", "client_id": self.settings.app_id or "",
                "client_secret": secret(self.settings.app_password), "scope": BOT_FRAMEWORK_SCOPE}
        async with self.http.post(self.settings.token_endpoint, data=form,
                                  timeout=aiohttp.ClientTimeout(total=15)) as resp:
            body = await resp.text()
            if resp.status != 200:
                raise TokenRefused(resp.status, _reason(body), resp.headers)
            answer = json.loads(body)
        lifetime = timedelta(seconds=int(answer.get("expires_in") or 3600))
        return _Token(str(answer["access_token"]), self.clock() + max(lifetime - TOKEN_MARGIN, lifetime / 2))

    async def call(self, method: str, service_url: str, path: str, activity: dict[str, Any]) -> Delivery:
        url = f"{service_url.rstrip('/')}/v3/conversations/{path}"
        try:
            headers = await self.headers()
            async with self.http.request(method, url, json=activity, headers=headers,
                                         timeout=aiohttp.ClientTimeout(total=15)) as resp:
                body = await resp.text()
                return self._outcome(resp.status, body, resp.headers)
        except TokenRefused as exc:
            return exc.outcome()
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            return Retry(f"teams unreachable: {exc.__class__.__name__}")

    def _outcome(self, status: int, body: str, headers: Any) -> Delivery:
        if 200 <= status < 300:
            try:
                return Sent(str(json.loads(body).get("id") or "") or None)
            except (ValueError, AttributeError):
                return Sent()
        reason = f"teams answered {status}: {_reason(body)}"
        if status in TRANSIENT:
            return Retry(reason, **retry_hint(headers))
        if status == 401:  # our token: expired early or revoked; the next attempt fetches a new one
            self.forget_token()
            return Retry(reason)
        return Gone(reason) if status in GONE else Failed(reason)


class TokenRefused(Exception):
    def __init__(self, status: int, reason: str, headers: Any) -> None:
        super().__init__(f"the token endpoint answered {status}: {reason}")
        self.status, self.reason, self.headers = status, reason, headers

    def outcome(self) -> Delivery:
        if self.status == 429 or self.status >= 500:
            return Retry(f"teams token: {self}", **retry_hint(self.headers))
        return Failed(f"teams token: {self} (check TEAMS_APP_ID, TEAMS_APP_PASSWORD, TEAMS_APP_TENANT_ID)")


class TeamsChannel:
    name: ClassVar[str] = "teams"
    serves: ClassVar[str] = "teams"
    Settings: ClassVar[type[IntegrationSettings]] = TeamsSettings

    def __init__(self, settings: TeamsSettings, http: aiohttp.ClientSession) -> None:
        self.settings = settings
        self.http = http
        self._conversations: TeamsConversations | None = None
        self._connector: TeamsConnector | None = None

    def attach(self, db: Database) -> None:
        """The database the conversation references live in (the runtime calls this once it is open)."""
        self._conversations = TeamsConversations(db)
        self._connector = TeamsConnector(self.settings, self.http, db)

    @property
    def conversations(self) -> TeamsConversations:
        assert self._conversations is not None, "TeamsChannel.attach(db) was not called"
        return self._conversations

    @property
    def connector(self) -> TeamsConnector:
        assert self._connector is not None, "TeamsChannel.attach(db) was not called"
        return self._connector

    def address(self, customer: Customer) -> str | None:
        return customer.teams_conversation or None

    def render(self, message: Message) -> Payload:
        words = text.teams(render(message).text)
        if message.purpose is Purpose.RECEIPT:
            card = cards.customer_receipt(words)
        else:
            card = cards.FINANCE_CARDS[message.purpose.value](template_data(message))
        return card_payload(message.recipient, card, words)

    async def send(self, payload: Payload, *, key: str) -> Delivery:
        conversation_id = str(payload["conversation"])
        conversation = await self.conversations.get(conversation_id)
        if conversation is None:
            return Failed(f"teams: the bot was never installed in conversation {conversation_id} (add the paybot "
                          "app to that team, channel or chat)")
        if conversation.removed:
            return Failed(f"teams: the bot was removed from conversation {conversation_id}")
        outcome = await self.connector.call("POST", conversation.service_url,
                                            f"{quote(conversation_id, safe='')}/activities", payload["activity"])
        if isinstance(outcome, Gone):  # a stale service URL or a removed bot: stop trying there
            await self.conversations.remove(conversation_id)
        return outcome

    async def update(self, conversation_id: str, activity_id: str, activity: dict[str, Any]) -> Delivery:
        """Replace a message the bot posted (a card after staff acted on it)."""
        conversation = await self.conversations.get(conversation_id)
        if conversation is None or conversation.removed:
            return Failed(f"teams: no reference for conversation {conversation_id}")
        path = f"{quote(conversation_id, safe='')}/activities/{quote(activity_id, safe='')}"
        return await self.connector.call("PUT", conversation.service_url, path, activity | {"id": activity_id})

    async def reply(self, service_url: str, conversation_id: str, reply_to: str | None,
                    activity: dict[str, Any]) -> Delivery:
        """An answer to a staff command, in the conversation (and thread) it came from."""
        path = f"{quote(conversation_id, safe='')}/activities"
        if reply_to:
            path += f"/{quote(reply_to, safe='')}"
        return await self.connector.call("POST", service_url, path, activity)

    def rate_limit(self, payload: Payload) -> tuple[str, float] | None:
        return f"teams:{payload['conversation']}", PER_CONVERSATION_INTERVAL

    async def check(self, settings: CoreSettings) -> list[Finding]:
        """A token from TEAMS_TOKEN_URL, then the staff conversations: has the bot been installed in each?"""
        found: list[Finding] = []
        if self.settings.authenticated:
            try:
                self.connector.forget_token()
                await self.connector.headers()
                found.append(ok(f"TEAMS_APP_ID {self.settings.app_id}: token issued by {self.settings.token_endpoint}"))
            except TokenRefused as exc:
                found.append(problem(f"TEAMS_APP_ID/TEAMS_APP_PASSWORD refused by the token endpoint: {exc}"))
            except (aiohttp.ClientError, TimeoutError) as exc:
                found.append(problem(f"TEAMS_TOKEN_URL {self.settings.token_endpoint} unreachable: {exc}"))
        else:
            found.append(problem("Teams runs in local/emulator mode (no TEAMS_APP_ID): activities are NOT "
                                 "authenticated"))
        for setting, conversation_id in (("FINANCE_TEAMS_CONVERSATION", settings.finance_teams_conversation),
                                         ("ESCALATION_TEAMS_CONVERSATION", settings.escalation_teams_conversation)):
            if conversation_id:
                found.append(await self.installed_in(setting, conversation_id))
        return found

    async def installed_in(self, setting: str, conversation_id: str) -> Finding:
        conversation = await self.conversations.get(conversation_id)
        if conversation is None:
            return problem(f"{setting} {conversation_id}: the bot was never installed there: add the paybot app to "
                           "that team or chat (posts there fail until then)")
        if conversation.removed:
            return problem(f"{setting} {conversation_id}: the bot was removed from it: add the paybot app again")
        return ok(f"{setting} {conversation_id}: the bot is installed there")


def card_payload(conversation_id: str, card: cards.Card, summary: str = "") -> Payload:
    """The outbox payload: where, and the message activity carrying the card."""
    activity: dict[str, Any] = {"type": "message", "attachments": [cards.attachment(card)]}
    if summary:
        activity["summary"] = summary[:200]
    return {"conversation": conversation_id, "activity": activity}


def _reason(body: str) -> str:
    """The connector's `{"error": {"code", "message"}}` (or the token endpoint's `error_description`), shortened."""
    try:
        answer = json.loads(body)
        error = answer.get("error")
        if isinstance(error, dict):
            return f"{error.get('code')}: {error.get('message')}"[:300]
        return str(answer.get("error_description") or error or body)[:300]
    except (ValueError, AttributeError):
        return body[:300]
