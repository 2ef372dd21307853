"""Every activity's Bot Framework token is checked for real, against the fake's OpenID metadata and keys: a bad
one is a 401 and nothing is done (no reference stored, no command run)."""

from __future__ import annotations

import pytest

from bot.storage import models
from tests.fakes.teams import APP_ID
from tests.teams.conftest import FINANCE_CONV


async def nothing_done(staff) -> bool:  # type: ignore[no-untyped-def]
    rows = await staff.bot.rows(models.TeamsConversation)
    return not rows and not staff.teams.posts and not await staff.bot.rows(models.StaffAction)


@pytest.mark.parametrize("case", ["no token", "not a bearer", "garbage", "expired", "wrong audience",
                                  "unknown key", "wrong issuer", "serviceurl mismatch"])
async def test_a_bad_token_is_401_and_nothing_is_done(staff, case):
    teams = staff.teams
    tokens = {
        "expired": teams.token(expires_in=-600),  # past the five minutes' leeway
        "wrong audience": teams.token(audience="11111111-0000-4000-8000-000000000000"),
        "unknown key": teams.token(key=teams.stranger, kid="not-listed"),
        "wrong issuer": teams.token(issuer="https://sts.windows.net/evil/"),
        "serviceurl mismatch": teams.token(service_url="https://smba.evil.example/amer/"),
    }
    authorization = {"no token": "", "not a bearer": f"Basic {APP_ID}", "garbage": "Bearer not.a.jwt"}.get(case)
    teams.installed.add(FINANCE_CONV)
    message = staff.activity("message", text="payments unmatched")
    response = await staff.post(message, token=tokens.get(case), authorization=authorization)
    assert response.status == 401
    assert (await response.json()) == {"error": "invalid or missing Bot Framework token"}
    assert await nothing_done(staff)


async def test_a_key_signing_for_an_unlisted_kid_with_a_known_kid_still_fails(staff):
    """The stranger's key under the listed kid: the signature does not verify."""
    response = await staff.post(staff.activity("message", text="payments help"),
                                token=staff.teams.token(key=staff.teams.stranger))
    assert response.status == 401 and await nothing_done(staff)


async def test_expiry_is_read_on_paybots_clock(staff):
    token = staff.teams.token(expires_in=60)
    staff.bot.clock.advance(60 + 299)  # inside the leeway
    assert (await staff.install()).status == 200
    staff.bot.clock.advance(2)
    response = await staff.post(staff.activity("message", text="payments help"), token=token)
    assert response.status == 401


async def test_unknown_activity_types_are_ignored_with_200(staff):
    for kind in ("typing", "messageReaction", "event", "somethingNew"):
        response = await staff.post(staff.activity(kind))
        assert response.status == 200
    assert not staff.teams.posts and not await staff.bot.rows(models.StaffAction)


async def test_unparseable_bodies_are_400_without_echo(staff):
    response = await staff.post(b"{not json <script>")
    assert response.status == 400 and "script" not in await response.text()
    response = await staff.post(b'{"no": "type"}')
    assert response.status == 400


async def test_an_unauthenticated_bad_body_is_401_not_400(staff):
    response = await staff.post(b"{not json", authorization="")
    assert response.status == 401


async def test_local_mode_takes_activities_without_a_token_and_says_so_loudly(aiohttp_client, teams_settings,
                                                                              configs, clock, teams, caplog):
    from bot.integrations.channels.teams import TeamsSettings
    from tests.teams.conftest import start

    local = configs | {"teams": TeamsSettings(_env_file=None, local_mode=True)}
    staff = await start(aiohttp_client, teams_settings, local, clock, teams)
    assert any("LOCAL/EMULATOR MODE" in r.getMessage() and r.levelname == "WARNING" for r in caplog.records)
    response = await staff.post(staff.activity("conversationUpdate", membersAdded=[{"id": "28:bot"}]),
                                authorization="")
    assert response.status == 200
    assert [r.conversation_id for r in await staff.bot.rows(models.TeamsConversation)] == [FINANCE_CONV]


def test_without_an_app_id_teams_is_off_and_names_the_setting():
    from bot.integrations.channels.teams import TeamsSettings

    assert TeamsSettings(_env_file=None).missing() == ["TEAMS_APP_ID"]
    assert TeamsSettings(_env_file=None, local_mode=True).missing() == []
    assert TeamsSettings(_env_file=None, app_id=APP_ID, app_tenant_id="t1").token_endpoint == \
        "https://login.microsoftonline.com/t1/oauth2/v2.0/token"
