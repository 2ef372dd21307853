"""The aiohttp application: routes, and the runtime and worker as cleanup contexts."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping

from aiohttp import web

from bot.handlers import callbacks, health, slack_events, webhooks
from bot.integrations.base import IntegrationSettings
from bot.keys import RUNTIME
from bot.runtime import Runtime, start
from bot.settings import Settings
from bot.storage.database import Clock, utcnow


def create_app(settings: Settings, *, configs: Mapping[str, IntegrationSettings] | None = None,
               clock: Clock = utcnow, run_worker: bool = True, runtime: Runtime | None = None) -> web.Application:
    # The body limit is enforced by the webhook handler (413, counted as a refusal); this is the outer bound.
    app = web.Application(client_max_size=settings.max_body_bytes + 1)
    app.add_routes(health.routes() + webhooks.routes() + callbacks.routes() + slack_events.routes())

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        app[RUNTIME] = runtime or await start(settings, configs=configs, clock=clock)
        app[RUNTIME].process_here = run_worker  # `serve --no-worker`: deferred payments are left to the workers
        yield
        if runtime is None:
            await app[RUNTIME].close()

    async def worker(app: web.Application) -> AsyncIterator[None]:
        stop = asyncio.Event()
        task = asyncio.create_task(app[RUNTIME].worker.run(stop))
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
    app.cleanup_ctx.append(worker if run_worker else refusal_flusher)
    return app
