"""Fake Twilio REST API (2010-04-01 Messages) and Twilio's signed callbacks.

`POST /2010-04-01/Accounts/{sid}/Messages.json` (form-encoded, HTTP Basic with the Account SID and Auth Token or an
API key SK… and its secret), 201 with the Message resource; errors in Twilio's JSON envelope
`{"code", "message", "more_info", "status"}`: 20003 (401), 21211 (not a valid number), 21610 (replied STOP),
21614 (not a mobile number), 21602/21603/21606 (missing body / sender), 20429 (429). `GET` on the same path lists
the account's messages, newest first (`To` filter), as the SDK pages them. `GET /2010-04-01/Accounts/{sid}.json`
answers the account. Callbacks are signed as Twilio signs them: base64 HMAC-SHA1 of the URL followed by every form
parameter, sorted by name, name then value.
"""

from __future__ import annotations

import base64
import email.utils
import hashlib
import hmac
import itertools
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode

from aiohttp import BasicAuth, web

from tests.fakes.base import FakeProvider

ACCOUNT_SID = "AC" + "1" * 32
AUTH_TOKEN = "twilio-auth-token-0123456789abcd"
API_KEY_SID = "SK" + "2" * 32
API_KEY_SECRET = "twilio-api-key-secret"
FROM_NUMBER = "+15125550100"
MESSAGING_SERVICE_SID = "MG" + "3" * 32
ERRORS = {20003: "Authenticate", 20429: "Too Many Requests", 21211: "Invalid 'To' Phone Number",
          21602: "Message body is required.", 21603: "The 'From' phone number is required.",
          21606: "The 'From' phone number provided is not a valid message-capable Twilio phone number for this "
                 "destination/account", 21610: "Attempt to send to unsubscribed recipient",
          21614: "'To' number is not a valid mobile number"}


def error(code: int, status: int = 400) -> web.Response:
    return web.json_response({"code": code, "message": ERRORS.get(code, "Error"), "status": status,
                              "more_info": f"https://www.twilio.com/docs/errors/{code}"}, status=status)


def server_error() -> web.Response:
    return web.json_response({"code": 20500, "message": "An internal server error has occurred", "status": 500,
                              "more_info": "https://www.twilio.com/docs/errors/20500"}, status=500)


def signature(url: str, params: list[tuple[str, str]], token: str = AUTH_TOKEN) -> str:
    """`X-Twilio-Signature` for a form POST to `url`."""
    data = url + "".join(f"{name}{value}" for name, value in sorted(params))
    return base64.b64encode(hmac.new(token.encode(), data.encode(), hashlib.sha1).digest()).decode()


