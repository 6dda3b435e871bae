"""Test support shared by all test layers: locating market data, real PostgreSQL databases, SQL helpers."""

from __future__ import annotations

import asyncio
import os
import uuid
from pathlib import Path

import pytest
from quorum.infra.embedded import EmbeddedPostgres

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("QUORUM_DATA_DIR", REPO_ROOT.parent / "shared" / "data"))


def data_file(*parts: str) -> Path:
    """A file from the shared market data, or a skip that says how to provide it."""
    path = DATA_DIR.joinpath(*parts)
    if not path.is_file():
        pytest.skip(f"market data {path} not found: set QUORUM_DATA_DIR to the shared data folder")
    return path


class PgServer:
    """Creates databases on an embedded server, or on the server DATABASE_URL names."""

    def __init__(self, tmp: Path) -> None:
        self._embedded: EmbeddedPostgres | None = None
        external = os.environ.get("DATABASE_URL")
        if external:
            from sqlalchemy.engine import make_url

            self._base = make_url(external.replace("postgresql://", "postgresql+asyncpg://", 1))
        else:
            self._embedded = EmbeddedPostgres(tmp / "pg", durable=False).start()
            from sqlalchemy.engine import make_url

            self._base = make_url(self._embedded.url("postgres"))
        self.template = f"quorum_tmpl_{uuid.uuid4().hex[:8]}"

    def url(self, database: str) -> str:
        return self._base.set(database=database).render_as_string(hide_password=False)

    def execute(self, sql: str) -> None:
        import asyncpg

        async def run() -> None:
            conn = await asyncpg.connect(self.url("postgres").replace("postgresql+asyncpg", "postgresql"))
            try:
                await conn.execute(sql)
            finally:
                await conn.close()

        asyncio.run(run())

    def create(self, name: str, template: str | None = None) -> str:
        self.execute(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
        return self.url(name)

    def stop(self) -> None:
        if self._embedded:
            self._embedded.stop()


def run_sql(url: str, sql: str, *args: object) -> list[dict[str, object]]:
    """Run one statement on its own connection (for synchronous tests and assertions)."""
    import asyncpg

    async def go() -> list[dict[str, object]]:
        conn = await asyncpg.connect(url.replace("postgresql+asyncpg", "postgresql"))
        try:
            return [dict(r) for r in await conn.fetch(sql, *args)]
        finally:
            await conn.close()

    return asyncio.run(go())
