"""`POST /slack/events`: slash commands, interactivity and events on one URL, answered by a slack-bolt `AsyncApp`.

Mounted only when `SLACK_BOT_TOKEN` and `SLACK_SIGNING_SECRET` are set (otherwise the path answers 404). Bolt
verifies every request's signature with a 5-minute tolerance; its verifier reads paybot's clock, so verification
stays on in tests that drive time by hand (in production the clock is the real one). Listeners `ack()` at once
and do their work afterwards in a task tracked here, so shutdown (and a test) can wait for it to finish.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response
from slack_bolt.app.async_app import AsyncApp
from slack_bolt.middleware.request_verification.async_request_verification import AsyncRequestVerification
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_sdk.signature import Clock as SignatureClock
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient

from bot.errors import PayloadTooLarge
from bot.handlers import slack
from bot.handlers.slack import InFlight
from bot.handlers.webhooks import error, read_body
from bot.integrations.base import secret
from bot.integrations.channels.slack import SlackChannel
from bot.integrations.sources.common import unix_seconds
from bot.keys import RUNTIME
from bot.runtime import Runtime
from bot.services.staff.access import StaffAccess
from bot.services.staff.actions import StaffDesk
from bot.services.staff.escalations import Escalations
from bot.services.staff.queries import StaffQueries
from bot.storage.database import Clock

log = logging.getLogger(__name__)


class _Clock(SignatureClock):
    def __init__(self, clock: Clock) -> None:
        self.clock = clock

    def now(self) -> float:
        return self.clock().timestamp()


class StrictVerifier(SignatureVerifier):
    """slack_sdk's check, refusing what it would trip over: a timestamp that is not ASCII digits (`int()` raises)
    or a non-ASCII signature (`hmac.compare_digest` raises)."""

    def is_valid(self, body: str | bytes, timestamp: str | None, signature: str | None) -> bool:
        if not timestamp or not signature or not unix_seconds(timestamp) or not signature.isascii():
            return False
        return super().is_valid(body, timestamp, signature)


class ClockedRequestVerification(AsyncRequestVerification):
    """Bolt's own signature check, on paybot's clock instead of `time.time()`."""

    def __init__(self, signing_secret: str, clock: Clock) -> None:
        super().__init__(signing_secret)
        self._clocked = StrictVerifier(signing_secret, clock=_Clock(clock))

    @property
    def verifier(self) -> SignatureVerifier:
        return self._clocked

    def _debug_log_error(self, signature: str, timestamp: str, body: str) -> None:
        self.logger.info("refused a request with an invalid or stale Slack signature (timestamp %r)", timestamp)


@dataclass
class SlackOps:
    bolt: AsyncApp
    inflight: InFlight


SLACK_OPS = web.AppKey("slack_ops", SlackOps)


def build(runtime: Runtime) -> SlackOps | None:
    channel = runtime.channels.get("slack")
    if not isinstance(channel, SlackChannel):
        return None
    signing_secret = secret(channel.settings.signing_secret).strip()
    if not signing_secret:  # blank would crash bolt's verifier at start-up: Slack chat-ops stay off, and say so
        log.info("Slack events disabled (/slack/events answers 404): SLACK_SIGNING_SECRET not set")
        return None
    client = AsyncWebClient(token=secret(channel.settings.bot_token), base_url=channel.settings.base_url,
                            session=runtime.http)
    bolt = AsyncApp(client=client, signing_secret=signing_secret, request_verification_enabled=False,
                    before_authorize=ClockedRequestVerification(signing_secret, runtime.db.clock))
    settings = runtime.settings

    async def members_of(group: str) -> list[str]:
        response = await client.usergroups_users_list(usergroup=group)
        return [str(u) for u in response.get("users") or []]

    inflight = InFlight()
    slack.register(bolt, slack.Staff(
        db=runtime.db, desk=StaffDesk(runtime.db, runtime.notifier),
        escalations=Escalations(runtime.db, runtime.notifier, settings), queries=StaffQueries(runtime.db),
        access=StaffAccess(settings.finance_slack_users, settings.finance_slack_usergroup, members_of,
                           runtime.db.clock),
        inflight=inflight, http=runtime.http))
    return SlackOps(bolt, inflight)


async def events(request: web.Request) -> web.StreamResponse:
    ops = request.app.get(SLACK_OPS)
    if ops is None:
        return error(404, "Slack is not configured (SLACK_BOT_TOKEN and SLACK_SIGNING_SECRET)")
    runtime = request.app[RUNTIME]
    try:
        body = await read_body(request, runtime.settings.max_body_bytes)
    except PayloadTooLarge as exc:
        return error(exc.status, str(exc))
    try:  # bolt parses the body before its middleware checks the signature: a 500 for anyone, unless caught
        bolt_request = AsyncBoltRequest(body=body.decode("utf-8", errors="replace"), query=request.query_string,
                                        headers=request.headers)  # type: ignore[arg-type]
    except Exception as exc:  # noqa: BLE001  the boundary: whatever bolt's parser tripped on
        log.info("refused a Slack request bolt cannot parse (%s)", type(exc).__name__)
        return error(400, "not a Slack request paybot can parse")
    return await to_aiohttp_response(await ops.bolt.async_dispatch(bolt_request))


async def lifecycle(app: web.Application) -> AsyncIterator[None]:
    """After the runtime is up: build the bolt app; at shutdown, let started work finish first."""
    ops = build(app[RUNTIME])
    if ops is not None:
        app[SLACK_OPS] = ops
    yield
    if ops is not None:
        await ops.inflight.drain()


def routes() -> list[web.RouteDef]:
    return [web.post("/slack/events", events)]
