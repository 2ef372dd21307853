"""Storage: SQLAlchemy 2 (async) models, the outbox, the audit chain and Alembic migrations.

SQLite (aiosqlite, WAL) is the embedded default; PostgreSQL (asyncpg) is the scale-out engine.
"""
