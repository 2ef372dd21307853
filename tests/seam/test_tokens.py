"""The OAuth2 token store against Intuit's token endpoint (the fake rotates the refresh token on every refresh and
refuses a used or revoked one with `invalid_grant`), on both engines."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import select

from bot.errors import ConnectionLost
from bot.integrations.oauth import OAuthApp
from bot.services.oauth import TokenStore
from bot.storage import models
from bot.storage.database import Database
from tests.fakes.quickbooks import CLIENT_ID, CLIENT_SECRET, REALM, FakeQuickBooks


@pytest.fixture
async def intuit(aiohttp_server):  # type: ignore[no-untyped-def]
    fake = FakeQuickBooks()
    fake.server = await aiohttp_server(fake.app)
    return fake


@pytest.fixture
def app(intuit) -> OAuthApp:  # type: ignore[no-untyped-def]
    return OAuthApp(authorize_url="https://appcenter.intuit.com/connect/oauth2",
                    token_url=str(intuit.server.make_url("/oauth2/v1/tokens/bearer")), client_id=CLIENT_ID,
                    client_secret=CLIENT_SECRET, scopes=("com.intuit.quickbooks.accounting",))


@pytest.fixture
def store(paybot) -> TokenStore:  # type: ignore[no-untyped-def]
    return TokenStore(paybot.runtime.db, paybot.runtime.notifier, paybot.runtime.http)


async def stored(paybot) -> models.OAuthToken:  # type: ignore[no-untyped-def]
    [row] = await paybot.rows(models.OAuthToken)
    return row


async def test_the_env_seeds_the_store_once(paybot, store, intuit) -> None:  # type: ignore[no-untyped-def]
    first = intuit.grant()
    assert await store.seed("quickbooks", REALM, first) is True
    assert await store.seed("quickbooks", REALM, "AB11-stale-env-token") is False  # the store's has rotated since
    assert (await stored(paybot)).refresh_token == first
    assert await store.tenants("quickbooks") == [REALM]


async def test_a_rotated_refresh_token_is_saved_before_the_access_token_is_used(paybot, store, intuit, app) -> None:  # type: ignore[no-untyped-def]
    first = intuit.grant()
    await store.seed("quickbooks", REALM, first)
    access = await store.token("quickbooks", app, REALM)
    row = await stored(paybot)  # read back by another session: committed before `token` returned
    assert access in intuit.access_tokens and row.access_token == access
    assert row.refresh_token != first and row.refresh_token in intuit.refresh_tokens
    assert first not in intuit.refresh_tokens  # the old one is dead at Intuit: had we lost the new one, locked out
    assert await store.token("quickbooks", app, REALM) == access  # still valid: no second refresh
    assert intuit.refreshes == 1


async def test_after_a_401_the_token_is_refreshed_once_however_many_ask(paybot, store, intuit, app) -> None:  # type: ignore[no-untyped-def]
    await store.seed("quickbooks", REALM, intuit.grant())
    rejected = await store.token("quickbooks", app, REALM)
    intuit.expire_access()
    tokens = await asyncio.gather(*(store.refreshed("quickbooks", app, REALM, rejected) for _ in range(6)))
    assert len(set(tokens)) == 1 and tokens[0] != rejected
    assert intuit.refreshes == 2  # the first token, and one refresh after the 401


async def test_two_processes_refresh_once(paybot, store, intuit, app, database_url, clock) -> None:  # type: ignore[no-untyped-def]
    """Two engines (two processes' connection pools) race to refresh: the second waits on the row and finds the
    token the first one saved, instead of spending the (already rotated) refresh token again."""
    await store.seed("quickbooks", REALM, intuit.grant())
    rejected = await store.token("quickbooks", app, REALM)
    other_db = Database.open(database_url, clock)
    try:
        other = TokenStore(other_db, paybot.runtime.notifier, paybot.runtime.http)
        tokens = await asyncio.gather(store.refreshed("quickbooks", app, REALM, rejected),
                                      other.refreshed("quickbooks", app, REALM, rejected))
    finally:
        await other_db.dispose()
    assert tokens[0] == tokens[1]
    assert intuit.refreshes == 2
    assert (await stored(paybot)).lost_at is None


async def test_a_revoked_refresh_token_tells_finance_once_and_stops_asking(paybot, store, intuit, app) -> None:  # type: ignore[no-untyped-def]
    await store.seed("quickbooks", REALM, intuit.grant())
    intuit.revoke_all()  # the firm disconnected paybot in QuickBooks, or 100 days passed unused
    for _ in range(4):
        with pytest.raises(ConnectionLost) as lost:
            await store.token("quickbooks", app, REALM)
        assert lost.value.tenant == REALM
    assert len(intuit.to("/oauth2/v1/tokens/bearer")) == 1  # no retry storm against Intuit
    row = await stored(paybot)
    assert row.lost_at is not None and "invalid_grant" in (row.lost_reason or "")
    [card] = await paybot.notifications()
    assert card.purpose == "connection_lost" and "paybot connect quickbooks" in card.payload["text"]
    kinds = await paybot.audit_kinds()
    assert kinds.count("oauth.lost") == 1 and kinds.count("connection.lost") == 1
    entries = await paybot.rows(models.AuditEntry)
    assert not any(row.refresh_token in str(e.detail) for e in entries)  # no secret in the trail


async def test_never_connected_is_connection_lost(paybot, store, app) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConnectionLost):
        await store.token("quickbooks", app, REALM)
    async with paybot.runtime.db.read() as session:
        assert list(await session.scalars(select(models.OAuthToken))) == []


async def test_callers_at_start_up_all_wait_for_the_env_seed(paybot, store, intuit, app) -> None:  # type: ignore[no-untyped-def]
    """Two thin notifications resolved at once, first thing: neither may find the store still empty (the event
    would be recorded as from a company paybot is not connected to)."""
    from bot.services.oauth import Access

    access = Access(store, "quickbooks", app, (REALM, intuit.grant()))
    assert await asyncio.gather(access.tenants(), access.tenants(), access.tenants()) == [[REALM]] * 3
