"""`paybot connect xero | freshbooks | zoho-books`: the consent URL each platform wants, its redirect to
/oauth/<source>/callback, the code traded at the (fake) token endpoint, the organisations named by the platform's
own "who am I" read, and the stored tokens used for the next notification. On both engines."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from bot.integrations.base import IntegrationSettings
from bot.integrations.sources.freshbooks import FreshBooksSettings
from bot.integrations.sources.xero import XeroSettings
from bot.integrations.sources.zoho import ZohoBooksSettings
from bot.storage import models
from tests.fakes import freshbooks as fb
from tests.fakes import xero, zoho


@dataclass(frozen=True)
class Platform:
    fake: Callable[[], Any]
    settings: Callable[[Any], IntegrationSettings]
    token_path: str
    consent: str        # where the operator's browser is sent
    scope: str          # one scope the consent asks for
    tenant: tuple[str, str]
    extra: dict[str, str]  # what else the consent URL must carry


def url(fake: Any, path: str = "/") -> str:
    return str(fake.server.make_url(path))


PLATFORMS = {
    "xero": Platform(
        xero.FakeXero, lambda f: XeroSettings(_env_file=None, webhook_key="k", client_id=xero.CLIENT_ID,  # type: ignore[call-arg]
                                              client_secret=xero.CLIENT_SECRET, base_url=url(f),
                                              token_url=url(f, "/connect/token")),
        "/connect/token", "https://login.xero.com/identity/connect/authorize", "offline_access",
        (xero.TENANT, "Weld Shop Ltd"), {}),
    "freshbooks": Platform(
        fb.FakeFreshBooks, lambda f: FreshBooksSettings(_env_file=None, client_id=fb.CLIENT_ID,  # type: ignore[call-arg]
                                                        client_secret=fb.CLIENT_SECRET, base_url=url(f),
                                                        token_url=url(f, "/auth/oauth/token")),
        "/auth/oauth/token", "https://auth.freshbooks.com/oauth/authorize", "user:payments:read",
        (fb.ACCOUNT, "Weld Shop"), {}),
    "zoho-books": Platform(
        zoho.FakeZohoBooks, lambda f: ZohoBooksSettings(_env_file=None, webhook_secret="s", data_centre="eu",  # type: ignore[call-arg]
                                                        client_id=zoho.CLIENT_ID, client_secret=zoho.CLIENT_SECRET,
                                                        base_url=url(f), token_url=url(f, "/oauth/v2/token")),
        "/oauth/v2/token", "https://accounts.zoho.eu/oauth/v2/auth", "ZohoBooks.customerpayments.READ",
        (zoho.ORGANIZATION, "Weld Shop"), {"access_type": "offline", "prompt": "consent"}),
}


@pytest.fixture(params=sorted(PLATFORMS))
def name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def platform_api(name, aiohttp_server):  # type: ignore[no-untyped-def]
    fake = PLATFORMS[name].fake()
    fake.server = await aiohttp_server(fake.app)
    return fake


@pytest.fixture
def configs(configs, name, platform_api):  # type: ignore[no-untyped-def]
    return configs | {name: PLATFORMS[name].settings(platform_api)}


async def test_connect_stores_the_tokens_and_names_what_was_connected(paybot, name, platform_api) -> None:  # type: ignore[no-untyped-def]
    platform = PLATFORMS[name]
    started = await paybot.runtime.connections.begin(name)
    consent = parse_qs(urlsplit(started.url).query)
    assert started.url.startswith(platform.consent + "?")
    assert platform.scope in consent["scope"][0]
    assert consent["redirect_uri"] == [f"https://paybot.example.com/oauth/{name}/callback"]
    assert {k: consent[k][0] for k in platform.extra} == platform.extra
    code = "granted-code-1"
    platform_api.tokens.codes[code] = consent["redirect_uri"][0]
    response = await paybot.client.get(f"/oauth/{name}/callback", params={"code": code, "state": consent["state"][0]})
    assert response.status == 200, await response.text()
    tenant, tenant_name = platform.tenant
    assert f"{tenant_name} ({tenant})" in await response.text()
    [row] = await paybot.rows(models.OAuthToken)
    assert (row.source, row.tenant, row.tenant_name) == (name, tenant, tenant_name)
    assert row.access_token in platform_api.tokens.access_tokens
    assert platform_api.tokens.grants == ["authorization_code"]
    assert await paybot.runtime.verifier.access_for(name).tenants() == [tenant]


async def test_paybot_check_says_whether_notifications_can_be_read(paybot, name) -> None:  # type: ignore[no-untyped-def]
    source = paybot.runtime.sources[name]
    findings = await source.check(paybot.runtime.settings)
    assert not findings[0].problem and f"paybot connect {name}" in findings[0].text
    if name == "freshbooks":  # no verifier yet: its payment callbacks are refused until it is set
        assert findings[1].problem and "FRESHBOOKS_VERIFIER" in findings[1].text
    unconfigured = type(source)(type(source.settings)(_env_file=None, webhook_key="k", webhook_secret="s"),
                                paybot.runtime.http)
    [missing] = (await unconfigured.check(paybot.runtime.settings))[:1]
    assert missing.problem and "CLIENT_ID and" in missing.text
