"""Statements that differ by engine, in one place."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase


def insert_or_ignore(executor: AsyncSession | Connection, model: type[DeclarativeBase] | Table,
                     values: dict[str, Any] | None) -> Any:
    """`INSERT … ON CONFLICT DO NOTHING RETURNING id`: nothing instead of an error (which would abort a PostgreSQL
    transaction) when a unique key already exists. Without `values` it is for executemany: chain `.returning(...)`
    for the columns wanted."""
    bind = executor if isinstance(executor, Connection) else executor.bind
    dialect = bind.dialect.name if bind is not None else "sqlite"
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = (insert(model) if values is None else insert(model).values(values)).on_conflict_do_nothing()
    return statement.returning(model.id) if hasattr(model, "id") and values is not None else statement
