"""One contract, every registered payment source: HTTP in, what is stored, what is answered.

A source joins by being registered in `bot.integrations.sources.SOURCES`; its sample (how to sign a genuine
request) lives in `tests/contract/samples.py`. A source without a sample fails here.
"""

from __future__ import annotations

import json
import random

import pytest

from bot.integrations.sources import SOURCES
from bot.storage import models
from tests.contract.samples import SAMPLES, SourceSample


def missing_sample(name: str) -> str:
    return (f"payment source {name!r} is registered in bot.integrations.sources.SOURCES but has no contract "
            f"sample: add a class implementing SourceSample (configure, secrets, payment, malformed, sign, "
            f"signs_body) to tests/contract/samples.py and register it as SAMPLES[{name!r}]")


@pytest.fixture(params=sorted(SOURCES))
def source_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def sample(source_name: str) -> SourceSample:
    if source_name not in SAMPLES:
        pytest.fail(missing_sample(source_name))
    return SAMPLES[source_name]


@pytest.fixture
async def configs(source_name, sample, aiohttp_server):  # type: ignore[no-untyped-def]
    """Only the source under test runs (no channels: the contract is about what is received and stored)."""
    return {source_name: await sample.configure(aiohttp_server)}


async def post(paybot, name, signed):  # type: ignore[no-untyped-def]
    return await paybot.client.post(f"/webhooks/{name}", data=signed.body, headers=signed.headers)


async def stored(paybot) -> tuple[int, int, int]:  # type: ignore[no-untyped-def]
    return (len(await paybot.rows(models.WebhookEvent)), len(await paybot.rows(models.Payment)),
            len(await paybot.notifications()))


def test_every_registered_source_has_a_sample() -> None:
    missing = sorted(set(SOURCES) - set(SAMPLES))
    assert not missing, "\n".join(missing_sample(name) for name in missing)


async def test_a_genuine_request_is_stored_and_answered_2xx(paybot, source_name, sample, caplog):
    response = await post(paybot, source_name, sample.sign(sample.payment(), paybot.clock()))
    assert 200 <= response.status < 300, await response.text()
    [event] = await paybot.rows(models.WebhookEvent)
    assert event.source == source_name and event.body == sample.payment()
    await paybot.deliver()  # a source checked after the answer (PayPal IPN) is verified by then
    # In the chain as received, or as verified for one checked after the answer (anyone can send those).
    assert {"webhook.received", "webhook.verified"} & set(await paybot.audit_kinds())


async def assert_refused_and_nothing_stored(paybot, response, status, sample, logs):  # type: ignore[no-untyped-def]
    assert response.status == status
    assert (await response.json())["error"]
    assert await stored(paybot) == (0, 0, 0)
    assert await paybot.audit_kinds() == []  # a refusal is counted, never chained
    [summary] = await paybot.refusals()
    assert (summary.status, summary.count) == (status, 1)
    assert not any(secret in summary.example or secret in logs.text for secret in sample.secrets())


async def test_a_wrong_secret_is_401(paybot, source_name, sample, caplog):
    response = await post(paybot, source_name, sample.sign(sample.payment(), paybot.clock(), forged=True))
    await assert_refused_and_nothing_stored(paybot, response, 401, sample, caplog)


async def test_a_tampered_body_is_401(paybot, source_name, sample, caplog):
    if not sample.signs_body:
        pytest.skip(f"{source_name}'s check is a shared secret header: it cannot cover the body")
    genuine = sample.sign(sample.payment(), paybot.clock())
    tampered = genuine.body.replace(b"0", b"9", 1)
    assert tampered != genuine.body
    response = await paybot.client.post(f"/webhooks/{source_name}", data=tampered, headers=genuine.headers)
    await assert_refused_and_nothing_stored(paybot, response, 401, sample, caplog)


async def test_a_malformed_body_is_400_with_the_reason(paybot, source_name, sample, caplog):
    response = await post(paybot, source_name, sample.sign(sample.malformed(), paybot.clock()))
    await assert_refused_and_nothing_stored(paybot, response, 400, sample, caplog)


async def test_an_oversized_body_is_413(paybot, source_name, sample, caplog):
    limit = paybot.runtime.settings.max_body_bytes
    response = await post(paybot, source_name, sample.sign(b"{" + b" " * limit + b"}", paybot.clock()))
    await assert_refused_and_nothing_stored(paybot, response, 413, sample, caplog)


