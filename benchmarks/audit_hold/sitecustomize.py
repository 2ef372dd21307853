"""How long each append holds the audit chain's head row, in every Python process started with this directory on
PYTHONPATH (benchmarks only; PostgreSQL). One line per append in DIRECTORY/<pid>.txt (DIRECTORY: /tmp/paybot-audit-
hold; the benchmarks pass PYTHONPATH on to paybot, not other variables): milliseconds from the head's lock granted
to the end of the COMMIT (or ROLLBACK), how it ended, and the statements sent in between (the append's own head
read included, the COMMIT not); DIRECTORY/<pid>.wait: milliseconds waited for the lock. The lock is taken by a
statement of its own just before the append's (which then finds it held): one more round trip than paybot makes.

    PYTHONPATH=$PWD/benchmarks/audit_hold .venv/bin/python benchmarks/throughput.py …
    .venv/bin/python benchmarks/audit_hold/summary.py /tmp/paybot-audit-hold
"""

import os
import time


def install(directory: str) -> None:
    from sqlalchemy import event, select
    from sqlalchemy.dialects.postgresql.asyncpg import AsyncAdapt_asyncpg_connection
    from sqlalchemy.engine import Engine

    from bot.storage import audit
    from bot.storage.models import AuditHead

    held: dict[int, float] = {}  # driver connection → when it got the head
    statements: dict[int, int] = {}
    holds = open(os.path.join(directory, f"{os.getpid()}.txt"), "a", buffering=1)
    waits = open(os.path.join(directory, f"{os.getpid()}.wait"), "a", buffering=1)
    append_rows = audit.append_rows

    def timed(connection, records, *args, **kwargs):  # type: ignore[no-untyped-def]
        if connection.dialect.name == "postgresql":
            asked = time.monotonic()
            connection.execute(select(AuditHead.seq).where(AuditHead.id == 1).with_for_update())
            held[id(connection.connection.dbapi_connection)] = granted = time.monotonic()
            waits.write(f"{(granted - asked) * 1000:.3f}\n")
        return append_rows(connection, records, *args, **kwargs)

    audit.append_rows = timed

    @event.listens_for(Engine, "before_cursor_execute")
    def counted(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        key = id(conn.connection.dbapi_connection)
        if key in held:
            statements[key] = statements.get(key, 0) + 1

    for name in ("commit", "rollback"):
        end = getattr(AsyncAdapt_asyncpg_connection, name)

        def ended(self, _end=end, _name=name):  # type: ignore[no-untyped-def]
            try:
                return _end(self)
            finally:
                granted = held.pop(id(self), None)
                if granted is not None:
                    ms = (time.monotonic() - granted) * 1000
                    holds.write(f"{ms:.3f} {_name} {statements.pop(id(self), 0)}\n")

        setattr(AsyncAdapt_asyncpg_connection, name, ended)


DIRECTORY = "/tmp/paybot-audit-hold"
try:
    os.makedirs(DIRECTORY, exist_ok=True)
    install(DIRECTORY)
except ImportError:  # paybot is not importable here: nothing to time
    pass
