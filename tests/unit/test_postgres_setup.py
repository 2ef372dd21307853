"""The PostgreSQL test set-up may skip only when no server answers: a broken migration is an error, not a skip.

Each case runs a small pytest session in a subprocess with the real `tests/conftest.py` and reads its outcome.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import POSTGRES_URL

ROOT = Path(__file__).resolve().parents[2]

INNER_TEST = """
async def test_an_empty_database(database_url):
    assert database_url
"""

#: What a migration that only PostgreSQL trips over looks like, injected in front of the real migrations.
BROKEN_ON_POSTGRES = """
from sqlalchemy import text

from bot.storage import migrate
from tests.conftest import *  # noqa: F403  (the real fixtures)

real_upgrade = migrate.upgrade


async def upgrade(engine, revision="head"):
    if engine.dialect.name == "postgresql":
        async with engine.begin() as conn:
            await conn.execute(text("ALTER TABLE no_such_table ADD COLUMN x integer"))
    await real_upgrade(engine, revision)


migrate.upgrade = upgrade
"""


def run_inner(tmp_path: Path, conftest: str, **env: str) -> tuple[int, dict[str, int], str]:
    (tmp_path / "conftest.py").write_text(conftest)
    (tmp_path / "test_inner.py").write_text(INNER_TEST)
    environ = {k: v for k, v in os.environ.items() if not k.startswith("PAYBOT_")} | env
    environ["PYTHONPATH"] = str(ROOT)
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "-o", "asyncio_mode=auto",
                           "-o", "asyncio_default_fixture_loop_scope=function", str(tmp_path)],
                          cwd=tmp_path, env=environ, capture_output=True, text=True, timeout=120)
    counts = {word: int(n) for n, word in re.findall(r"(\d+) (passed|skipped|errors?|failed)", done.stdout)}
    return done.returncode, counts, done.stdout


@pytest.fixture
def postgres_answers() -> None:
    from tests.conftest import _connect_once, run_in_thread

    try:
        run_in_thread(_connect_once(POSTGRES_URL))
    except OSError:
        pytest.skip(f"needs a PostgreSQL server at {POSTGRES_URL}")


def test_a_migration_error_on_postgresql_is_an_error_not_a_skip(tmp_path, postgres_answers):
    code, counts, out = run_inner(tmp_path, BROKEN_ON_POSTGRES, PAYBOT_TEST_POSTGRES_URL=POSTGRES_URL)
    assert code != 0, out
    assert counts.get("passed") == 1 and (counts.get("error") or counts.get("errors")) == 1, out
    assert "skipped" not in counts and "no_such_table" in out, out


def test_an_unreachable_server_is_a_skip_that_says_why(tmp_path):
    nobody = "postgresql+asyncpg://postgres@127.0.0.1:1/test"
    code, counts, out = run_inner(tmp_path, "from tests.conftest import *  # noqa: F403\n",
                                  PAYBOT_TEST_POSTGRES_URL=nobody)
    assert code == 0 and counts == {"passed": 1, "skipped": 1}, out
    assert "PostgreSQL not reachable" in out

