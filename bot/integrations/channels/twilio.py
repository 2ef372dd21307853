"""Twilio Programmable Messaging (SMS): `POST /2010-04-01/Accounts/{sid}/Messages.json` through the official SDK
and its aiohttp client, Basic auth (Account SID + Auth Token, or an API key), 201 + the message `sid`.

Numbers are sent in E.164, parsed with `phonenumbers` for the customer's country; the words are the SMS rendering
(`bot.messages.render_sms`: at most two segments, GSM-7 when it must). Twilio has no idempotency key, so only what
Twilio says it did not take (429 / 20429, a connection refused) is retried as such; after a 5xx or a timeout the
worker first asks Twilio for the message (`find_sent`) and sends again only when Twilio does not have it.

`/callbacks/twilio` takes the message's status callbacks (our key rides in the StatusCallback URL's query, which
Twilio signs with the rest) and the number's inbound messages: STOP and its synonyms opt the sender out of SMS,
START / YES / UNSTOP opt them back in, both recorded and audited. Both are verified with `X-Twilio-Signature`
(the SDK's `RequestValidator`: HMAC-SHA1 of the public URL and the sorted form parameters, base64).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, ClassVar
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import aiohttp
import phonenumbers
from multidict import MultiDict
from pydantic import AliasChoices, Field, SecretStr
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.http.response import Response
from twilio.request_validator import RequestValidator
from twilio.rest import Client

from bot.domain.parties import Customer
from bot.errors import PayloadInvalid, SignatureInvalid
from bot.integrations.base import IntegrationSettings, given, secret, settings_config
from bot.integrations.channels.base import CannotTell, ConsentChange, Payload, StatusUpdate
from bot.integrations.checks import Finding, ok, problem
from bot.integrations.http import Delivery, Failed, Retry, Sent
from bot.integrations.sources.base import InboundRequest
from bot.messages import Message, render_sms
from bot.settings import Settings as CoreSettings

API_ROOT = "https://api.twilio.com"
SIGNATURE = "X-Twilio-Signature"
#: Twilio's default opt-out and opt-in keywords (a whole message, any case); Advanced Opt-Out also says which in
#: `OptOutType`. https://help.twilio.com/articles/223134027
OPT_OUT = frozenset({"STOP", "STOPALL", "STOP ALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "OPTOUT", "REVOKE"})
OPT_IN = frozenset({"START", "YES", "UNSTOP"})
#: Error codes after which this number will never take this message: fall back to the next channel.
OPTED_OUT = 21610
#: Status-callback words meaning the message will not arrive.
FAILED_STATUSES = frozenset({"failed", "undelivered", "canceled"})
STATUSES = FAILED_STATUSES | {"accepted", "scheduled", "queued", "sending", "sent", "delivered", "read"}
#: Reading back after a worker died mid-send: our clock against Twilio's, and how many recent messages to read.
CLOCK_SKEW = timedelta(minutes=5)
RECENT = 20
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'


class TwilioSettings(IntegrationSettings):
    model_config = settings_config("TWILIO")
    required = ("account_sid", "auth_token")

    account_sid: str | None = None
    auth_token: SecretStr | None = None          # also what Twilio signs its callbacks with
    api_key_sid: str | None = None               # optional: authenticate API calls with an API key (SK…) instead
    api_key_secret: SecretStr | None = None
    from_number: str | None = None               # E.164, or …
    messaging_service_sid: str | None = None     # … a Messaging Service (MG…), which then picks the sender
    base_url: str = API_ROOT
    # Where Twilio posts status callbacks; default PUBLIC_BASE_URL + /callbacks/twilio.
    status_callback_url: str | None = None
    public_base_url: str | None = Field(default=None, validation_alias=AliasChoices("public_base_url",
                                                                                     "PUBLIC_BASE_URL"))
    timeout_seconds: float = 15.0

    def missing(self) -> list[str]:
        missing = super().missing()
        if not given(self.from_number) and not given(self.messaging_service_sid):
            missing.append("TWILIO_FROM_NUMBER or TWILIO_MESSAGING_SERVICE_SID")
        return missing

    def callback_url(self) -> str | None:
        if self.status_callback_url:
            return self.status_callback_url
        return f"{self.public_base_url.rstrip('/')}/callbacks/twilio" if self.public_base_url else None


class RootedTwilioHttpClient(AsyncTwilioHttpClient):
    """The SDK's aiohttp client on our session, its requests sent to TWILIO_BASE_URL (the SDK builds every URL on
    `https://api.twilio.com`: a proxy, a sandbox or a test's fake stands in by changing only the root)."""

    def __init__(self, base_url: str, session: aiohttp.ClientSession, timeout: float) -> None:
        super().__init__(pool_connections=False, timeout=timeout)
        self.session = session
        self.root = urlsplit(base_url.rstrip("/"))

    async def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Response:
        parts = urlsplit(url)
        url = urlunsplit((self.root.scheme, self.root.netloc, self.root.path + parts.path, parts.query, ""))
        auth = kwargs.pop("auth", None)
        if auth is not None:  # as a header: aiohttp deprecates the `auth=` the SDK would pass
            token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
            kwargs["headers"] = dict(kwargs.get("headers") or {}) | {"Authorization": f"Basic {token}"}
        return await super().request(method, url, *args, **kwargs)

    async def close(self) -> None:
        """The session is the runtime's: it closes it."""


