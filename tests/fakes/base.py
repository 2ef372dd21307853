"""A recording fake provider: an aiohttp app that remembers every request and can be scripted to misbehave."""

from __future__ import annotations

import json
from collections import defaultdict, deque
from dataclasses import dataclass
from typing import Any

from aiohttp import web


@dataclass
class Call:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class FakeProvider:
    def __init__(self) -> None:
        self.calls: list[Call] = []
        self._scripted: dict[str, deque[web.Response]] = defaultdict(deque)
        self.app = web.Application()
        self.app.middlewares.append(self._record)

    @web.middleware
    async def _record(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.calls.append(Call(request.method, request.path, dict(request.headers), await request.read()))
        scripted = self._scripted[request.path]
        if scripted:
            return scripted.popleft()
        return await handler(request)

    def script(self, path: str, *responses: web.Response) -> None:
        """The next requests to `path` get these responses, in order, before normal service resumes."""
        self._scripted[path].extend(responses)

    def to(self, path: str) -> list[Call]:
        return [c for c in self.calls if c.path == path]
