"""`POST /callbacks/{channel}`: delivery-status reports from providers, verified as each provider signs them."""

from __future__ import annotations

import logging

from aiohttp import web

from bot.errors import InboundError
from bot.handlers.webhooks import error, inbound
from bot.integrations.channels.base import ReportsStatus
from bot.keys import RUNTIME
from bot.services import delivery_status

log = logging.getLogger(__name__)


async def receive(request: web.Request) -> web.StreamResponse:
    runtime = request.app[RUNTIME]
    name = request.match_info["channel"]
    channel = runtime.channels.get(name)
    if not isinstance(channel, ReportsStatus):
        return error(404, f"channel {name!r} has no delivery-status callback here")
    try:
        updates = channel.statuses(await inbound(request, runtime))
    except InboundError as exc:
        log.warning("status callback %s rejected (%s): %s", name, exc.status, exc)
        async with runtime.db.transaction() as uow:
            uow.audit("callback.rejected", channel=name, detail={"status": exc.status, "reason": str(exc)})
        return error(exc.status, str(exc))
    changed = await delivery_status.record(runtime.db, runtime.notifier, name, updates)
    if changed:
        runtime.worker.wake()
    return web.json_response({"received": len(updates), "changed": changed})


def routes() -> list[web.RouteDef]:
    return [web.post("/callbacks/{channel}", receive)]