async def test_a_duplicate_delivery_is_2xx_and_stores_nothing_new(paybot, source_name, sample, caplog):
    first = await post(paybot, source_name, sample.sign(sample.payment(), paybot.clock()))
    assert 200 <= first.status < 300
    await paybot.runtime.settle()  # a notification resolved after its answer (`resolve_later`) is resolved by now
    before = await stored(paybot)
    paybot.clock.advance(60)  # a platform's retry comes later, freshly signed
    again = await post(paybot, source_name, sample.sign(sample.payment(), paybot.clock()))
    assert 200 <= again.status < 300
    assert await stored(paybot) == before
    assert before[0] == 1


async def test_settings_never_show_their_secrets(source_name, sample, configs):  # type: ignore[no-untyped-def]
    if not sample.secrets():
        pytest.skip(f"{source_name} holds no secret")
    settings = configs[source_name]
    shown = repr(settings) + str(settings) + repr(settings.model_dump())
    assert not any(secret in shown for secret in sample.secrets())


def mutations(document: object, seed: int, count: int = 40, keep: tuple[str, ...] = ()) -> list[object]:
    """The genuine payload with one value at a time replaced by something of the wrong shape. Fields named in
    `keep` are the sender's proof carried in the body (Business Central's clientState): changed, they are a
    wrong secret (401, tested above), so the fuzz leaves them alone."""
    paths: list[tuple[object, ...]] = []

    def walk(node: object, path: tuple[object, ...]) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in keep:
                    continue
                paths.append((*path, key))
                walk(value, (*path, key))
        elif isinstance(node, list):
            for index, value in enumerate(node):
                paths.append((*path, index))
                walk(value, (*path, index))

    walk(document, ())
    wrong = [None, [], {}, "", "x" * 300, -1, 10**30, True, "1e309", {"nested": [None]}]
    rng = random.Random(seed)
    variants = []
    for _ in range(count):
        copy = json.loads(json.dumps(document))
        *parents, last = rng.choice(paths)
        node = copy
        for step in parents:
            node = node[step]
        node[last] = rng.choice(wrong)
        variants.append(copy)
    return variants


def renamed(document: object, old: str, new: str) -> object:
    """The document with every string value `old` (the event's id) replaced by `new`: a new event, not a retry."""
    if isinstance(document, dict):
        return {key: renamed(value, old, new) for key, value in document.items()}
    if isinstance(document, list):
        return [renamed(value, old, new) for value in document]
    return new if document == old else document


async def test_signed_but_misshapen_payloads_are_refused_and_stored_nowhere_or_stored_whole(paybot, source_name,
                                                                                            sample):
    """Verification passes, so the parser meets every wrong shape. Each variant is a new event (its own id), so
    it is parsed rather than recognised as a retry. It is either refused with a 400 (nothing stored, one
    refusal counted) or accepted and kept exactly as sent; never a 401, never a 5xx."""
    try:
        genuine = json.loads(sample.payment())
    except ValueError:
        pytest.skip(f"{source_name}'s sample payload is not JSON")
    assert (await post(paybot, source_name, sample.sign(sample.payment(), paybot.clock()))).status == 200
    [first] = await paybot.rows(models.WebhookEvent)
    refused = 0
    keep = getattr(sample, "proof_fields", ())
    sent: set[bytes] = set()
    for n, variant in enumerate(mutations(genuine, seed=len(source_name), keep=keep)):
        body = json.dumps(renamed(variant, first.event_id, f"{first.event_id}-v{n}")).encode()
        if body in sent:  # the same wrong value drawn twice, and no id in the body to rename: a true retry
            continue
        sent.add(body)
        await paybot.runtime.settle()  # the previous variant's after-the-answer work (`resolve_later`) is done
        before, rejections = await stored(paybot), await rejected(paybot)
        response = await post(paybot, source_name, sample.sign(body, paybot.clock()))
        if response.status == 400:
            refused += 1
            assert (await response.json())["error"]
            assert await stored(paybot) == before, body
            assert await rejected(paybot) == rejections + 1
        else:
            assert 200 <= response.status < 300, (response.status, body, await response.text())
            answer = await response.read()  # empty where the platform wants no body (Xero)
            assert not answer or json.loads(answer).get("duplicate") is not True, body
            assert (await stored(paybot))[0] == before[0] + 1
            assert body in {event.body for event in await paybot.rows(models.WebhookEvent)}
    assert refused, "no variant was refused: the fuzz no longer reaches the parser"


async def rejected(paybot) -> int:  # type: ignore[no-untyped-def]
    """Refusals counted so far (summaries flushed, as the worker does); none of them chained."""
    assert "webhook.rejected" not in await paybot.audit_kinds()
    return sum(r.count for r in await paybot.refusals())
