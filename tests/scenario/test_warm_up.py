"""The warm-up before the first payment (`paybot serve`, `paybot worker`): each channel writes a made-up message for
the business's readers and the customers' locales, so that the first real one does not pay for loading a locale
and compiling templates, and a message that cannot be written is named at start-up rather than at a payment."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from bot.app import create_app
from bot.keys import RUNTIME
from tests.harness import Paybot


async def started(aiohttp_client, settings_for, configs, clock, **settings: object) -> Paybot:  # type: ignore[no-untyped-def]
    app = create_app(settings_for(**settings), configs=configs, clock=clock, run_worker=False)
    return Paybot(client=await aiohttp_client(app), runtime=app[RUNTIME], clock=clock)


async def test_every_channel_writes_for_the_customers_locales_and_what_cannot_be_written_is_named(
        aiohttp_client, settings_for, configs, clock, tmp_path: Path, caplog) -> None:  # type: ignore[no-untyped-def]
    templates = tmp_path / "wording"
    templates.mkdir()
    (templates / "receipt.es.txt").write_text("¡Gracias, {{ customer_nickname }}!")  # no such value: it cannot render
    paybot = await started(aiohttp_client, settings_for, configs, clock, templates_dir=str(templates))
    await paybot.add_customer("C1", locale="es-MX")
    await paybot.add_customer("C2", email="karl@example.de", locale="de-DE")
    caplog.clear()

    with caplog.at_level(logging.WARNING, logger="bot"):
        await paybot.runtime.warm_up()

    # en-US (the business's) and de-DE are written on SendGrid and on finance's Slack card; es-MX is the customer's
    # locale read from the database, and its operator template is broken.
    assert [r.getMessage() for r in caplog.records] == [
        "a message cannot be written: sendgrid (es-MX): UndefinedError: 'customer_nickname' is undefined"]


async def test_an_unknown_locale_is_named_and_finance_still_reads_the_business_locale(
        aiohttp_client, settings_for, configs, clock) -> None:  # type: ignore[no-untyped-def]
    paybot = await started(aiohttp_client, settings_for, configs, clock)

    problems = paybot.runtime.notifier.warm(["xx-Nowhere"], clock())

    assert [problem.split(":")[0] for problem in problems] == ["sendgrid (xx-Nowhere)"]


async def test_without_channels_there_is_nothing_to_write(aiohttp_client, settings_for, clock) -> None:  # type: ignore[no-untyped-def]
    paybot = await started(aiohttp_client, settings_for, {}, clock)
    await paybot.add_customer("C1", locale="xx-Nowhere")

    assert paybot.runtime.notifier.warm(["en-US", "xx-Nowhere"], clock()) == []


async def test_on_postgresql_the_connections_a_burst_holds_are_opened_before_it(
        aiohttp_client, settings_for, configs, clock) -> None:  # type: ignore[no-untyped-def]
    from bot.runtime import WARM_CONNECTIONS

    paybot = await started(aiohttp_client, settings_for, configs, clock)
    if paybot.runtime.db.dialect != "postgresql":
        pytest.skip("SQLite has one connection, opened with the database")
    opened = paybot.runtime.db.engine.pool.checkedin()

    await paybot.runtime.warm_up()

    assert opened < WARM_CONNECTIONS <= paybot.runtime.db.engine.pool.checkedin()