class FakeTwilio(FakeProvider):
    def __init__(self, clock: Any) -> None:
        super().__init__()
        self.clock = clock
        self._ids = itertools.count(1)
        self.messages: list[dict[str, Any]] = []     # every message accepted, oldest first
        self.unsubscribed: set[str] = set()          # numbers that replied STOP to our sender (21610)
        self.landlines: set[str] = set()             # numbers that cannot take SMS (21614)
        self.accept_then_fail = 0                    # the next N sends are accepted, but answered 500
        base = f"/2010-04-01/Accounts/{ACCOUNT_SID}"
        self.messages_path = f"{base}/Messages.json"
        self.app.router.add_post("/2010-04-01/Accounts/{sid}/Messages.json", self.create)
        self.app.router.add_get("/2010-04-01/Accounts/{sid}/Messages.json", self.list)
        self.app.router.add_get("/2010-04-01/Accounts/{sid}.json", self.account)

    def _authorised(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        try:
            auth = BasicAuth.decode(header)
        except ValueError:
            return False
        if request.match_info["sid"] != ACCOUNT_SID:
            return False
        return (auth.login, auth.password) in ((ACCOUNT_SID, AUTH_TOKEN), (API_KEY_SID, API_KEY_SECRET))

    async def create(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return error(20003, 401)
        form = dict(parse_qsl((await request.read()).decode(), keep_blank_values=True))
        to, body = form.get("To", ""), form.get("Body", "")
        sender = form.get("From") or form.get("MessagingServiceSid")
        if not sender:
            return error(21603)
        if form.get("From") and form["From"] != FROM_NUMBER:
            return error(21606)
        if not (to.startswith("+") and to[1:].isdigit() and 8 <= len(to) <= 16):
            return error(21211)
        if not body:
            return error(21602)
        if to in self.unsubscribed:
            return error(21610)
        if to in self.landlines:
            return error(21614)
        now = self.clock()
        message = {
            "sid": f"SM{next(self._ids):032x}", "account_sid": ACCOUNT_SID, "to": to, "from": form.get("From"),
            "messaging_service_sid": form.get("MessagingServiceSid"), "body": body,
            "status": "accepted" if form.get("MessagingServiceSid") else "queued",
            "num_segments": "0" if form.get("MessagingServiceSid") else "1", "direction": "outbound-api",
            "date_created": email.utils.format_datetime(now), "date_updated": email.utils.format_datetime(now),
            "date_sent": None, "error_code": None, "error_message": None, "price": None, "api_version": "2010-04-01",
            "uri": f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/SM.json",
            "status_callback": form.get("StatusCallback"),  # kept to post callbacks (Twilio does not echo it)
        }
        message["uri"] = f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/{message['sid']}.json"
        self.messages.append(message)
        if self.accept_then_fail:
            self.accept_then_fail -= 1
            return server_error()
        return web.json_response({k: v for k, v in message.items() if k != "status_callback"}, status=201)

    async def list(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return error(20003, 401)
        to = request.query.get("To")
        size = int(request.query.get("PageSize", "50"))
        found = [{k: v for k, v in m.items() if k != "status_callback"}
                 for m in reversed(self.messages) if to is None or m["to"] == to][:size]
        uri = f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json?PageSize={size}&Page=0"
        return web.json_response({"messages": found, "end": len(found) - 1, "first_page_uri": uri,
                                  "next_page_uri": None, "previous_page_uri": None, "page": 0, "page_size": size,
                                  "start": 0, "uri": uri})

    async def account(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return error(20003, 401)
        return web.json_response({"sid": ACCOUNT_SID, "status": "active", "type": "Full",
                                  "friendly_name": "Weld shop"})

    def sent_to(self, number: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if m["to"] == number]


def status_form(message: dict[str, Any], status: str, error_code: int | None = None) -> list[tuple[str, str]]:
    """The form Twilio posts to a message's StatusCallback."""
    params = [("AccountSid", ACCOUNT_SID), ("ApiVersion", "2010-04-01"), ("From", message["from"] or FROM_NUMBER),
              ("MessageSid", message["sid"]), ("MessageStatus", status), ("SmsSid", message["sid"]),
              ("SmsStatus", status), ("To", message["to"])]
    if message.get("messaging_service_sid"):
        params.append(("MessagingServiceSid", message["messaging_service_sid"]))
    if error_code is not None:
        params.append(("ErrorCode", str(error_code)))
    return params


def inbound_form(from_number: str, body: str, **extra: str) -> list[tuple[str, str]]:
    """The form Twilio posts to the number's messaging webhook when someone texts it."""
    sid = "SM" + hashlib.sha1(f"{from_number}{body}".encode()).hexdigest()[:32]
    return [("AccountSid", ACCOUNT_SID), ("ApiVersion", "2010-04-01"), ("Body", body), ("From", from_number),
            ("MessageSid", sid), ("NumMedia", "0"), ("NumSegments", "1"), ("SmsMessageSid", sid), ("SmsSid", sid),
            ("SmsStatus", "received"), ("To", FROM_NUMBER), *extra.items()]


def encoded(params: list[tuple[str, str]]) -> bytes:
    return urlencode(params).encode()


def when(message: dict[str, Any]) -> datetime:
    return email.utils.parsedate_to_datetime(message["date_created"])
