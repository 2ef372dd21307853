"""The fake WhatsApp, Mailgun and Pusher Beams servers, and paybot configured to use all three besides SendGrid
and Slack."""

from __future__ import annotations

import pytest

from bot.integrations.channels.mailgun import MailgunSettings
from bot.integrations.channels.pusher_beams import PusherBeamsSettings
from bot.integrations.channels.whatsapp import WhatsAppSettings
from tests.fakes import mailgun as mg, pusher_beams as pb, whatsapp as wa


@pytest.fixture
async def whatsapp(aiohttp_server):  # type: ignore[no-untyped-def]
    fake = wa.FakeWhatsApp()
    fake.server = await aiohttp_server(fake.app)
    return fake


@pytest.fixture
async def mailgun(aiohttp_server, clock):  # type: ignore[no-untyped-def]
    fake = mg.FakeMailgun(clock=clock)
    fake.server = await aiohttp_server(fake.app)
    return fake


@pytest.fixture
async def beams(aiohttp_server):  # type: ignore[no-untyped-def]
    fake = pb.FakePusherBeams()
    fake.server = await aiohttp_server(fake.app)
    return fake


def whatsapp_settings(fake: wa.FakeWhatsApp, **overrides: object) -> WhatsAppSettings:
    values: dict[str, object] = dict(
        access_token=wa.ACCESS_TOKEN, phone_number_id=wa.PHONE_NUMBER_ID, template=wa.TEMPLATE,
        app_secret=wa.APP_SECRET, verify_token=wa.VERIFY_TOKEN, base_url=str(fake.server.make_url("/")))
    return WhatsAppSettings(_env_file=None, **(values | overrides))  # type: ignore[arg-type]


def mailgun_settings(fake: mg.FakeMailgun, **overrides: object) -> MailgunSettings:
    values: dict[str, object] = dict(
        api_key=mg.API_KEY, domain=mg.DOMAIN, from_="Weld Billing <billing@mg.weld.example>",
        webhook_signing_key=mg.SIGNING_KEY, base_url=str(fake.server.make_url("/")))
    return MailgunSettings(_env_file=None, **(values | overrides))  # type: ignore[arg-type]


def beams_settings(fake: pb.FakePusherBeams, **overrides: object) -> PusherBeamsSettings:
    values: dict[str, object] = dict(instance_id=pb.INSTANCE_ID, secret_key=pb.SECRET_KEY,
                                     base_url=str(fake.server.make_url("/")))
    return PusherBeamsSettings(_env_file=None, **(values | overrides))  # type: ignore[arg-type]


@pytest.fixture
def configs(configs, whatsapp, mailgun, beams):  # type: ignore[no-untyped-def]
    return configs | {"whatsapp": whatsapp_settings(whatsapp), "mailgun": mailgun_settings(mailgun),
                      "pusher-beams": beams_settings(beams)}
