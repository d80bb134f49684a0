"""Alembic migrations build exactly the schema the models describe, on SQLite and PostgreSQL, and
SQLite runs in WAL mode."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text

from loopylab.market import migrate
from loopylab.market.db import Base


def test_migrations_reach_head_and_match_the_models(any_store):
    assert migrate.current_revision(any_store) == migrate.head_revision()
    with any_store.engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
    migrate.upgrade(any_store)  # idempotent
    assert migrate.current_revision(any_store) == migrate.head_revision()


def test_sqlite_uses_wal(sqlite_store):
    with sqlite_store.read_engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
