"""Fake Microsoft Teams / Bot Framework: the token endpoint, the OpenID metadata and its keys, and the connector.

    POST /{tenant}/oauth2/v2.0/token               client credentials (form), scope api.botframework.com/.default
    GET  /v1/.well-known/openidconfiguration        issuer + jwks_uri, as login.botframework.com serves them
    GET  /v1/.well-known/keys                       RSA keys generated here, each endorsed for `msteams`
    POST /{region}/v3/conversations/{id}/activities                 send (201 `{"id"}`)
    POST /{region}/v3/conversations/{id}/activities/{activityId}    reply in a thread
    PUT  /{region}/v3/conversations/{id}/activities/{activityId}    update a message the bot posted

The connector wants a token the fake issued; a conversation the bot is not in answers 403
`BotNotInConversationRoster`, as Teams does. The fake signs the JWTs Teams would send to paybot (`token()`).
"""

from __future__ import annotations

import itertools
import json
import secrets
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import jwt
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.fakes.base import FakeProvider

APP_ID = "00000000-0000-4000-8000-00000000a99b"
APP_PASSWORD = "teams-client-secret"
TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
ISSUER = "https://api.botframework.com"
REGION = "amer"


def connector_error(status: int, code: str, message: str, **headers: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status, headers=headers)


class FakeTeams(FakeProvider):
    def __init__(self, clock: Callable[[], datetime] = lambda: datetime(2026, 11, 28, 12, 0, tzinfo=UTC)) -> None:
        super().__init__()
        self.clock = clock
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)  # listed nowhere
        self.tokens: set[str] = set()
        self.installed: set[str] = set()  # conversations the bot is in
        self.messages: dict[tuple[str, str], dict[str, Any]] = {}  # (conversation, activity id) → activity
        self.posts: list[tuple[str, dict[str, Any]]] = []           # (conversation, activity), in order
        self._ids = itertools.count(1)
        self.server: Any = None
        self.app.router.add_post("/{tenant}/oauth2/v2.0/token", self.token_endpoint)
        self.app.router.add_get("/v1/.well-known/openidconfiguration", self.metadata)
        self.app.router.add_get("/v1/.well-known/keys", self.keys)
        self.app.router.add_post("/{region}/v3/conversations/{conversation}/activities", self.send)
        self.app.router.add_post("/{region}/v3/conversations/{conversation}/activities/{activity}", self.send)
        self.app.router.add_put("/{region}/v3/conversations/{conversation}/activities/{activity}", self.update)

    # --- addresses ---------------------------------------------------------------------------------------------

    def url(self, path: str) -> str:
        return str(self.server.make_url(path))

    @property
    def service_url(self) -> str:
        return self.url(f"/{REGION}/")

    @property
    def metadata_url(self) -> str:
        return self.url("/v1/.well-known/openidconfiguration")

    @property
    def token_url(self) -> str:
        return self.url(f"/{TENANT}/oauth2/v2.0/token")

    # --- Microsoft Entra ID and the Bot Framework's metadata ---------------------------------------------------

    async def token_endpoint(self, request: web.Request) -> web.Response:
        form = await request.post()
        if form.get("grant_type") != "client_credentials" or form.get("scope") != \
                "https://api.botframework.com/.default":
            return web.json_response({"error": "invalid_request", "error_description": "AADSTS900144: The request "
                                      "body must contain the following parameter: 'grant_type'."}, status=400)
        if form.get("client_id") != APP_ID or form.get("client_secret") != APP_PASSWORD:
            return web.json_response({"error": "invalid_client", "error_description": "AADSTS7000215: Invalid "
                                      "client secret provided."}, status=401)
        token = f"eyJ0eXAiOiJKV1Qi.{secrets.token_urlsafe(24)}"
        self.tokens.add(token)
        return web.json_response({"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599,
                                  "access_token": token})

    async def metadata(self, request: web.Request) -> web.Response:
        return web.json_response({"issuer": ISSUER, "authorization_endpoint": "https://invalid.botframework.com",
                                  "jwks_uri": self.url("/v1/.well-known/keys"),
                                  "id_token_signing_alg_values_supported": ["RS256"],
                                  "token_endpoint_auth_methods_supported": ["private_key_jwt"]})

    async def keys(self, request: web.Request) -> web.Response:
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key()))
        return web.json_response({"keys": [jwk | {"kid": "bf-key-1", "use": "sig", "kty": "RSA",
                                                  "endorsements": ["msteams", "emulator"]}]})

    def token(self, *, service_url: str | None = None, audience: str = APP_ID, expires_in: int = 3600,
              key: Any = None, kid: str = "bf-key-1", issuer: str = ISSUER) -> str:
        """What the Bot Framework puts in `Authorization: Bearer …` of each activity it sends the bot."""
        now = int(self.clock().timestamp())
        claims = {"serviceurl": service_url or self.service_url, "nbf": now - 5, "exp": now + expires_in,
                  "iss": issuer, "aud": audience}
        return jwt.encode(claims, key or self.key, algorithm="RS256", headers={"kid": kid})

    # --- the connector -----------------------------------------------------------------------------------------

    def _authorized(self, request: web.Request) -> bool:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        return scheme == "Bearer" and token in self.tokens

    async def send(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return connector_error(401, "Unauthorized", "Authorization has been denied for this request.")
        conversation = request.match_info["conversation"]
        if conversation not in self.installed:
            return connector_error(403, "BotNotInConversationRoster", "The bot is not part of the conversation "
                                   "roster.")
        activity = await request.json()
        activity_id = f"1764331{next(self._ids):06d}"
        if "activity" in request.match_info:
            activity["replyToId"] = request.match_info["activity"]
        self.messages[(conversation, activity_id)] = activity
        self.posts.append((conversation, activity))
        return web.json_response({"id": activity_id}, status=201)

    async def update(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return connector_error(401, "Unauthorized", "Authorization has been denied for this request.")
        conversation, activity_id = request.match_info["conversation"], request.match_info["activity"]
        if (conversation, activity_id) not in self.messages:
            return connector_error(404, "ActivityNotFoundInConversation", "The activity was not found.")
        self.messages[(conversation, activity_id)] = await request.json()
        return web.json_response({"id": activity_id})

    # --- what tests read ---------------------------------------------------------------------------------------

    def posted(self, conversation: str) -> list[tuple[str, dict[str, Any]]]:
        """(activity id, activity as it stands now) of each message the bot posted there, oldest first."""
        return [(activity_id, message) for (where, activity_id), message in self.messages.items()
                if where == conversation]

    def card(self, conversation: str, index: int = -1) -> tuple[str, dict[str, Any]]:
        """(activity id, Adaptive Card content) of a message the bot posted there."""
        activity_id, message = self.posted(conversation)[index]
        return activity_id, message["attachments"][0]["content"]
