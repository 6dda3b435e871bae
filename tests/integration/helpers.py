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


async def assert_risk_matches_ledger(url: str, *, mode: Any = None, currency: str = "USDT",
                                     starting_cash: Any = None) -> None:
    """Risk's cash and positions equal the ledger's (the comparison the risk service runs continuously), for a
    test whose risk and ledger both ran; call it once every order has settled."""
    from decimal import Decimal

    from quorum.risk.consistency import compare
    from quorum.types import TradingMode

    from services.risk.service import read_books

    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            books = await read_books(conn, mode or TradingMode.PAPER, currency, starting_cash or Decimal(10000))
    finally:
        await engine.dispose()
    assert books is not None, "the ledger has not opened the book: did the ledger service run?"
    differences = compare(*books, currency)
    assert differences == (), f"risk and the ledger disagree: {differences}"
