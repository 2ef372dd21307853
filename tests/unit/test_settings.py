import logging

from bot.integrations.channels.sendgrid import SendGridSettings
from bot.integrations.sources.stripe import StripeSettings
from bot.settings import Settings


def test_secrets_are_masked_in_repr_and_str():
    config = StripeSettings(_env_file=None, webhook_secret="whsec_topsecret", api_key="sk_live_topsecret")
    for text in (repr(config), str(config), f"{config}"):
        assert "topsecret" not in text


def test_missing_names_the_environment_variables():
    assert SendGridSettings(_env_file=None).missing() == ["SENDGRID_API_KEY", "SENDGRID_FROM_EMAIL"]
    assert StripeSettings(_env_file=None, webhook_secret="whsec_x").missing() == []


def test_settings_read_the_environment_once(monkeypatch):
    monkeypatch.setenv("STRIPE_WEBHOOK_SECRET", "whsec_env")
    monkeypatch.setenv("DATABASE_URL", "postgresql+asyncpg://db/paybot")
    assert StripeSettings(_env_file=None).webhook_secret.get_secret_value() == "whsec_env"
    assert Settings(_env_file=None).database_url == "postgresql+asyncpg://db/paybot"


def test_disabled_integrations_are_logged_without_secrets(caplog, monkeypatch, tmp_path):
    import asyncio

    from bot.runtime import start

    monkeypatch.setenv("SENDGRID_API_KEY", "SG.topsecret")  # half-configured: from address missing
    settings = Settings(_env_file=None, database_url=f"sqlite+aiosqlite:///{tmp_path / 'p.db'}")

    async def boot() -> None:
        runtime = await start(settings)
        await runtime.close()

    with caplog.at_level(logging.INFO):
        asyncio.run(boot())
    assert "integration sendgrid disabled: SENDGRID_FROM_EMAIL not set" in caplog.text
    assert "topsecret" not in caplog.text
