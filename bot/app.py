"""The aiohttp application: routes, and the runtime and worker as cleanup contexts."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from bot.handlers import callbacks, health, oauth, slack_events, teams, webhooks
from bot.integrations.base import IntegrationSettings
from bot.keys import RUNTIME
from bot.runtime import Runtime, start
from bot.settings import Settings
from bot.storage.database import Clock, utcnow

log = logging.getLogger(__name__)


def create_app(settings: Settings, *, configs: Mapping[str, IntegrationSettings] | None = None,
               clock: Clock = utcnow, run_worker: bool = True, runtime: Runtime | None = None) -> web.Application:
    # The body limit is enforced by the webhook handler (413, counted as a refusal); this is the outer bound.
    app = web.Application(client_max_size=settings.max_body_bytes + 1,
                          middlewares=[body_deadline(settings.read_timeout_seconds)])
    app.add_routes(health.routes() + webhooks.routes() + callbacks.routes() + slack_events.routes()
                   + teams.routes() + oauth.routes())

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        app[RUNTIME] = runtime or await start(settings, configs=configs, clock=clock)
        app[RUNTIME].process_here = run_worker  # `serve --no-worker`: deferred payments are left to the workers
        yield
        if runtime is None:
            await app[RUNTIME].close()

    async def worker(app: web.Application) -> AsyncIterator[None]:
        stop = asyncio.Event()
        task = asyncio.create_task(app[RUNTIME].run_worker(stop))
        yield
        stop.set()
        await task

    async def refusal_flusher(app: web.Application) -> AsyncIterator[None]:
        stop = asyncio.Event()  # without a worker here, nothing else would write this process's refusal counts
        task = asyncio.create_task(app[RUNTIME].refusals.run(stop))
        yield
        stop.set()
        await task

    app.cleanup_ctx.append(lifecycle)
    app.cleanup_ctx.append(slack_events.lifecycle)  # after the runtime it is built on
    app.cleanup_ctx.append(teams.lifecycle)
    app.cleanup_ctx.append(worker if run_worker else refusal_flusher)
    return app


def server_options(settings: Settings) -> dict[str, Any]:
    """What `web.AppRunner` needs beyond the app. aiohttp closes a connection that has not sent a whole request
    head within `keepalive_timeout` (its default is an hour, so a slow-loris client could hold sockets for ever);
    the same bound closes idle keep-alive connections."""
    return {"keepalive_timeout": settings.read_timeout_seconds}


def body_deadline(seconds: float) -> Middleware:
    """A request's body must arrive within `seconds` of its head, or the connection is closed: aiohttp has no such
    read timeout of its own. Only the reading is timed; the handler's work after the last byte is not."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.can_read_body or request.content.is_eof():
            return await handler(request)
        expired = False

        def hang_up() -> None:
            nonlocal expired
            if not request.content.is_eof() and request.transport is not None:
                expired = True
                request.transport.close()

        timer = asyncio.get_running_loop().call_later(seconds, hang_up)
        try:
            return await handler(request)
        except ConnectionResetError:
            if not expired:
                raise
            log.info("closed a connection whose body did not arrive within %s s (%s %s from %s)",
                     seconds, request.method, request.path, request.remote)
            raise web.HTTPRequestTimeout() from None
        finally:
            timer.cancel()

    return middleware
