"""Shared fixtures: real PostgreSQL and real NATS JetStream, started on free ports unless DATABASE_URL /
NATS_URL point at servers to use. Each test gets a fresh database (cloned from a migrated template) and,
with embedded NATS, a fresh server."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from quorum.infra.embedded import EmbeddedNats

from tests.support import PgServer


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PgServer]:
    server = PgServer(tmp_path_factory.mktemp("pg"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def migrated_template(pg_server: PgServer) -> str:
    """A database at migration head; each test clones it (cheap) instead of migrating again."""
    from quorum.devstack import migrate

    url = pg_server.create(pg_server.template)
    migrate(url)
    return pg_server.template


@pytest.fixture
def database_url(pg_server: PgServer, migrated_template: str) -> str:
    return pg_server.create(f"quorum_test_{uuid.uuid4().hex[:10]}", template=migrated_template)


@pytest.fixture
def empty_database_url(pg_server: PgServer) -> str:
    return pg_server.create(f"quorum_empty_{uuid.uuid4().hex[:10]}")


@pytest.fixture
def nats_url(tmp_path: Path) -> Iterator[str]:
    external = os.environ.get("NATS_URL")
    if external:
        asyncio.run(_wipe_streams(external))
        yield external
        return
    server = EmbeddedNats(tmp_path / "nats").start()
    yield server.url
    server.stop()


async def _wipe_streams(url: str) -> None:
    """A shared NATS gives no fresh server per test: start from no streams instead."""
    import nats

    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        for info in await js.streams_info():
            await js.delete_stream(info.config.name)
    finally:
        await nc.close()


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[object]:
    from quorum.db.engine import create_engine

    eng = create_engine(database_url)
    yield eng
    await eng.dispose()


@pytest.fixture
async def js(nats_url: str) -> AsyncIterator[object]:
    """A JetStream context on a provisioned topology."""
    from quorum.bus.connection import connect, jetstream
    from quorum.bus.provision import provision

    nc = await connect(nats_url, name="test")
    ctx = jetstream(nc)
    await provision(ctx)
    yield ctx
    await nc.close()

