"""Migrations are tested by running them against a real PostgreSQL."""

from __future__ import annotations

import asyncio

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from quorum.db.engine import create_engine
from quorum.db.tables import metadata
from quorum.devstack import migrate

from tests.support import run_sql

pytestmark = pytest.mark.integration

TABLES_SQL = "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename"


def test_upgrade_downgrade_upgrade_round_trip(empty_database_url: str) -> None:
    migrate(empty_database_url)
    created = {r["tablename"] for r in run_sql(empty_database_url, TABLES_SQL)}
    assert set(metadata.tables) <= created

    migrate(empty_database_url, "base", downgrade=True)
    assert {r["tablename"] for r in run_sql(empty_database_url, TABLES_SQL)} == {"alembic_version"}

    migrate(empty_database_url)
    assert {r["tablename"] for r in run_sql(empty_database_url, TABLES_SQL)} == created


def test_migrated_schema_matches_the_table_definitions(database_url: str) -> None:
    async def diff() -> list[object]:
        engine = create_engine(database_url)
        async with engine.connect() as conn:
            result = await conn.run_sync(
                lambda sync: compare_metadata(MigrationContext.configure(sync, opts={"compare_type": True}), metadata)
            )
        await engine.dispose()
        return result

    assert asyncio.run(diff()) == []


def test_plain_postgres_gets_time_indexes_on_time_series_tables(database_url: str) -> None:
    indexes = {r["indexname"] for r in run_sql(database_url, "SELECT indexname FROM pg_indexes")}
    assert {"ix_candles_time", "ix_features_time", "ix_predictions_time", "ix_equity_time"} <= indexes
