"""`/healthz` (the process is up), `/readyz` (the database answers), `/metrics` (Prometheus)."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from bot.keys import RUNTIME
from bot.storage import outbox, unverified


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    try:
        await request.app[RUNTIME].db.ping()
    except Exception as exc:  # any failure to reach the database means "not ready"
        return web.json_response({"status": "unavailable", "error": type(exc).__name__}, status=503)
    return web.json_response({"status": "ready"})


async def metrics(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME]
    async with runtime.db.read() as session:
        depth = await outbox.depth(session)
        waiting = await unverified.resolving(session)
    for source in runtime.sources:
        runtime.metrics.waiting.labels(source).set(waiting.get(source, 0))
    for status in (outbox.PENDING, outbox.SENDING, outbox.SENT, outbox.DEAD):
        runtime.metrics.outbox_depth.labels(status).set(depth.get(status, 0))
    body = generate_latest(runtime.metrics.registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def routes() -> list[web.RouteDef]:
    return [web.get("/healthz", healthz), web.get("/readyz", readyz), web.get("/metrics", metrics)]
