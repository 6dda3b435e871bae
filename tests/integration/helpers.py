"""Helpers for in-process service tests: publish payloads onto the real bus, read the real database."""

from __future__ import annotations

from typing import Any

from quorum.bus.publisher import Publisher
from quorum.clock import LiveClock
from quorum.db.engine import create_engine
from quorum.events.base import Payload, new_envelope


async def publish(js: Any, *payloads: Payload) -> None:
    """Each payload in its own envelope (id keyed by its content: publishing the same payload twice is one event)."""
    pub = Publisher(js, "test")
    for p in payloads:
        await pub.publish(new_envelope(p, clock=LiveClock(), source="test", key=repr(p)))


async def rows(url: str, query: Any) -> list[Any]:
    engine = create_engine(url)
    async with engine.connect() as conn:
        out = (await conn.execute(query)).all()
    await engine.dispose()
    return list(out)
