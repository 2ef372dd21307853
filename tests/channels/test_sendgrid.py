"""SendGrid's Mail Send call against the fake: its timeout is a setting, and the fake's faults are opt-in."""

from __future__ import annotations

import asyncio

import aiohttp
from aiohttp import web

from bot.integrations.channels.sendgrid import SendGridChannel, SendGridSettings
from bot.integrations.http import Retry, Sent
from tests.fakes import sendgrid as sg

MAIL = {"from": {"email": "billing@weld.example"}, "subject": "Thank you",
        "personalizations": [{"to": [{"email": "ada@example.com"}]}],
        "content": [{"type": "text/plain", "value": "Thank you."}]}


def channel(server, http: aiohttp.ClientSession, **overrides: object) -> SendGridChannel:
    settings = SendGridSettings(_env_file=None, api_key=sg.API_KEY, from_email="billing@weld.example",
                                base_url=str(server.make_url("/")), **overrides)  # type: ignore[arg-type]
    return SendGridChannel(settings, http)


async def test_a_call_past_sendgrid_timeout_seconds_is_retried(aiohttp_server):
    never = asyncio.Event()  # SendGrid holds the call: only our timeout ends it

    async def held(request: web.Request) -> web.Response:
        await never.wait()
        return web.Response(status=202)

    app = web.Application()
    app.router.add_post("/v3/mail/send", held)
    server = await aiohttp_server(app)
    async with aiohttp.ClientSession() as http:
        outcome = await channel(server, http, timeout_seconds=0.01).send(MAIL, key="n:1")
    assert isinstance(outcome, Retry) and "TimeoutError" in outcome.reason


async def test_the_fakes_faults_are_seeded_and_only_when_asked(aiohttp_server):
    plain = sg.FakeSendGrid()
    faulty = sg.FakeSendGrid(sg.Faults(rate=1.0, seed=3, hang_seconds=0.0, retry_after=7))
    async with aiohttp.ClientSession() as http:
        assert isinstance(await channel(await aiohttp_server(plain.app), http).send(MAIL, key="n:1"), Sent)
        send = channel(await aiohttp_server(faulty.app), http).send
        outcomes = [await send(MAIL, key=f"n:{n}") for n in range(40)]
    kinds = [o.kind for o in faulty.outcomes]
    assert set(kinds) == set(sg.FAULTS) and plain.outcomes == []
    for kind, outcome in zip(kinds, outcomes, strict=True):
        assert isinstance(outcome, Sent) == (kind == "late")  # held 0 s: "late" is answered in time here
        if kind == "429":
            assert isinstance(outcome, Retry) and outcome.after == 7
    assert len(faulty.accepted) == kinds.count("late")
    again = sg.FakeSendGrid(sg.Faults(rate=1.0, seed=3, hang_seconds=0.0))
    async with aiohttp.ClientSession() as http:
        send = channel(await aiohttp_server(again.app), http).send
        for n in range(40):
            await send(MAIL, key=f"n:{n}")
    assert [o.kind for o in again.outcomes] == kinds
