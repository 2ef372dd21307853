"""`POST /callbacks/{channel}`: delivery-status reports from providers, verified as each provider signs them.

Like `/webhooks`: a refusal stands even when its audit entry cannot be written (logged instead), and a database that
cannot take the reports answers 503, so the provider keeps them and sends them again. Never a 500.
"""

from __future__ import annotations

import logging

from aiohttp import web
from sqlalchemy.exc import SQLAlchemyError

from bot.errors import InboundError, SignatureInvalid
from bot.handlers.webhooks import error, inbound, reply
from bot.integrations.channels.base import AnswersHandshake, RepliesToCallbacks, ReportsStatus
from bot.keys import RUNTIME
from bot.runtime import Runtime
from bot.services import delivery_status

log = logging.getLogger(__name__)


class HandshakeRefused(SignatureInvalid):
    """the handshake's token is not ours"""

    status = 403


async def receive(request: web.Request) -> web.StreamResponse:
    runtime = request.app[RUNTIME]
    name = request.match_info["channel"]
    channel = runtime.channels.get(name)
    if not isinstance(channel, ReportsStatus):
        return error(404, f"channel {name!r} has no delivery-status callback here")
    try:
        updates = channel.statuses(await inbound(request, runtime))
    except InboundError as exc:
        await reject(runtime, name, exc)
        return error(exc.status, str(exc))
    try:
        changed = await delivery_status.record(runtime.db, runtime.notifier, name, updates)
    except (SQLAlchemyError, OSError) as exc:
        log.error("status callback %s could not be stored: %s", name, exc)
        return error(503, "could not store the delivery status right now; please retry")
    if changed:
        runtime.worker.wake()
    if isinstance(channel, RepliesToCallbacks):  # Twilio reads the answer to an inbound message as TwiML
        body, content_type = channel.callback_reply()
        return web.Response(text=body, content_type=content_type)
    return web.json_response({"received": len(updates), "changed": changed})


async def handshake(request: web.Request) -> web.StreamResponse:
    """`GET /callbacks/{channel}`: a provider checking, before it posts, that the URL is ours (WhatsApp)."""
    runtime = request.app[RUNTIME]
    name = request.match_info["channel"]
    channel = runtime.channels.get(name)
    if not isinstance(channel, AnswersHandshake):
        return error(405 if isinstance(channel, ReportsStatus) else 404, f"channel {name!r} has no handshake here")
    try:
        answer = channel.handshake(await inbound(request, runtime))
    except InboundError as exc:
        await reject(runtime, name, exc)
        return error(exc.status, str(exc))
    if answer is None:
        return error(405, "only POST delivers status reports here")
    if answer.status >= 400:
        await reject(runtime, name, HandshakeRefused(answer.body))
    return reply(answer)


async def reject(runtime: Runtime, channel: str, exc: InboundError) -> None:
    log.warning("status callback %s rejected (%s): %s", channel, exc.status, exc)
    try:
        async with runtime.db.transaction() as uow:
            uow.audit("callback.rejected", channel=channel, detail={"status": exc.status, "reason": str(exc)})
    except (SQLAlchemyError, OSError) as failure:
        log.error("could not audit the rejection of a %s status callback: %s", channel, failure)


def routes() -> list[web.RouteDef]:
    return [web.post("/callbacks/{channel}", receive), web.get("/callbacks/{channel}", handshake)]
