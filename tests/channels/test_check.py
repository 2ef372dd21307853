"""`paybot check` with WhatsApp, Mailgun and Pusher Beams configured from the environment, against their fakes:
one authenticated call each, nothing sent, and a wrong credential or id named."""

from __future__ import annotations

import pytest

from tests.fakes import mailgun as mg, pusher_beams as pb, whatsapp as wa
from tests.scenario.operator import configure, paybot


def problems(out: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith("PROBLEM")]


@pytest.fixture
def environment(database_url, whatsapp, mailgun, beams):  # type: ignore[no-untyped-def]
    def root(fake):  # type: ignore[no-untyped-def]
        return str(fake.server.make_url("/"))

    return {
        "DATABASE_URL": database_url, "WAVE_WEBHOOK_SECRET": "wave-secret",
        "WHATSAPP_ACCESS_TOKEN": wa.ACCESS_TOKEN, "WHATSAPP_PHONE_NUMBER_ID": wa.PHONE_NUMBER_ID,
        "WHATSAPP_TEMPLATE": wa.TEMPLATE, "WHATSAPP_APP_SECRET": wa.APP_SECRET, "WHATSAPP_BASE_URL": root(whatsapp),
        "MAILGUN_API_KEY": mg.API_KEY, "MAILGUN_DOMAIN": mg.DOMAIN, "MAILGUN_FROM": "Billing <billing@mg.weld.example>",
        "MAILGUN_WEBHOOK_SIGNING_KEY": mg.SIGNING_KEY, "MAILGUN_BASE_URL": root(mailgun),
        "PUSHER_BEAMS_INSTANCE_ID": pb.INSTANCE_ID, "PUSHER_BEAMS_SECRET_KEY": pb.SECRET_KEY,
        "PUSHER_BEAMS_BASE_URL": root(beams),
    }


async def test_each_channel_is_called_once_and_accepted(capsys, monkeypatch, environment, whatsapp, mailgun, beams):
    configure(monkeypatch, environment)
    code, out, err = await paybot(capsys, "check")
    assert (code, problems(out), err) == (0, [], ""), out
    for line in ("integration whatsapp enabled: channel for customers who prefer whatsapp",
                 "integration mailgun enabled: channel for customers who prefer email",
                 "integration pusher-beams enabled: channel for customers who prefer push",
                 "whatsapp: WHATSAPP_ACCESS_TOKEN accepted; sending from +1 555-010-0999 (Weld Shop, quality GREEN)",
                 f"mailgun: MAILGUN_API_KEY accepted; domain {mg.DOMAIN} is active",
                 f"pusher-beams: PUSHER_BEAMS_SECRET_KEY accepted by instance {pb.INSTANCE_ID}"):
        assert line in out
    assert [c.path for c in whatsapp.calls] == [f"/{wa.VERSION}/{wa.PHONE_NUMBER_ID}"]
    assert [c.path for c in mailgun.calls] == [f"/v3/domains/{mg.DOMAIN}"]
    assert [c.path for c in beams.calls] == [pb.PUBLISH]
    assert whatsapp.accepted == mailgun.accepted == beams.published == []  # a check sends nothing


async def test_wrong_credentials_and_ids_are_named(capsys, monkeypatch, environment):
    configure(monkeypatch, environment, WHATSAPP_ACCESS_TOKEN="EAAGexpired", MAILGUN_DOMAIN="mg.typo.example",
              PUSHER_BEAMS_SECRET_KEY="wrong")
    code, out, _ = await paybot(capsys, "check")
    assert code == 1
    found = problems(out)
    assert len(found) == 3, out
    assert any("WHATSAPP_ACCESS_TOKEN was refused" in p for p in found)
    assert any("MAILGUN_DOMAIN 'mg.typo.example' is not in this Mailgun account" in p for p in found)
    assert any("PUSHER_BEAMS_SECRET_KEY was refused" in p for p in found)
    assert "EAAGexpired" not in out


async def test_unverified_domain_and_missing_webhook_secrets_are_problems(capsys, monkeypatch, environment,
                                                                           mailgun):
    mailgun.state = "unverified"
    configure(monkeypatch, {k: v for k, v in environment.items()
                            if k not in ("WHATSAPP_APP_SECRET", "MAILGUN_WEBHOOK_SIGNING_KEY")})
    code, out, _ = await paybot(capsys, "check")
    assert code == 1
    found = problems(out)
    assert any(f"MAILGUN_DOMAIN {mg.DOMAIN} is unverified" in p for p in found)
    assert any("WHATSAPP_APP_SECRET is not set" in p for p in found)
    assert any("MAILGUN_WEBHOOK_SIGNING_KEY is not set" in p for p in found)


async def test_send_test_marks_the_message_on_each_channel(capsys, monkeypatch, environment, tmp_path,
                                                           whatsapp, mailgun, beams):
    configure(monkeypatch, environment)
    customers = tmp_path / "customers.csv"
    customers.write_text("id,name,email,phone,country,locale,channels,external_ids\n"
                         "C4,Ana López,ana@example.mx,55 1234 5678,MX,es-MX,whatsapp;email;push,pusher-beams:user-42\n")
    assert (await paybot(capsys, "import", "customers", str(customers)))[0] == 0
    code, out, err = await paybot(capsys, "send-test", "--to", "C4")
    assert (code, err) == (0, ""), out
    assert [line.split(" via ")[1].split(" ")[0] for line in out.splitlines()] == ["whatsapp", "mailgun",
                                                                                   "pusher-beams"]
    [sent] = whatsapp.accepted
    invoice = sent["template"]["components"][0]["parameters"][1]["text"]
    assert invoice.startswith("[TEST] ") and sent["template"]["language"] == {"code": "es_MX"}
    [mail] = mailgun.accepted
    assert mail["subject"][0].startswith("[TEST] ") and "test" in mail["o:tag"]
    [push] = beams.published
    assert push["users"] == ["user-42"] and push["fcm"]["notification"]["body"].startswith("[TEST] ¡Gracias")


async def test_two_email_providers_need_email_provider(capsys, monkeypatch, environment, sendgrid):
    from tests.fakes.sendgrid import API_KEY

    both = environment | {"SENDGRID_API_KEY": API_KEY, "SENDGRID_FROM_EMAIL": "billing@weld.example",
                          "SENDGRID_BASE_URL": str(sendgrid.server.make_url("/"))}
    configure(monkeypatch, both)
    code, out, _ = await paybot(capsys, "check")
    assert code == 1 and problems(out) == ["PROBLEM  sendgrid and mailgun are both configured for email: set "
                                           "EMAIL_PROVIDER to the one that sends (now sendgrid)"]
    configure(monkeypatch, both, EMAIL_PROVIDER="mailgun")
    code, out, _ = await paybot(capsys, "check")
    assert (code, problems(out)) == (0, []), out
