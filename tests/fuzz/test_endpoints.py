"""Property-based fuzz of every endpoint, on both engines: whatever headers and body arrive, signed or not, the
answer is never a 5xx of paybot's own making and nothing is logged with a traceback.

Bodies are random bytes, or a genuine payload with a few values replaced by hostile ones (NUL, lone surrogates,
huge strings, numbers of the wrong type, nesting); half of them are signed with the right secret, so the parsers
behind the signature checks are fuzzed too. Deterministic (`derandomize`): CI sees the same examples every run.
Set `PAYBOT_FUZZ_EXAMPLES` for a longer run by hand.
"""

from __future__ import annotations

import json
import os
from typing import Any
from urllib.parse import parse_qsl, urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from slack_sdk.signature import SignatureVerifier

from bot.integrations.sources import SOURCES
from tests.contract.samples import SAMPLES
from tests.fakes import twilio as twilio_fake
from tests.fakes.sendgrid_events import EventSigner

EXAMPLES = int(os.environ.get("PAYBOT_FUZZ_EXAMPLES", "30"))
SLACK_SECRET = "slack-signing-secret"  # as in the `configs` fixture
SENDGRID = EventSigner()
PUBLIC = "https://paybot.example.com"  # settings_for's PUBLIC_BASE_URL, which Twilio signs
ENDPOINTS = [*(f"/webhooks/{name}" for name in sorted(SOURCES)), "/webhooks/nosuch", "/slack/events",
             "/callbacks/sendgrid", "/callbacks/twilio", "/healthz", "/readyz", "/metrics"]
#: The headers each endpoint reads (its signature scheme's), fuzzed most often; any endpoint may get any of them.
READS = {
    "/webhooks/stripe": ["Stripe-Signature"],
    "/webhooks/square": ["x-square-hmacsha256-signature", "square-environment", "square-retry-number"],
    "/webhooks/wave": ["X-Webhook-Secret"],
    "/webhooks/paypal": ["PAYPAL-TRANSMISSION-ID", "PAYPAL-TRANSMISSION-TIME", "PAYPAL-TRANSMISSION-SIG",
                         "PAYPAL-CERT-URL", "PAYPAL-AUTH-ALGO"],
    "/slack/events": ["X-Slack-Request-Timestamp", "X-Slack-Signature", "X-Slack-Retry-Num"],
    "/callbacks/sendgrid": ["X-Twilio-Email-Event-Webhook-Signature", "X-Twilio-Email-Event-Webhook-Timestamp"],
    "/callbacks/twilio": ["X-Twilio-Signature"],
}
HEADERS = sorted({name for names in READS.values() for name in names} | {"Idempotency-Key", "Authorization"})
NASTY = ["", "\x00", "\ud800", "\udcff", "²", "é" * 300, "x" * 5000, "t=²,v1=é", "v0=é", "abc", "-1", "1e999",
         "9" * 5000, "\n2026-12-01 INFO forged", "<!channel>", "../../v1/charges?x", "%00", "NaN"]

