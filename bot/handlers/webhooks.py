"""`/webhooks/{source}`: handshake, verify on the raw bytes, parse, store in one transaction, then answer.

2xx only after the commit (or for a recognised duplicate); 401 bad signature, 400 unparseable (with a short reason
that never quotes the input), 413 oversized, 404 unknown source, 503 when the platform should try again. Never 500
for bad input. Refusals are counted and summarised, never written one by one.
"""

from __future__ import annotations

import logging

from aiohttp import web
from sqlalchemy.exc import SQLAlchemyError

from bot.errors import InboundError, PayloadTooLarge, ProviderError
from bot.integrations.sources.base import InboundRequest, Reply, body_limit, read
from bot.keys import RUNTIME
from bot.runtime import Runtime
from bot.services.ingest import Backlogged

log = logging.getLogger(__name__)


STORED, DUPLICATE = b'{"received": true, "duplicate": false}', b'{"received": true, "duplicate": true}'


def reply(answer: Reply) -> web.Response:
    return web.Response(status=answer.status, text=answer.body, content_type=answer.content_type)


def error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


async def read_body(request: web.Request, limit: int) -> bytes:
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"body of {request.content_length} bytes is over the {limit}-byte limit")
    try:
        body = await request.read()  # the app's client_max_size (limit + 1) stops a chunked body early
    except web.HTTPRequestEntityTooLarge as exc:
        raise PayloadTooLarge(f"body is over the {limit}-byte limit") from exc
    if len(body) > limit:
        raise PayloadTooLarge(f"body is over the {limit}-byte limit")
    return body


async def inbound(request: web.Request, runtime: Runtime, limit: int | None = None) -> InboundRequest:
    body = await read_body(request, limit or runtime.settings.max_body_bytes) if request.can_read_body else b""
    return InboundRequest(
        method=request.method, url=runtime.settings.public_base_url.rstrip("/") + request.path_qs,
        headers=request.headers, query=request.query, body=body, received_at=runtime.db.clock(),
    )


async def receive(request: web.Request) -> web.StreamResponse:
    runtime = request.app[RUNTIME]
    name = request.match_info["source"]
    source = runtime.sources.get(name)
    if source is None:
        why = "not configured" if name in runtime.disabled else "unknown"
        return error(404, f"payment source {name!r} is {why}")
    with runtime.metrics.webhook_seconds.labels(name).time():
        try:
            limit = body_limit(source, request.headers, runtime.settings.max_body_bytes)  # the source's own, if less
            req = await inbound(request, runtime, limit)
            handshake = await source.handshake(req)
            if handshake is not None:
                return reply(handshake)
            if request.method != "POST":
                return error(405, "only POST delivers notifications here")
            source.verify(req)
            received = await read(source.parse, req)
            if not received.store:  # unverified and nothing we act on: answered, kept nowhere
                runtime.metrics.webhooks.labels(name, "ignored").inc()
                return reply(received.reply or Reply())
        except InboundError as exc:
            await reject(runtime, name, exc, request)
            return error(exc.status, str(exc))
        except ProviderError as exc:
            # Details could not be fetched: the platform keeps the event and retries; nothing is lost.
            log.warning("webhook %s: %s", name, exc)
            runtime.metrics.rejected.labels(name, "provider_unavailable").inc()
            return error(503, f"could not read the payment's details yet: {exc}")
        try:
            if runtime.settings.ingest_mode == "deferred":
                if runtime.process_here and received.payments and not (received.confirm_later or
                                                                       received.resolve_later):
                    await runtime.recording.room()  # recording keeps pace: while it is behind, the platform holds on
                recorded = await runtime.ingest.accept(name, req, received, process_here=runtime.process_here)
            else:
                recorded = await runtime.ingest.record(name, req, received)
        except Backlogged as exc:
            # Anyone can send unverified events: past the cap, none is kept. Not 2xx, so the platform keeps a
            # genuine one and sends it again later (PayPal retries IPN for days), once the verifier caught up.
            log.debug("webhook %s not stored: %s", name, exc)  # one line per forgery would be a log flood: counted
            runtime.metrics.rejected.labels(name, "verification_backlog").inc()
            return error(503, "too many notifications await verification; please retry later")
        except (SQLAlchemyError, OSError) as exc:
            # Not stored, so not answered 2xx: the platform keeps the event and sends it again.
            log.error("webhook %s could not be stored: %s", name, exc)
            runtime.metrics.rejected.labels(name, "storage_unavailable").inc()
            return error(503, "could not store the event right now; please retry")
    runtime.metrics.webhooks.labels(name, "duplicate" if recorded.duplicate else "stored").inc()
    if recorded.notification_ids:
        runtime.worker.wake()
    if recorded.pending:
        runtime.confirm_soon()  # after this answer goes out: the platform wants it first
    if recorded.deferred is not None and runtime.process_here:
        runtime.process_soon(recorded.deferred, received)
    if received.reply is not None:
        return reply(received.reply)
    return web.Response(body=DUPLICATE if recorded.duplicate else STORED, content_type="application/json")


async def reject(runtime: Runtime, source: str, exc: InboundError, request: web.Request) -> None:
    """A refused request costs no database write and no audit entry: it is counted in the metrics and in memory,
    and the worker writes one summary row per source, reason and remote per window (`bot.services.refusals`).
    Nothing of its body or headers is kept: they may carry secrets, and whoever sent them proved nothing."""
    runtime.refusals.count(source, exc, request.remote)


def routes() -> list[web.RouteDef]:
    return [web.post("/webhooks/{source}", receive), web.get("/webhooks/{source}", receive)]
