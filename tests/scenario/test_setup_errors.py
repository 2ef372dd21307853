"""A shop's first day: `cp .env.example .env` starts, every command works from a fresh database, and every bad
setting is one line naming it, exit 2 (never a traceback)."""

from __future__ import annotations

import asyncio
import logging
import shutil
import socket
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from bot.cli import main
from bot.services.delivery import OUTAGE_MAX_SECONDS, DeliveryWorker
from bot.services.notify import Notifier
from bot.metrics import Metrics
from bot.settings import Settings
from bot.storage.database import Database
from tests.conftest import _admin

EXAMPLE = Path(__file__).parents[2] / ".env.example"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def one_line(err: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1, err
    return lines[0]


def test_the_example_env_file_starts_as_it_is(capsys, tmp_path):
    shutil.copy(EXAMPLE, tmp_path / ".env")  # the README's first step; the tests run in tmp_path
    code, out, err = run(capsys, "check")
    assert (code, err) == (1, ""), err  # no setting error: only "no payment source is on"
    assert "PROBLEM  no payment source is on" in out
    assert Settings().email_provider is None and Settings().finance_slack_channel is None  # `NAME=` is unset


def test_every_command_works_from_a_fresh_sqlite_database(capsys, tmp_path):
    shutil.copy(EXAMPLE, tmp_path / ".env")
    (tmp_path / "customers.csv").write_text("id,name,email\nC1,Alvarez Fabrication,ap@alvarez.example\n")
    code, out, _ = run(capsys, "import", "customers", "customers.csv")  # before any `paybot migrate`
    assert code == 0 and "imported 1 customer" in out
    assert run(capsys, "audit", "verify")[0] == 0


def test_a_command_that_fails_leaves_no_database_behind(capsys, tmp_path):
    code, _, err = run(capsys, "import", "customers", "missing.csv")
    assert code == 2 and "missing.csv" in one_line(err)
    assert not list(tmp_path.glob("paybot.db*"))


@pytest.mark.parametrize("setting, value, named", [
    ("LOG_LEVEL", "verbose", "LOG_LEVEL: 'verbose' is not one of DEBUG, INFO, WARNING, ERROR, CRITICAL"),
    ("PORT", "80800", "PORT: Input should be less than or equal to 65535"),
    ("DATABASE_URL", "mysql://shop@db/paybot", "DATABASE_URL: unsupported database 'mysql'"),
    ("DATABASE_URL", "paybot.db", "DATABASE_URL: not a database URL"),
    ("DATABASE_URL", "sqlite+aiosqlite:///./no/such/dir/paybot.db", "DATABASE_URL: the directory no/such/dir does "
                                                                    "not exist"),
    ("DATABASE_URL", "postgres://paybot:s3cret@127.0.0.1:1/paybot", "DATABASE_URL postgresql+asyncpg://paybot:***@"
                                                                    "127.0.0.1:1/paybot: cannot use the database: "
                                                                    "connection refused (is the server running?)"),
    ("STRIPE_TOLERANCE_SECONDS", "soon", "STRIPE_TOLERANCE_SECONDS: Input should be a valid integer"),
])
def test_a_bad_setting_is_one_line_naming_it_and_exit_2(capsys, monkeypatch, tmp_path, setting, value, named):
    monkeypatch.setenv("WAVE_WEBHOOK_SECRET", "wave-secret")
    monkeypatch.setenv(setting, value)
    code, _, err = run(capsys, "check")
    assert code == 2 and named in one_line(err)
    assert "s3cret" not in err
    assert not list(tmp_path.glob("**/paybot.db*"))


def test_postgresql_problems_are_one_line_naming_the_database(capsys, monkeypatch, postgres_url):
    missing = make_url(postgres_url).set(database="paybot_no_such_database")
    monkeypatch.setenv("DATABASE_URL", missing.render_as_string(hide_password=False))
    code, _, err = run(capsys, "migrate")
    assert code == 2 and 'cannot use the database: database "paybot_no_such_database" does not exist' in one_line(err)


def test_an_unmigrated_postgresql_database_asks_for_paybot_migrate(capsys, monkeypatch, postgres_url):
    empty = f"{make_url(postgres_url).database}_empty"
    asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{empty}"', f'CREATE DATABASE "{empty}"'))
    try:
        # as a hosting platform hands it out: postgresql:// with libpq's sslmode
        url = make_url(postgres_url).set(drivername="postgresql", database=empty, query={"sslmode": "prefer"})
        monkeypatch.setenv("DATABASE_URL", url.render_as_string(hide_password=False))
        code, _, err = run(capsys, "audit", "verify")
        assert code == 2 and one_line(err).endswith("run `paybot migrate`")
        assert run(capsys, "migrate")[:2] == (0, "database is at the latest schema\n")
        assert run(capsys, "audit", "verify")[:2] == (0, "audit trail intact: 0 entries\n")
    finally:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{empty}" WITH (FORCE)'))


def test_the_hosting_platforms_url_forms_are_accepted(monkeypatch):
    for given, used in [
        ("postgres://u:p@db.example:5432/shop?sslmode=require",
         "postgresql+asyncpg://u:p@db.example:5432/shop?ssl=require"),
        ("postgresql://u@db.example/shop", "postgresql+asyncpg://u@db.example/shop"),
        ("sqlite:///./paybot.db", "sqlite+aiosqlite:///./paybot.db"),
        ("sqlite+aiosqlite:////var/lib/paybot/paybot.db", "sqlite+aiosqlite:////var/lib/paybot/paybot.db"),
    ]:
        monkeypatch.setenv("DATABASE_URL", given)
        assert Settings(_env_file=None).database_url == used


def test_a_port_in_use_is_one_line_and_exit_2(capsys, monkeypatch, tmp_path):
    shutil.copy(EXAMPLE, tmp_path / ".env")  # serve starts from the example as it is, as far as listening
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        monkeypatch.setenv("PORT", str(port))
        monkeypatch.setenv("WAVE_WEBHOOK_SECRET", "wave-secret")  # a source, so serve skips the demo
        monkeypatch.setenv("LOG_LEVEL", "WARNING")  # the start-up summary is INFO
        code, _, err = run(capsys, "serve")
    assert code == 2
    assert one_line(err) == f"paybot: PORT {port}: 127.0.0.1:{port} is already in use (another paybot? set PORT " \
                            "to a free port)"


async def test_the_worker_backs_off_while_the_database_is_down_one_line_each_time(caplog, tmp_path):
    """Not a traceback a second: one line per round, each pause twice the last, up to a minute."""
    settings = Settings(_env_file=None, worker_poll_seconds=0.001)
    db = Database.open(f"sqlite+aiosqlite:///{tmp_path / 'gone' / 'paybot.db'}")  # cannot be opened
    worker = DeliveryWorker(db, {}, Notifier(settings, {}), settings, metrics=Metrics())
    stop = asyncio.Event()

    class StopAfterFour(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "retrying in" in record.getMessage() and len(pauses) < 4:
                pauses.append(record)
            if len(pauses) == 4:
                stop.set()

    pauses: list[logging.LogRecord] = []
    handler = StopAfterFour()
    logging.getLogger("bot.services.delivery").addHandler(handler)
    try:
        await worker.run(stop)
    finally:
        logging.getLogger("bot.services.delivery").removeHandler(handler)
        await db.dispose()
    assert [r.levelname for r in pauses] == ["WARNING"] * 4 and not any(r.exc_info for r in pauses)
    assert [r.args[1] for r in pauses] == [0.001, 0.002, 0.004, 0.008]  # type: ignore[index]
    assert "database unavailable (unable to open database file)" in pauses[0].getMessage()
    assert worker.outage_delay(40) == OUTAGE_MAX_SECONDS


def test_start_up_says_what_is_on_as_well_as_what_is_off(caplog, monkeypatch, tmp_path):
    from bot.runtime import start

    monkeypatch.setenv("WAVE_WEBHOOK_SECRET", "wave-secret")
    settings = Settings(_env_file=None, database_url=f"sqlite+aiosqlite:///{tmp_path / 'paybot.db'}",
                        finance_slack_channel="C0FINANCE")

    async def boot() -> None:
        runtime = await start(settings)
        await runtime.close()

    with caplog.at_level(logging.INFO, logger="bot.runtime"):
        asyncio.run(boot())
    said = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "bot.runtime"]
    assert ("INFO", "integration wave enabled: payment source") in said
    assert ("INFO", "integration stripe disabled: STRIPE_WEBHOOK_SECRET not set") in said
    assert ("WARNING", "FINANCE_SLACK_CHANNEL is set, but Slack is off (SLACK_BOT_TOKEN): no finance cards will be "
                       "posted") in said


def test_a_database_from_a_newer_paybot_is_one_line(capsys, monkeypatch, tmp_path):
    import sqlite3

    with sqlite3.connect(tmp_path / "newer.db") as conn:
        conn.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) PRIMARY KEY)")
        conn.execute("INSERT INTO alembic_version VALUES ('9999_from_the_future')")
    monkeypatch.setenv("DATABASE_URL", "sqlite:///./newer.db")
    code, _, err = run(capsys, "audit", "verify")
    assert code == 2
    assert one_line(err).endswith("its schema is not one this paybot knows (Can't locate revision identified by "
                                  "'9999_from_the_future'); was it migrated by a newer paybot?")
