"""Fake Slack Web API: Bearer `xoxb-` tokens, HTTP 200 with `ok:false` errors, 429 + `Retry-After` when scripted.

Messages keep their `metadata`; `conversations.history` returns them newest first, from `oldest` on, with the
metadata only when `include_all_metadata` is set, a page of `limit` at a time with a `next_cursor`. Message
timestamps follow the clock the fake is given (the test's), so `oldest` means what it means at Slack.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

from tests.fakes.base import FakeProvider

BOT_TOKEN = "xoxb-test-token"


def slack_error(error: str, status: int = 200, **headers: str) -> web.Response:
    return web.json_response({"ok": False, "error": error}, status=status, headers=headers)


def rate_limited(retry_after: int = 1) -> web.Response:
    return slack_error("ratelimited", 429, **{"Retry-After": str(retry_after)})


class FakeSlack(FakeProvider):
    def __init__(self, channels: tuple[str, ...] = ("C0FINANCE", "C0ESCALATE", "C0SHARED"),
                 clock: Callable[[], datetime] = lambda: datetime(2025, 11, 28, 12, 0, tzinfo=UTC)) -> None:
        super().__init__()
        self.channels = set(channels)
        self.clock = clock
        self.messages: dict[tuple[str, str], dict[str, Any]] = {}  # (channel, ts) -> message
        self.usergroup_members: dict[str, list[str]] = {}
        self.views: list[dict[str, Any]] = []
        self._ts = itertools.count(1)
        self.not_member: set[str] = set()  # channels that exist but the bot was never invited to
        self.app.router.add_post("/auth.test", self.auth_test)
        self.app.router.add_post("/conversations.info", self.conversations_info)
        self.app.router.add_get("/conversations.info", self.conversations_info)
        self.app.router.add_post("/chat.postMessage", self.post_message)
        self.app.router.add_post("/chat.update", self.update)
        self.app.router.add_get("/conversations.history", self.history)
        self.app.router.add_post("/conversations.history", self.history)
        self.app.router.add_post("/views.open", self.views_open)
        self.app.router.add_post("/usergroups.users.list", self.usergroup_users)
        self.app.router.add_get("/usergroups.users.list", self.usergroup_users)  # Web API methods take GET too
        # response_url targets (hooks.slack.com in production): a slash command's and an interaction's
        self.responses: list[dict[str, Any]] = []
        self.app.router.add_post("/commands/{team}/{id}/{secret}", self.response_url)
        self.app.router.add_post("/actions/{team}/{id}/{secret}", self.response_url)

    @staticmethod
    async def _args(request: web.Request) -> dict[str, Any]:
        raw = await request.read()
        if request.content_type == "application/json":
            return dict(request.query) | json.loads(raw or b"{}")
        return dict(request.query) | dict(parse_qsl(raw.decode()))

    @staticmethod
    def _authorized(request: web.Request) -> bool:
        return request.headers.get("Authorization", "") == f"Bearer {BOT_TOKEN}"

    async def auth_test(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return slack_error("invalid_auth")
        return web.json_response({"ok": True, "url": "https://acme.slack.com/", "team": "Acme", "user": "paybot",
                                  "team_id": "T0ACME", "user_id": "U0PAYBOT", "bot_id": "B0PAYBOT"})

    async def conversations_info(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return slack_error("invalid_auth")
        channel = (await self._args(request)).get("channel")
        if channel not in self.channels:
            return slack_error("channel_not_found")
        return web.json_response({"ok": True, "channel": {
            "id": channel, "name": channel.lower().removeprefix("c0"), "is_channel": True, "is_private": False,
            "is_member": channel not in self.not_member}})

    async def post_message(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return slack_error("invalid_auth")
        args = await self._args(request)
        if args.get("channel") not in self.channels:
            return slack_error("channel_not_found")
        if args.get("channel") in self.not_member:
            return slack_error("not_in_channel")
        if not args.get("text") and not args.get("blocks"):
            return slack_error("no_text")
        metadata = args.get("metadata")
        if isinstance(metadata, str):  # form-encoded posts carry it as JSON text
            metadata = json.loads(metadata)
        if metadata is not None and not (isinstance(metadata, dict) and metadata.get("event_type")
                                         and isinstance(metadata.get("event_payload"), dict)):
            return slack_error("invalid_metadata_format")
        ts = f"{int(self.clock().timestamp())}.{next(self._ts):06d}"
        message = {"type": "message", "text": args.get("text"), "blocks": args.get("blocks"), "ts": ts,
                   "bot_id": "B0PAYBOT"} | ({"metadata": metadata} if metadata else {})
        self.messages[(args["channel"], ts)] = message
        return web.json_response({"ok": True, "channel": args["channel"], "ts": ts, "message": message})

    async def update(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return slack_error("invalid_auth")
        args = await self._args(request)
        key = (args.get("channel"), args.get("ts"))
        if key not in self.messages:
            return slack_error("message_not_found")
        self.messages[key] |= {"text": args.get("text"), "blocks": args.get("blocks")}  # type: ignore[index]
        return web.json_response({"ok": True, "channel": key[0], "ts": key[1], "text": args.get("text")})

    async def history(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return slack_error("invalid_auth")
        args = await self._args(request)
        channel = args.get("channel")
        if channel not in self.channels:
            return slack_error("channel_not_found")
        oldest, limit = float(args.get("oldest") or 0), min(int(args.get("limit") or 100), 999)
        inclusive = str(args.get("inclusive", "")).lower() in ("1", "true")
        with_metadata = str(args.get("include_all_metadata", "")).lower() in ("1", "true")
        found = sorted(((m for (c, ts), m in self.messages.items() if c == channel and (float(ts) > oldest or inclusive and float(ts) == oldest))),
                       key=lambda m: float(m["ts"]), reverse=True)
        start = int(args.get("cursor") or 0)
        page = [m if with_metadata else {k: v for k, v in m.items() if k != "metadata"}
                for m in found[start:start + limit]]
        more = start + limit < len(found)
        return web.json_response({"ok": True, "messages": page, "has_more": more,
                                  "response_metadata": {"next_cursor": str(start + limit) if more else ""}})

    async def views_open(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return slack_error("invalid_auth")
        args = await self._args(request)
        if not args.get("trigger_id"):
            return slack_error("invalid_trigger_id")
        view = args["view"] if isinstance(args.get("view"), dict) else json.loads(args.get("view", "{}"))
        if view.get("type") != "modal" or not view.get("title") or not isinstance(view.get("blocks"), list):
            return slack_error("invalid_arguments")
        self.views.append(view)
        return web.json_response({"ok": True, "view": {"id": f"V{len(self.views):04d}", **view}})

    async def usergroup_users(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return slack_error("invalid_auth")
        args = await self._args(request)
        group = args.get("usergroup")
        if group not in self.usergroup_members:
            return slack_error("no_such_subteam")
        return web.json_response({"ok": True, "users": self.usergroup_members[group]})

    async def response_url(self, request: web.Request) -> web.Response:
        """Slack answers a response_url post with a bare `ok`, or a 404 `no_text` when there is nothing to show."""
        body = json.loads(await request.read() or b"{}")
        if not body.get("text") and not body.get("blocks"):
            return web.Response(status=404, text="no_text")
        self.responses.append(body | {"url": request.path})
        return web.Response(text="ok")

    def replies(self, path_prefix: str = "/") -> list[str]:
        """The text of every response_url post, oldest first."""
        return [r["text"] for r in self.responses if r["url"].startswith(path_prefix)]

    def posted(self, channel: str | None = None) -> list[dict[str, Any]]:
        """chat.postMessage calls Slack accepted, oldest first."""
        return [m | {"channel": c} for (c, _), m in self.messages.items() if channel in (None, c)]
