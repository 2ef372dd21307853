"""`paybot check` against every fake provider: what it calls, what it says, and its exit code."""

from __future__ import annotations

from tests.scenario.operator import add_customers, configure, paybot, providers  # noqa: F401  (fixture)

REACHABLE = {"id": "C1", "name": "Alvarez Fabrication", "email": "ap@alvarez.example", "channels": ["email"]}


def problems(out: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith("PROBLEM")]


async def test_a_good_configuration_calls_each_provider_once_and_exits_0(capsys, monkeypatch, database_url,
                                                                         providers):
    configure(monkeypatch, providers.environment(database_url))
    await add_customers(database_url, REACHABLE)
    code, out, err = await paybot(capsys, "check")
    assert (code, problems(out), err) == (0, [], ""), out
    for line in ("integration stripe enabled", "integration sendgrid enabled: channel for customers who prefer email",
                 "stripe: STRIPE_API_KEY accepted (test mode), account acct_1PaybotFake",
                 "square: SQUARE_ACCESS_TOKEN accepted, 1 location(s)",
                 "paypal: nothing to call",
                 "wave: nothing to call", "sendgrid: SENDGRID_API_KEY accepted, with mail.send",
                 "slack: SLACK_BOT_TOKEN accepted, @paybot in Acme",
                 "slack: FINANCE_SLACK_CHANNEL C0FINANCE: the bot is in #finance",
                 "customers: 1 on file, every one reachable", "all good"):
        assert line in out
    assert [len(fake.calls) for fake in (providers.stripe, providers.square, providers.paypal,
                                         providers.sendgrid)] == [1, 1, 0, 1]
    assert [c.path for c in providers.slack.calls] == ["/auth.test", "/conversations.info"]
    assert not providers.sendgrid.accepted and not providers.slack.posted()  # a check sends nothing


async def test_a_key_without_mail_send_is_named(capsys, monkeypatch, database_url, providers):
    configure(monkeypatch, providers.environment(database_url))
    providers.sendgrid.scopes = ["stats.read"]
    code, out, _ = await paybot(capsys, "check")
    assert code == 1
    assert problems(out) == ["PROBLEM  sendgrid: SENDGRID_API_KEY lacks the mail.send scope: give the key the Mail "
                             "Send permission (Settings → API Keys), or no email will go out"]


async def test_a_refused_key_is_named(capsys, monkeypatch, database_url, providers):
    configure(monkeypatch, providers.environment(database_url), STRIPE_API_KEY="sk_live_revoked")
    code, out, _ = await paybot(capsys, "check")
    assert code == 1 and len(problems(out)) == 1
    assert "STRIPE_API_KEY was refused (HTTP 401)" in problems(out)[0]
    assert "sk_live_revoked" not in out


async def test_a_bot_outside_the_finance_channel_is_told_to_invite_it(capsys, monkeypatch, database_url,
                                                                      providers):
    configure(monkeypatch, providers.environment(database_url))
    providers.slack.not_member.add("C0FINANCE")
    code, out, _ = await paybot(capsys, "check")
    assert code == 1
    assert problems(out) == ["PROBLEM  slack: FINANCE_SLACK_CHANNEL C0FINANCE: the bot is not in #finance: invite "
                             "the bot to #finance (/invite @paybot in the channel)"]


async def test_malformed_base_urls_are_named_before_any_call(capsys, monkeypatch, database_url, providers):
    environment = providers.environment(database_url)
    configure(monkeypatch, environment, SLACK_BASE_URL=environment["SLACK_BASE_URL"] + "api",  # no final /
              PAYPAL_IPN_VERIFY_URL="ipnpb.paypal.com/cgi-bin/webscr")
    code, out, _ = await paybot(capsys, "check")
    assert code == 1
    found = problems(out)
    assert any("SLACK_BASE_URL" in p and "must be the Web API root ending in /api/" in p for p in found)
    assert "PROBLEM  PAYPAL_IPN_VERIFY_URL 'ipnpb.paypal.com/cgi-bin/webscr' is not an http(s) URL" in found
    assert len(found) == 2  # neither is called: a wrong root would only have answered 404
    assert not providers.slack.calls and not providers.paypal.calls


async def test_customers_nobody_can_reach_are_listed(capsys, monkeypatch, database_url, providers):
    configure(monkeypatch, providers.environment(database_url))
    await add_customers(database_url, REACHABLE,
                        {"id": "C2", "name": "Bolt & Nut", "phone": "+12015550123", "channels": ["sms"]},
                        {"id": "C3", "name": "No Address", "channels": ["email"]})
    code, out, _ = await paybot(capsys, "check")
    assert code == 1
    assert [p.split(":")[0] for p in problems(out)] == ["PROBLEM  customer C2 (Bolt & Nut)",
                                                       "PROBLEM  customer C3 (No Address)"]
    assert "C2 (Bolt & Nut): nobody can reach it: sms: not configured" in out


async def test_staff_channels_without_slack_are_a_problem(capsys, monkeypatch, database_url, providers):
    configure(monkeypatch, providers.environment(database_url), SLACK_BOT_TOKEN="")  # empty: unset
    code, out, _ = await paybot(capsys, "check")
    assert code == 1
    assert "off      integration slack disabled: SLACK_BOT_TOKEN not set" in out
    assert problems(out) == ["PROBLEM  FINANCE_SLACK_CHANNEL is set, but Slack is off (SLACK_BOT_TOKEN): no "
                             "finance cards will be posted"]
