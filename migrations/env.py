"""Alembic environment: async (asyncpg), URL from DATABASE_URL or the ``sqlalchemy.url`` set by callers."""

from __future__ import annotations

import asyncio
import os
from logging.config import fileConfig

from alembic import context
from quorum.db.engine import async_url, create_engine
from quorum.db.tables import metadata
from quorum.runtime.settings import DEV_DATABASE_URL
from sqlalchemy.engine import Connection

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name)

target_metadata = metadata


def _url() -> str:
    return config.get_main_option("sqlalchemy.url") or os.environ.get("DATABASE_URL") or DEV_DATABASE_URL


def run_migrations_offline() -> None:
    context.configure(url=async_url(_url()), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def _run(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata, compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


async def run_migrations_online() -> None:
    engine = create_engine(_url(), pool_size=1)
    async with engine.connect() as connection:
        await connection.run_sync(_run)
    await engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    asyncio.run(run_migrations_online())
