"""`paybot connect quickbooks`: the consent URL, Intuit's redirect to /oauth/quickbooks/callback with the state
checked, the code traded for tokens at the (fake) token endpoint, the company named; both through `paybot serve`'s
route and through the command's own short-lived listener."""

from __future__ import annotations

import asyncio
import socket
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest

from bot.cli import main
from bot.integrations.sources.quickbooks import QuickBooksSettings
from bot.storage import models
from tests.fakes.quickbooks import CLIENT_ID, CLIENT_SECRET, REALM, VERIFIER_TOKEN, FakeQuickBooks


@pytest.fixture
async def intuit(aiohttp_server):  # type: ignore[no-untyped-def]
    fake = FakeQuickBooks()
    fake.server = await aiohttp_server(fake.app)
    return fake


@pytest.fixture
def configs(configs, intuit):  # type: ignore[no-untyped-def]
    return configs | {"quickbooks": QuickBooksSettings(
        _env_file=None, verifier_token=VERIFIER_TOKEN, client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
        base_url=str(intuit.server.make_url("/")),
        token_url=str(intuit.server.make_url("/oauth2/v1/tokens/bearer")))}  # type: ignore[call-arg]


async def test_the_callback_connects_the_company_the_operator_chose(paybot, intuit) -> None:  # type: ignore[no-untyped-def]
    started = await paybot.runtime.connections.begin("quickbooks")
    consent = parse_qs(urlsplit(started.url).query)
    assert started.url.startswith("https://appcenter.intuit.com/connect/oauth2?")
    assert consent["client_id"] == [CLIENT_ID] and consent["scope"] == ["com.intuit.quickbooks.accounting"]
    assert consent["redirect_uri"] == ["https://paybot.example.com/oauth/quickbooks/callback"]
    # Intuit sends the browser back with the code, the state and the company chosen.
    response = await paybot.client.get("/oauth/quickbooks/callback", params={
        "code": intuit.code(), "state": consent["state"][0], "realmId": REALM})
    assert response.status == 200
    assert "Acme Welding LLC (9130357992221046)" in await response.text()
    [row] = await paybot.rows(models.OAuthToken)
    assert (row.source, row.tenant, row.tenant_name) == ("quickbooks", REALM, "Acme Welding LLC")
    assert row.refresh_token in intuit.refresh_tokens and row.access_token in intuit.access_tokens
    [exchange] = intuit.to("/oauth2/v1/tokens/bearer")
    assert b"grant_type=authorization_code" in exchange.body and b"redirect_uri=" in exchange.body
    assert await paybot.runtime.connections.outcome(consent["state"][0]) == {
        "tenants": [{"id": REALM, "name": "Acme Welding LLC"}]}
    assert await paybot.runtime.verifier.access_for("quickbooks").tenants() == [REALM]


@pytest.mark.parametrize("state", ["", "not-the-state", "REUSED"])
async def test_a_state_that_matches_no_connect_is_refused_and_the_code_never_used(paybot, intuit, state) -> None:  # type: ignore[no-untyped-def]
    if state == "REUSED":
        started = await paybot.runtime.connections.begin("quickbooks")
        state = parse_qs(urlsplit(started.url).query)["state"][0]
        first = await paybot.client.get("/oauth/quickbooks/callback",
                                        params={"code": intuit.code(), "state": state, "realmId": REALM})
        assert first.status == 200
        intuit.calls.clear()
    else:
        await paybot.runtime.connections.begin("quickbooks")  # a connect in progress, with another state
    response = await paybot.client.get("/oauth/quickbooks/callback",
                                       params={"code": intuit.code(), "state": state, "realmId": REALM})
    assert response.status == 400 and "Not connected" in await response.text()
    assert intuit.to("/oauth2/v1/tokens/bearer") == []
    assert len(await paybot.rows(models.OAuthToken)) == (1 if intuit.access_tokens else 0)


async def test_declined_consent_says_so(paybot, intuit) -> None:  # type: ignore[no-untyped-def]
    started = await paybot.runtime.connections.begin("quickbooks")
    state = parse_qs(urlsplit(started.url).query)["state"][0]
    response = await paybot.client.get("/oauth/quickbooks/callback", params={"error": "access_denied", "state": state})
    assert response.status == 502 and "access was not granted" in await response.text()
    assert await paybot.rows(models.OAuthToken) == []


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_paybot_connect_prints_the_url_serves_the_callback_and_names_the_company(
        capsys, monkeypatch, database_url, intuit) -> None:  # type: ignore[no-untyped-def]
    port = free_port()
    for name, value in {"DATABASE_URL": database_url, "PORT": str(port), "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
                        "QUICKBOOKS_VERIFIER_TOKEN": VERIFIER_TOKEN, "QUICKBOOKS_CLIENT_ID": CLIENT_ID,
                        "QUICKBOOKS_CLIENT_SECRET": CLIENT_SECRET, "QUICKBOOKS_BASE_URL": str(intuit.server.make_url("/")),
                        "QUICKBOOKS_TOKEN_URL": str(intuit.server.make_url("/oauth2/v1/tokens/bearer"))}.items():
        monkeypatch.setenv(name, value)
    command = asyncio.create_task(asyncio.to_thread(main, ["connect", "quickbooks", "--timeout", "30"]))
    printed = ""
    for _ in range(300):  # the operator reads the URL off the terminal
        printed += capsys.readouterr().out
        if "Waiting for the callback" in printed:
            break
        await asyncio.sleep(0.05)
    url = next(line.strip() for line in printed.splitlines() if line.strip().startswith("https://appcenter"))
    state = parse_qs(urlsplit(url).query)["state"][0]
    async with aiohttp.ClientSession() as browser:  # Intuit's redirect, followed by the operator's browser
        async with browser.get(f"http://127.0.0.1:{port}/oauth/quickbooks/callback",
                               params={"code": intuit.code(), "state": state, "realmId": REALM}) as response:
            assert response.status == 200
    assert await command == 0
    out = printed + capsys.readouterr().out
    assert f"Connected quickbooks: Acme Welding LLC (company id {REALM})." in out
    assert f"http://127.0.0.1:{port}/oauth/quickbooks/callback" in out


async def test_paybot_connect_without_client_credentials_exits_2(capsys, monkeypatch, database_url) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("QUICKBOOKS_VERIFIER_TOKEN", VERIFIER_TOKEN)
    assert await asyncio.to_thread(main, ["connect", "quickbooks"]) == 2
    assert "QUICKBOOKS_CLIENT_ID and QUICKBOOKS_CLIENT_SECRET must be set" in capsys.readouterr().err
