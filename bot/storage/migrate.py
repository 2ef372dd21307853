"""`paybot migrate`: Alembic upgrade to head, run on our own async engine."""

from __future__ import annotations

import warnings
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SAWarning
from sqlalchemy.ext.asyncio import AsyncEngine

MIGRATIONS = Path(__file__).with_name("migrations")


def alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def _upgrade(connection: Connection, revision: str) -> None:
    with warnings.catch_warnings():
        # SQLite batch migrations reflect neighbouring tables; SQLAlchemy cannot reflect the expression index on
        # invoice numbers (`ix_invoices_number_key`) and says so, though batch mode never touches that table.
        warnings.filterwarnings("ignore", "Skipped unsupported reflection of expression-based index", SAWarning)
        command.upgrade(alembic_config(connection), revision)


async def upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    async with engine.begin() as conn:
        await conn.run_sync(_upgrade, revision)


async def at_head(engine: AsyncEngine) -> bool:
    """Whether the database has the latest schema (False for one that has none yet)."""
    script = ScriptDirectory.from_config(alembic_config())

    def current(sync: Connection) -> set[str]:
        return set(MigrationContext.configure(sync).get_current_heads())

    async with engine.connect() as conn:
        return await conn.run_sync(current) == set(script.get_heads())
