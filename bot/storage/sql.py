"""Statements that differ by engine, in one place."""

from __future__ import annotations

from typing import Any

from collections.abc import Sequence

from sqlalchemy import Boolean, ColumnElement, String, Table, any_, bindparam, select, union_all
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import DeclarativeBase, QueryableAttribute
from sqlalchemy.sql import coercions, roles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import GenericFunction
from sqlalchemy.sql.visitors import InternalTraversal


def insert_or_ignore(executor: AsyncSession | Connection | str, model: type[DeclarativeBase] | Table,
                     values: dict[str, Any] | None) -> Any:
    """`INSERT … ON CONFLICT DO NOTHING RETURNING id`: nothing instead of an error (which would abort a PostgreSQL
    transaction) when a unique key already exists. Without `values` it is for executemany: chain `.returning(...)`
    for the columns wanted. `executor`: what it runs on, or that engine kind's name."""
    if isinstance(executor, str):
        dialect = executor
    else:
        bind = executor if isinstance(executor, Connection) else executor.bind
        dialect = bind.dialect.name if bind is not None else "sqlite"
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = (insert(model) if values is None else insert(model).values(values)).on_conflict_do_nothing()
    return statement.returning(model.id) if hasattr(model, "id") and values is not None else statement


def any_of(key: QueryableAttribute[Any], conditions: Sequence[ColumnElement[bool]]) -> ColumnElement[bool]:
    """`or_(*conditions)` in a form PostgreSQL answers from indexes: the rows whose primary `key` one of the
    conditions selects, a SELECT per condition. PostgreSQL reads an OR holding an `IN (subquery)` by scanning the
    whole table (108 ms against 0.3 ms for two of 64,000 invoices); SQLite answers both forms from its indexes."""
    if len(conditions) == 1:
        return conditions[0]
    return key.in_(union_all(*(select(key).where(condition) for condition in conditions)))


class invoice_key(GenericFunction[str]):
    """`bot.domain.matching.invoice_key` in SQL: ASCII letters upper-cased, nothing else. SQLite's `upper()` does
    exactly that; PostgreSQL's follows the database's locale, so there it is spelled out with `translate()`.
    Both are immutable, so `ix_invoices_number_key` indexes the expression."""

    type = String()
    inherit_cache = True

    def __init__(self, column: ColumnElement[str] | QueryableAttribute[str]) -> None:
        super().__init__(column)


@compiles(invoice_key)
def _invoice_key(element: invoice_key, compiler: SQLCompiler, **kw: Any) -> str:
    return f"upper({compiler.process(element.clauses, **kw)})"


@compiles(invoice_key, "postgresql")
def _invoice_key_postgresql(element: invoice_key, compiler: SQLCompiler, **kw: Any) -> str:
    lower, upper = "abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    return f"translate({compiler.process(element.clauses, **kw)}, '{lower}', '{upper}')"


class one_of(ColumnElement[bool]):
    """`column IN (…)`, for the list given at execution as the parameter `name`. On PostgreSQL it is
    `column = ANY(:name)`, one array: the statement's text, and so asyncpg's prepared statement, is the same
    whatever the list's length. An expanding IN is a new text for every length, which asyncpg prepares anew (a
    round trip, and PostgreSQL parsing and planning it) once its cache of 100 overflows: 382 texts in 2,984
    statements of ten seconds' load. (An array type outside `engine.ARRAYS` works too, but asyncpg asks the server
    what it is the first time each connection binds it.)"""

    type = Boolean()
    inherit_cache = True
    _is_implicitly_boolean = True  # a predicate: SQLite must not read it as a value to compare with 1
    _traverse_internals = [("column", InternalTraversal.dp_clauseelement), ("name", InternalTraversal.dp_string)]

    def __init__(self, column: ColumnElement[Any] | QueryableAttribute[Any], name: str) -> None:
        self.column = coercions.expect(roles.ExpressionElementRole, column)
        self.name = name


@compiles(one_of)
def _one_of(element: one_of, compiler: SQLCompiler, **kw: Any) -> str:
    return compiler.process(element.column.in_(bindparam(element.name, expanding=True)), **kw)


@compiles(one_of, "postgresql")
def _one_of_postgresql(element: one_of, compiler: SQLCompiler, **kw: Any) -> str:
    array = bindparam(element.name, type_=postgresql.ARRAY(element.column.type))
    return compiler.process(element.column == any_(array), **kw)


#: The escape character of `like_pattern`: `column.like(like_pattern(term), escape=LIKE_ESCAPE)`.
LIKE_ESCAPE = "\\"


def like_pattern(term: str) -> str:
    """`%term%` in which the term's own `%`, `_` and escape character match only themselves."""
    for special in (LIKE_ESCAPE, "%", "_"):
        term = term.replace(special, LIKE_ESCAPE + special)
    return f"%{term}%"