class TwilioChannel:
    name: ClassVar[str] = "twilio"
    serves: ClassVar[str] = "sms"
    Settings: ClassVar[type[IntegrationSettings]] = TwilioSettings

    def __init__(self, settings: TwilioSettings, http: aiohttp.ClientSession) -> None:
        self.settings = settings
        api_key = settings.api_key_sid and secret(settings.api_key_secret)
        self.client = Client(
            username=settings.api_key_sid if api_key else settings.account_sid,
            password=api_key or secret(settings.auth_token), account_sid=settings.account_sid,
            http_client=RootedTwilioHttpClient(settings.base_url, http, settings.timeout_seconds))

    def address(self, customer: Customer) -> str | None:
        """The customer's phone in E.164, read for their country; None when there is none or it does not parse."""
        return e164(customer.phone, customer.country) if customer.phone else None

    def render(self, message: Message) -> Payload:
        return {"to": message.recipient, "body": render_sms(message)}

    def rate_limit(self, payload: Payload) -> tuple[str, float] | None:
        return None  # Twilio queues per sender on its side

    async def send(self, payload: Payload, *, key: str) -> Delivery:
        sender = ({"messaging_service_sid": self.settings.messaging_service_sid}
                  if self.settings.messaging_service_sid else {"from_": self.settings.from_number})
        callback = self.settings.callback_url()
        extra = {"status_callback": f"{callback}?n={callback_token(key)}"} if callback else {}
        try:
            message = await self.client.messages.create_async(to=payload["to"], body=payload["body"],
                                                              **sender, **extra)
        except TwilioRestException as exc:
            return _outcome(exc)
        except aiohttp.ClientConnectorError as exc:  # never reached Twilio: nothing was sent
            return Retry(f"twilio unreachable: {exc.__class__.__name__}")
        except (aiohttp.ClientError, TimeoutError, TwilioException) as exc:  # it may have been sent
            return Retry(f"twilio: no answer ({exc.__class__.__name__})", unknown=True)
        return Sent(message.sid)

    async def find_sent(self, payload: Payload, *, key: str, since: datetime) -> Sent | Retry | CannotTell | None:
        """The same words to the same number created since the attempt began: Twilio's most recent messages to it."""
        try:
            recent = await self.client.messages.list_async(to=payload["to"], limit=RECENT)
        except TwilioRestException as exc:
            if exc.status == 429 or exc.status >= 500:
                return Retry(f"twilio could not list messages just now ({exc.status})")
            return CannotTell(f"twilio refused to list messages ({exc.status} {exc.code})")
        except (aiohttp.ClientError, TimeoutError, TwilioException) as exc:
            return Retry(f"twilio unreachable: {exc.__class__.__name__}")
        for message in recent:
            created = message.date_created
            if message.body == payload["body"] and (created is None or created >= since - CLOCK_SKEW):
                return Sent(message.sid)
        return None

    def statuses(self, request: InboundRequest) -> Sequence[StatusUpdate | ConsentChange]:
        form = self._verified(request)
        if "MessageStatus" in form:
            return self._status(form, request)
        if "Body" in form and "From" in form:
            return self._inbound(form, request)
        raise PayloadInvalid("neither a status callback (MessageStatus) nor an inbound message (Body, From)")

    def callback_reply(self) -> tuple[str, str]:
        return EMPTY_TWIML, "text/xml"

    def _verified(self, request: InboundRequest) -> MultiDict[str]:
        signature = request.headers.get(SIGNATURE, "")
        if not signature:
            raise SignatureInvalid(f"{SIGNATURE} missing")
        try:
            form = MultiDict(parse_qsl(request.body.decode("utf-8"), keep_blank_values=True, strict_parsing=False))
        except UnicodeDecodeError:
            raise SignatureInvalid(f"{SIGNATURE} does not match") from None  # Twilio sends UTF-8 form bodies
        if not RequestValidator(secret(self.settings.auth_token)).validate(request.url, form, signature):
            raise SignatureInvalid(f"{SIGNATURE} does not match")
        if form.get("AccountSid") not in (None, self.settings.account_sid):
            raise SignatureInvalid("callback is for another Twilio account")
        return form

    def _status(self, form: MultiDict[str], request: InboundRequest) -> list[StatusUpdate | ConsentChange]:
        status = form["MessageStatus"].strip().lower()
        if status not in STATUSES:
            return []  # receiving/received/partially_delivered: not about a message of ours
        code = form.get("ErrorCode", "").strip()
        detail = f"error {code} {form.get('ErrorMessage', '')[:200]}".strip() if code else ""
        found: list[StatusUpdate | ConsentChange] = [StatusUpdate(
            key=key_of(request.query.get("n", "")), status=status, failed=status in FAILED_STATUSES,
            at=request.received_at, detail=detail, provider_id=form.get("MessageSid") or form.get("SmsSid"))]
        if code == str(OPTED_OUT) and form.get("To"):
            found.append(ConsentChange("sms", form["To"], True, f"twilio error {OPTED_OUT}: recipient opted out",
                                       request.received_at))
        return found

    def _inbound(self, form: MultiDict[str], request: InboundRequest) -> list[StatusUpdate | ConsentChange]:
        said = (form.get("OptOutType") or " ".join(form["Body"].split())).upper()
        if said in OPT_OUT or said in OPT_IN:
            return [ConsentChange("sms", form["From"], said in OPT_OUT, f"replied {said}", request.received_at)]
        return []  # HELP, or a reply paybot does not read

    async def check(self, settings: CoreSettings) -> list[Finding]:
        """`GET /2010-04-01/Accounts/{sid}.json`: the credentials are accepted and the account is active."""
        try:
            account = await self.client.api.v2010.accounts(self.settings.account_sid).fetch_async()
        except TwilioRestException as exc:
            return [problem(f"Twilio refused TWILIO_ACCOUNT_SID with its credentials (HTTP {exc.status}, error "
                            f"{exc.code}): check TWILIO_AUTH_TOKEN (or TWILIO_API_KEY_SID/_SECRET)")]
        except (aiohttp.ClientError, TimeoutError, TwilioException) as exc:
            return [problem(f"Twilio unreachable at TWILIO_BASE_URL ({exc.__class__.__name__})")]
        if account.status != "active":
            return [problem(f"Twilio account is {account.status}: no SMS will go out")]
        found = [ok("TWILIO credentials accepted, account active")]
        if not self.settings.callback_url():
            found.append(problem("PUBLIC_BASE_URL (or TWILIO_STATUS_CALLBACK_URL) is not set: Twilio cannot report "
                                 "undelivered texts, so no fallback follows them"))
        return found


def e164(phone: str, country: str) -> str | None:
    try:
        number = phonenumbers.parse(phone, country or "US")
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def callback_token(key: str) -> str:
    """Our key in the StatusCallback URL: base64url, so that no proxy or framework re-escapes what Twilio signed."""
    return base64.urlsafe_b64encode(key.encode()).decode().rstrip("=")


def key_of(token: str) -> str:
    try:
        return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError):
        return ""


def _outcome(exc: TwilioRestException) -> Delivery:
    """Twilio's answer, classified: only what Twilio says it did not process is retried as plain Retry."""
    reason = f"twilio answered {exc.status} (error {exc.code}): {str(exc.msg)[:200]}"
    if exc.status == 429 or exc.code == 20429:  # "never processed and always safe to retry"
        return Retry(reason)
    if exc.status >= 500:
        return Retry(reason, unknown=True)
    return Failed(reason, opted_out=exc.code == OPTED_OUT)
