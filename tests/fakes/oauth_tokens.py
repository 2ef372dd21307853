"""An OAuth2 token endpoint as the accounting platforms run theirs, for their fakes to mount.

`authorization_code` and `refresh_token` grants; access tokens expire when the test says (`expire`); refresh
tokens rotate on every use where the platform rotates them (Xero, FreshBooks) and a used or revoked one is answered
`400 {"error": "invalid_grant"}`, as the platforms do. Client authentication in HTTP Basic or in the body (form or
JSON, whichever the platform takes).
"""

from __future__ import annotations

import base64
import itertools
import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web


@dataclass
class TokenEndpoint:
    client_id: str
    client_secret: str
    rotates: bool = True
    lifetime: int = 1800
    access_tokens: set[str] = field(default_factory=set)
    refresh_tokens: set[str] = field(default_factory=set)
    codes: dict[str, str] = field(default_factory=dict)  # authorization code -> redirect_uri
    grants: list[str] = field(default_factory=list)      # grant types asked for, in order
    _serial: Any = field(default_factory=lambda: itertools.count(1))

    def issue(self, prefix: str = "") -> tuple[str, str]:
        """A fresh access token and refresh token pair (what a connected tenant starts with)."""
        n = next(self._serial)
        access, refresh = f"{prefix}access-{n}", f"{prefix}refresh-{n}"
        self.access_tokens.add(access)
        self.refresh_tokens.add(refresh)
        return access, refresh

    def expire(self) -> None:
        """Every access token issued so far stops working (the API answers 401)."""
        self.access_tokens.clear()

    def revoke(self) -> None:
        """The firm disconnected paybot: no refresh token works any more."""
        self.refresh_tokens.clear()
        self.access_tokens.clear()

    def valid(self, authorization: str, scheme: str = "Bearer") -> bool:
        return authorization.startswith(f"{scheme} ") and authorization.removeprefix(f"{scheme} ") in self.access_tokens

    async def handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        if request.content_type == "application/json":
            try:
                args = {k: str(v) for k, v in json.loads(raw or b"{}").items()}
            except ValueError:
                return self.error(400, "invalid_request")
        else:
            args = dict(parse_qsl(raw.decode(), keep_blank_values=True)) | dict(request.query)
        client = self.client_of(request, args)
        if client != (self.client_id, self.client_secret):
            return self.error(401, "invalid_client")
        grant = args.get("grant_type", "")
        self.grants.append(grant)
        if grant == "refresh_token":
            token = args.get("refresh_token", "")
            if token not in self.refresh_tokens:
                return self.error(400, "invalid_grant")
            if self.rotates:
                self.refresh_tokens.discard(token)
                access, refresh = self.issue()
            else:
                access, refresh = self.issue()
                self.refresh_tokens.discard(refresh)
                refresh = token
            return self.tokens(access, refresh if self.rotates else None)
        if grant == "authorization_code":
            if args.get("code") not in self.codes:
                return self.error(400, "invalid_grant")
            del self.codes[args["code"]]
            access, refresh = self.issue()
            return self.tokens(access, refresh)
        return self.error(400, "unsupported_grant_type")

    @staticmethod
    def client_of(request: web.Request, args: dict[str, str]) -> tuple[str, str]:
        auth = request.headers.get("Authorization", "")
        if auth.startswith("Basic "):
            user, _, password = base64.b64decode(auth.removeprefix("Basic ")).decode().partition(":")
            return user, password
        return args.get("client_id", ""), args.get("client_secret", "")

    def tokens(self, access: str, refresh: str | None) -> web.Response:
        body: dict[str, Any] = {"access_token": access, "token_type": "Bearer", "expires_in": self.lifetime}
        if refresh is not None:
            body["refresh_token"] = refresh
        return web.json_response(body)

    @staticmethod
    def error(status: int, code: str) -> web.Response:
        return web.json_response({"error": code}, status=status)
