"""Fuzz of the WhatsApp and Mailgun status callbacks (and WhatsApp's GET handshake), on both engines: whatever
arrives, signed or not, the answer is never a 5xx and nothing is logged with a traceback.

Half of the bodies are a genuine status notification with a few values replaced by hostile ones, signed as the
provider signs (WhatsApp: X-Hub-Signature-256 over the body; Mailgun: the signature object inside the body), so
the parsers behind the signature checks are fuzzed too. Same settings as `test_endpoints`.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.channels.conftest import beams, mailgun, whatsapp  # noqa: F401  (fixtures)
from tests.channels.conftest import configs  # noqa: F401  (fixture: the three channels on their fakes)
from tests.fakes import mailgun as mg, whatsapp as wa
from tests.fuzz.test_endpoints import EXAMPLES, NASTY, header_value, leaf, paths, replaced

SENT = {"id": "wamid.HBgL000000000001", "to": "5215512345678", "biz_opaque_callback_data": "p1:receipt:whatsapp"}
MAILED = {"id": [f"<1@{mg.DOMAIN}>"], "to": ["jane@example.com"], "from": ["x"], "subject": ["y"],
          "v:notification_key": ["p1:receipt:mailgun"]}
QUERIES = ["", "?hub.mode=subscribe&hub.verify_token=paybot-verify-token&hub.challenge=%00",
           f"?hub.mode=subscribe&hub.verify_token={wa.VERIFY_TOKEN}&hub.challenge=" + "9" * 5000,
           "?hub.mode=subscribe&hub.challenge=1&hub.verify_token=%C3%A9", "?hub.mode=é&hub.mode=subscribe"]


def genuine(endpoint: str, now: int) -> Any:
    if endpoint == "/callbacks/whatsapp":
        return json.loads(wa.notification(wa.status(SENT, "failed", now, wa.undeliverable())))
    return {"signature": mg.EventSigner().signature(now), "event-data": mg.bounce(MAILED, now)}


@st.composite
def request_for(draw: st.DrawFn, endpoint: str, now: int) -> tuple[bytes, dict[str, str]]:
    kind = draw(st.sampled_from(["bytes", "json", "mutated", "mutated", "mutated"]))
    if kind == "bytes":
        return draw(st.sampled_from([b"", b"\x00", b"[]", b"null", b"{", b"\xff\xfe"]) | st.binary(max_size=200)), {}
    if kind == "json":
        document: Any = draw(st.dictionaries(st.text(max_size=10), leaf, max_size=6))
    else:
        document = genuine(endpoint, now)
        for path in draw(st.lists(st.sampled_from(paths(document)), min_size=1, max_size=3)):
            document = replaced(document, path, draw(leaf))
    signed = draw(st.booleans())
    if endpoint == "/callbacks/mailgun" and signed and isinstance(document, dict):
        document["signature"] = mg.EventSigner().signature(now)  # re-signed: the event data is what is fuzzed
    body = json.dumps(document).encode("utf-8", "surrogatepass")
    return body, wa.signed(body) if endpoint == "/callbacks/whatsapp" and signed else {}


@pytest.mark.parametrize("endpoint", ["/callbacks/whatsapp", "/callbacks/mailgun"])
@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
async def test_no_callback_makes_a_5xx_or_a_traceback(paybot, caplog, endpoint, data):
    method = data.draw(st.sampled_from(["GET", "POST", "POST"]), label="method")
    body, headers = data.draw(request_for(endpoint, int(paybot.clock().timestamp())), label="request")
    names = st.sampled_from(["Content-Type", "X-Hub-Signature-256", "Authorization"])
    headers |= data.draw(st.dictionaries(names, header_value, max_size=2), label="headers")
    query = data.draw(st.sampled_from(QUERIES + ["?x=" + n for n in NASTY[:3]]), label="query")
    seen = len(caplog.records)
    response = await paybot.client.request(method, endpoint + query, data=body, headers=headers)
    answer = await response.text()
    assert response.status < 500, f"{response.status}: {answer[:300]}"
    tracebacks = [r.getMessage() for r in caplog.records[seen:] if r.exc_info or "Traceback" in r.getMessage()]
    assert not tracebacks, tracebacks
