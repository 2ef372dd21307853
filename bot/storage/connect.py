"""Opening the database for a command or a process, with one clear line for every way that can go wrong.

SQLite is brought to the latest schema on the spot (an absent file becomes a database, as `serve` always did);
PostgreSQL is only checked, and a database without the latest schema is a ConfigError asking for `paybot migrate`
(migrations there are a deliberate step: the Procfile's `release`).
"""

from __future__ import annotations

import socket
from pathlib import Path

from alembic.util.exc import CommandError
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from bot.domain.audit import Keyring
from bot.errors import ConfigError
from bot.storage import migrate
from bot.storage.database import Clock, Database, utcnow
from bot.storage.engine import is_sqlite


def unavailable(exc: BaseException) -> bool:
    """The database cannot be reached (down, restarting, network), as opposed to a bug in a statement."""
    if isinstance(exc, (OSError, TimeoutError, OperationalError, InterfaceError)):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


def problem(exc: BaseException) -> str:
    """The innermost reason, in one line: `database "x" does not exist`, `connection refused`, …"""
    root: BaseException = exc
    while (inner := root.__cause__ or getattr(root, "orig", None)) is not None and inner is not root:
        root = inner
    if isinstance(root, socket.gaierror):
        return "host not found"
    if isinstance(root, ConnectionRefusedError):
        return "connection refused (is the server running?)"
    if isinstance(root, TimeoutError):
        return "no answer (timed out)"
    text = str(root).strip().splitlines()[0] if str(root).strip() else type(root).__name__
    return text[:200]


def shown(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


async def open_database(url: str, clock: Clock = utcnow, *, upgrade: bool | None = None,
                        audit_keys: Keyring = Keyring()) -> Database:
    """A database that answers and has the latest schema, or ConfigError naming DATABASE_URL.

    `upgrade`: migrate to the latest schema first (default: on SQLite only)."""
    if upgrade is None:
        upgrade = is_sqlite(url)
    if is_sqlite(url):
        path = make_url(url).database
        if path and path != ":memory:" and not Path(path).expanduser().parent.is_dir():
            raise ConfigError(f"DATABASE_URL: the directory {Path(path).parent} does not exist "
                              f"(for the SQLite file {path})")
    db = Database.open(url, clock, audit_keys=audit_keys)
    try:
        if upgrade:
            await migrate.upgrade(db.engine)
        elif not await migrate.at_head(db.engine):
            raise ConfigError(f"DATABASE_URL {shown(url)}: the database does not have paybot's latest schema; "
                              "run `paybot migrate`")
    except ConfigError:
        await db.dispose()
        raise
    except CommandError as exc:  # e.g. a revision this paybot does not know: migrated by a newer one
        await db.dispose()
        raise ConfigError(f"DATABASE_URL {shown(url)}: its schema is not one this paybot knows ({exc}); "
                          "was it migrated by a newer paybot?") from exc
    except (OSError, DBAPIError) as exc:
        await db.dispose()
        raise ConfigError(f"DATABASE_URL {shown(url)}: cannot use the database: {problem(exc)}") from exc
    return db
