"""`GET /oauth/{source}/callback`: where a platform's consent page sends the operator back (`paybot connect`).

Plain text for the operator's browser: what was connected, or why not. A state that matches no connect in progress
is refused (400) before the code is used; a platform that refuses is a 502 naming why. Never a 500.
"""

from __future__ import annotations

import logging

from aiohttp import web

from bot import text
from bot.errors import InboundError, ProviderError
from bot.keys import RUNTIME

log = logging.getLogger(__name__)


async def callback(request: web.Request) -> web.StreamResponse:
    runtime = request.app[RUNTIME]
    name = request.match_info["source"]
    try:
        tenants = await runtime.connections.complete(name, request.query)
    except InboundError as exc:
        runtime.refusals.count(f"oauth:{name}", exc, request.remote)
        return web.Response(status=exc.status, text=f"Not connected: {exc}. Run `paybot connect {name}` again.\n")
    except ProviderError as exc:
        log.warning("connecting %s failed: %s", name, exc)
        return web.Response(status=502, text=f"Not connected: {exc}. Run `paybot connect {name}` again.\n")
    except Exception:  # noqa: BLE001  the operator gets a sentence, the log the traceback
        log.exception("connecting %s failed", name)
        return web.Response(status=503, text=f"Not connected: paybot could not finish. Run `paybot connect {name}` "
                                             "again.\n")
    names = "; ".join(f"{text.line(t.name)} ({text.line(t.id)})" for t in tenants)
    return web.Response(text=f"paybot is connected to {name}: {names}. You can close this window.\n")


def routes() -> list[web.RouteDef]:
    return [web.get("/oauth/{source}/callback", callback)]
