"""Driving a source the way its platform does, and reading what reached the customer."""

from __future__ import annotations

import json
from typing import Any

from tests.contract.samples import SAMPLES, payload


def load(source: str, name: str, **changes: Any) -> dict[str, Any]:
    """A committed payload, with top-level fields changed."""
    return json.loads(payload(source, name)) | changes


async def post(paybot, source: str, body: dict[str, Any] | bytes, *, forged: bool = False,  # type: ignore[no-untyped-def]
               **headers: str):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    signed = SAMPLES[source].sign(raw, paybot.clock(), forged=forged)
    return await paybot.client.post(f"/webhooks/{source}", data=signed.body, headers=signed.headers | headers)


def mail_text(mail: dict[str, Any]) -> str:
    return next(c["value"] for c in mail["content"] if c["type"] == "text/plain")
