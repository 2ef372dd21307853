"""Shared fixtures: a database on each engine, an injected clock, and paybot wired to local fake providers.

PostgreSQL tests use `PAYBOT_TEST_POSTGRES_URL` (default: the local server's `test` database, where a scratch
database is created). Only a server that cannot be reached at all makes them skip, saying why (and not even that
with `PAYBOT_REQUIRE_POSTGRES=1`, set by CI). Anything a reachable server answers — bad credentials, a missing
database, a migration that fails only on PostgreSQL — is an error in every PostgreSQL test, never a skip.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from bot.storage import migrate
from bot.storage.engine import create_engine
from bot.storage.models import Base

POSTGRES_URL = os.environ.get("PAYBOT_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")
REQUIRE_POSTGRES = os.environ.get("PAYBOT_REQUIRE_POSTGRES") == "1"


def run_in_thread(coroutine: Any) -> Any:
    """Session-scoped set-up may be first requested from inside a test's event loop: run it on its own."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


class FakeClock:
    """A clock tests move by hand: no sleeps, no flakiness."""

    def __init__(self, start: datetime = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(autouse=True)
def safe_logs(caplog: pytest.LogCaptureFixture) -> None:
    """Captured records pass the filter `paybot` puts on its own handlers (escaped, redacted: bot/logs.py)."""
    from bot.logs import make_safe

    make_safe(caplog.handler)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No local secrets or .env may leak into a test (as bolt's tests clear os.environ)."""
    from bot.integrations.base import env_name
    from bot.integrations.channels import CHANNELS
    from bot.integrations.sources import SOURCES
    from bot.settings import Settings

    prefixes = tuple(f"{env_name(n)}_" for n in (*SOURCES, *CHANNELS)) + ("FINANCE_", "ESCALATION_")
    core = {name.upper() for name in Settings.model_fields}
    for name in list(os.environ):
        if name.startswith(prefixes) or name in core:
            monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


SCRATCH = f"paybot_test_{os.getpid()}"


async def _admin(*statements: str) -> None:
    admin = create_engine(make_url(POSTGRES_URL).render_as_string(hide_password=False), isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as conn:
            for statement in statements:
                await conn.execute(text(statement))
    finally:
        await admin.dispose()


async def _postgres_scratch() -> str:
    url = make_url(POSTGRES_URL)
    scratch = SCRATCH
    await _admin(f'DROP DATABASE IF EXISTS "{scratch}" WITH (FORCE)', f'CREATE DATABASE "{scratch}"')
    scratch_url = url.set(database=scratch).render_as_string(hide_password=False)
    engine = create_engine(scratch_url)
    try:
        await migrate.upgrade(engine)
    except BaseException:
        await engine.dispose()
        await _admin(f'DROP DATABASE IF EXISTS "{scratch}" WITH (FORCE)')  # leave no half-built scratch behind
        raise
    await engine.dispose()
    return scratch_url


async def _connect_once(url: str) -> None:
    engine = create_engine(url)
    try:
        async with engine.connect():
            pass
    finally:
        await engine.dispose()


def skip_if_unreachable(url: str, *, required: bool) -> None:
    """Skip when nothing answers at `url` (refused, unknown host, timeout: an OSError before PostgreSQL says a
    word). Whatever the server answers, even a refusal, is left to raise where it happens."""
    try:
        run_in_thread(_connect_once(url))
    except OSError as exc:
        if required:
            raise
        pytest.skip(f"PostgreSQL not reachable at {url} ({type(exc).__name__}: {exc}); "
                    "set PAYBOT_TEST_POSTGRES_URL to run these tests")
    except Exception:  # reachable: the set-up below meets the same problem and reports it as an error
        pass


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    skip_if_unreachable(POSTGRES_URL, required=REQUIRE_POSTGRES)
    url = run_in_thread(_postgres_scratch())  # any error here (a PostgreSQL-only migration bug) fails the tests
    yield url
    run_in_thread(_admin(f'DROP DATABASE IF EXISTS "{SCRATCH}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file, copied per test (cheaper than migrating every time)."""
    path = tmp_path_factory.mktemp("template") / "paybot.db"

    async def build() -> None:
        engine = create_engine(f"sqlite+aiosqlite:///{path}")
        await migrate.upgrade(engine)
        await engine.dispose()  # closing the last connection folds the WAL into the file

    run_in_thread(build())
    return path


async def _truncate(url: str) -> None:
    engine = create_engine(url)
    tables = ", ".join(t.name for t in Base.metadata.sorted_tables)
    async with engine.begin() as conn:
        await conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
        await conn.execute(text(f"INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, '{'0' * 64}')"))
    await engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A migrated, empty database: each test that takes it runs on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        path = tmp_path / "paybot.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        yield f"sqlite+aiosqlite:///{path}"
    else:
        url = request.getfixturevalue("postgres_url")
        await _truncate(url)
        yield url


@pytest.fixture
async def sendgrid(aiohttp_server):  # type: ignore[no-untyped-def]
    from tests.fakes.sendgrid import FakeSendGrid

    fake = FakeSendGrid()
    fake.server = await aiohttp_server(fake.app)
    return fake


@pytest.fixture
async def slack(aiohttp_server, clock):  # type: ignore[no-untyped-def]
    from tests.fakes.slack import FakeSlack

    fake = FakeSlack(clock=clock)
    fake.server = await aiohttp_server(fake.app)
    return fake


@pytest.fixture
def settings_for(database_url: str):  # type: ignore[no-untyped-def]
    from bot.settings import Settings

    def make(**overrides: object) -> Settings:
        # Inline ingest unless a test asks otherwise: these scenarios drive the worker by hand and read the
        # payment as soon as the webhook is answered. Deferred ingest (the default) has suites of its own.
        values: dict[str, object] = {"database_url": database_url, "finance_slack_channel": "C0FINANCE",
                                     "public_base_url": "https://paybot.example.com", "ingest_mode": "inline"}
        return Settings(_env_file=None, **(values | overrides))  # type: ignore[call-arg]

    return make


@pytest.fixture
def configs(sendgrid, slack):  # type: ignore[no-untyped-def]
    """Stripe in, SendGrid and Slack out, all pointed at the fakes."""
    from bot.integrations.channels.sendgrid import SendGridSettings
    from bot.integrations.channels.slack import SlackSettings
    from bot.integrations.sources.stripe import StripeSettings
    from tests.fakes.sendgrid import API_KEY
    from tests.fakes.slack import BOT_TOKEN
    from tests.harness import STRIPE_SECRET

    return {
        "stripe": StripeSettings(_env_file=None, webhook_secret=STRIPE_SECRET, api_key="sk_test_123",
                                 base_url="http://127.0.0.1:9"),
        "sendgrid": SendGridSettings(_env_file=None, api_key=API_KEY, from_email="billing@weld.example",
                                     base_url=str(sendgrid.server.make_url("/"))),
        "slack": SlackSettings(_env_file=None, bot_token=BOT_TOKEN, signing_secret="slack-signing-secret",
                               base_url=str(slack.server.make_url("/"))),
    }


@pytest.fixture
async def paybot(aiohttp_client, settings_for, configs, clock):  # type: ignore[no-untyped-def]
    from bot.app import create_app
    from bot.keys import RUNTIME
    from tests.harness import Paybot

    app = create_app(settings_for(), configs=configs, clock=clock, run_worker=False)
    client = await aiohttp_client(app)
    return Paybot(client=client, runtime=app[RUNTIME], clock=clock)