header_value = st.one_of(
    st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=60),
    st.sampled_from([n for n in NASTY if n.isprintable() and n.encode("utf-8", "replace").decode() == n]),
    st.sampled_from(["application/json", "application/x-www-form-urlencoded", "text/plain; charset=utf-8",
                     "application/x-www-form-urlencoded; charset=unicode_escape", "multipart/form-data"]),
)
leaf = st.one_of(st.sampled_from(NASTY), st.sampled_from(NASTY), st.text(max_size=30), st.integers(), st.none(),
                 st.booleans(), st.floats(allow_nan=False, allow_infinity=False), st.just([]), st.just({}),
                 st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=2))


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place a value sits in a JSON document."""
    found = [prefix] if prefix else []
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, child in items:
        found += paths(child, (*prefix, key))
    return found


def replaced(document: Any, path: tuple[Any, ...], value: Any) -> Any:
    """`document` with the value at `path` replaced (unchanged if an earlier replacement removed that place)."""
    if not path:
        return value
    if isinstance(document, dict) and path[0] in document:
        return document | {path[0]: replaced(document[path[0]], path[1:], value)}
    if isinstance(document, list) and isinstance(path[0], int) and path[0] < len(document):
        return [replaced(v, path[1:], value) if i == path[0] else v for i, v in enumerate(document)]
    return document


@st.composite
def body_for(draw: st.DrawFn, endpoint: str) -> bytes:
    source = endpoint.removeprefix("/webhooks/")
    genuine = SAMPLES[source].payment() if source in SAMPLES else None
    kind = draw(st.sampled_from(["bytes", "json", "form"] + (["mutated"] * 3 if genuine else [])
                                + (["twilio"] * 3 if endpoint == "/callbacks/twilio" else [])))
    if kind == "twilio":  # Twilio's own forms, any value made nasty
        nasty = st.sampled_from(NASTY) | st.text(max_size=20)
        message = {"sid": draw(nasty), "from": draw(nasty), "to": draw(nasty), "messaging_service_sid": None}
        form = draw(st.sampled_from([
            twilio_fake.status_form(message, draw(nasty | st.sampled_from(["failed", "delivered"])),
                                    draw(st.sampled_from([None, 21610, 30003]))),
            twilio_fake.inbound_form(draw(nasty), draw(nasty | st.sampled_from(["STOP", "start"])))]))
        return urlencode(form, errors="surrogatepass").encode()
    if kind == "bytes":
        odd = st.sampled_from([b"", b"\x00", b"[]", b"null", b"payload=%7B", b"\xff\xfe"])
        return draw(odd | st.binary(max_size=200))
    if kind == "form":
        pairs = draw(st.lists(st.tuples(st.text(max_size=12), st.sampled_from(NASTY) | st.text(max_size=20)),
                              max_size=6))
        return "&".join(f"{k}={v}" for k, v in pairs).encode("utf-8", "surrogatepass")
    if kind == "json":
        return json.dumps(draw(st.dictionaries(st.text(max_size=10), leaf, max_size=6))).encode()
    assert genuine is not None
    try:
        document = json.loads(genuine)
    except ValueError:  # a form-encoded genuine body (PayPal IPN): change bytes instead
        return genuine + draw(st.sampled_from(NASTY)).encode("utf-8", "surrogatepass")
    for path in draw(st.lists(st.sampled_from(paths(document)), min_size=1, max_size=3)):
        document = replaced(document, path, draw(leaf))
    return json.dumps(document).encode()


def signed_headers(endpoint: str, body: bytes, now: Any) -> dict[str, str]:
    """The headers a genuine sender would add for `body` (the fuzz then keeps or overrides them)."""
    source = endpoint.removeprefix("/webhooks/")
    if source in SAMPLES:
        return SAMPLES[source].sign(body, now).headers
    if endpoint == "/slack/events":
        ts = str(int(now.timestamp()))
        text = body.decode("utf-8", "replace")  # what paybot hands bolt
        return {"X-Slack-Request-Timestamp": ts,
                "X-Slack-Signature": SignatureVerifier(SLACK_SECRET).generate_signature(timestamp=ts, body=text) or ""}
    if endpoint == "/callbacks/sendgrid":
        return SENDGRID.headers(body, int(now.timestamp()))
    if endpoint == "/callbacks/twilio":
        try:
            params = parse_qsl(body.decode("utf-8"), keep_blank_values=True)
        except UnicodeDecodeError:
            return {}
        return {"X-Twilio-Signature": twilio_fake.signature(f"{PUBLIC}{endpoint}", params),
                "Content-Type": "application/x-www-form-urlencoded"}
    return {}


@pytest.fixture
async def configs(configs, sendgrid, aiohttp_server):  # type: ignore[no-untyped-def]
    """Every payment source (each pointed at its fakes), Slack chat-ops, SendGrid's and Twilio's callbacks."""
    from bot.integrations.channels.sendgrid import SendGridSettings
    from bot.integrations.channels.twilio import TwilioSettings
    from tests.fakes.sendgrid import API_KEY

    sources = {name: await SAMPLES[name].configure(aiohttp_server) for name in SOURCES}
    return configs | sources | {"sendgrid": SendGridSettings(
        _env_file=None, api_key=API_KEY, from_email="billing@weld.example", event_public_key=SENDGRID.public_key,
        base_url=str(sendgrid.server.make_url("/"))), "twilio": TwilioSettings(
        _env_file=None, account_sid=twilio_fake.ACCOUNT_SID, auth_token=twilio_fake.AUTH_TOKEN,
        from_number=twilio_fake.FROM_NUMBER, base_url="http://127.0.0.1:9", public_base_url=PUBLIC)}


def test_every_source_is_fuzzed() -> None:
    assert set(SOURCES) <= set(SAMPLES)


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
async def test_no_input_makes_a_5xx_or_a_traceback(paybot, caplog, endpoint, data):
    method = data.draw(st.sampled_from(["GET", "POST"]), label="method")
    body = data.draw(body_for(endpoint), label="body")
    headers = signed_headers(endpoint, body, paybot.clock()) if data.draw(st.booleans(), label="signed") else {}
    names = st.sampled_from(["Content-Type", *READS.get(endpoint, [])]) | st.sampled_from(HEADERS)
    headers |= data.draw(st.dictionaries(names, header_value, max_size=3), label="headers")
    query = data.draw(st.sampled_from(["", "?validationToken=abc", "?x=%00", "?a=é&a=1"]), label="query")
    seen = len(caplog.records)
    response = await paybot.client.request(method, endpoint + query, data=body, headers=headers)
    answer = await response.text()
    await paybot.runtime.settle()  # work started after the answer (PayPal IPN verification) fails here, if at all
    provider_said = response.status == 503 and "could not read the payment's details" in answer
    assert response.status < 500 or provider_said, f"{response.status}: {answer[:300]}"
    tracebacks = [r.getMessage() for r in caplog.records[seen:] if r.exc_info or "Traceback" in r.getMessage()]
    assert not tracebacks, tracebacks
