"""Benchmark: ledger postings per second (pure, and each in its own committed PostgreSQL transaction as the
service does), and the paper venue + ledger end to end through the services: market orders published as the
OMS would, matched by the matching service, booked by the ledger, timed until the last one is posted.
Not a test. (In-process matching throughput against the real book: ``bench/matching_bench.py``.)

    python bench/trading_bench.py [--postings 50000] [--db-postings 2000] [--orders 1000]

Embedded durable PostgreSQL and NATS (JetStream fsync always) unless DATABASE_URL / NATS_URL are set.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import shlex
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from replay_publish import servers  # noqa: E402

D = Decimal
T0 = datetime(2024, 1, 1, tzinfo=UTC)


def pure_postings(n: int) -> float:
    from quorum.domain.ledger import GENESIS_HASH, Position, fill_lines, txn_hash
    from quorum.types import Side, TradingMode

    prev, pos = GENESIS_HASH, Position()
    t0 = time.perf_counter()
    for i in range(n):
        side = Side.BUY if i % 2 == 0 else Side.SELL
        qty, price = D("0.01"), D("30000") + D(i % 97)
        realized = pos.realized_by(qty, qty * price) if side is Side.SELL else D(0)
        lines = fill_lines(TradingMode.PAPER, "BTC/USDT", side, qty, price, qty * price * D("0.001"), "USDT", realized)
        prev = txn_hash(prev, str(i), "2024-01-01T00:00:00+00:00", "bench", lines, key=b"bench-chain-key-0123")
        pos = pos.apply_fill(side, qty, price, qty * price * D("0.001"))
    return n / (time.perf_counter() - t0)


async def db_postings(db: str, n: int) -> float:
    from pydantic import SecretStr
    from quorum.clock import LiveClock
    from quorum.db.engine import create_engine
    from quorum.domain.ledger import fill_lines
    from quorum.runtime.handling import Context
    from quorum.types import Side, TradingMode

    from services.ledger.service import post

    engine = create_engine(db)
    try:
        t0 = time.perf_counter()
        for i in range(n):
            async with engine.begin() as conn:
                ctx = Context(conn=conn, clock=LiveClock(), service="bench")
                lines = fill_lines(TradingMode.PAPER, "BTC/USDT", Side.BUY, D("0.01"), D("30000"), D("0.3"), "USDT")
                await post(ctx, TradingMode.PAPER, uuid.uuid4(), T0 + timedelta(seconds=i), "bench", lines, None,
                           chain_key=SecretStr("bench-chain-key-0123"))
        return n / (time.perf_counter() - t0)
    finally:
        await engine.dispose()


async def end_to_end(db: str, nats_url: str, n: int) -> tuple[float, float]:
    """(orders/s from the first publish to the last posting, seconds)."""
    from quorum.bus.connection import connect, jetstream
    from quorum.bus.publisher import Publisher
    from quorum.clock import LiveClock
    from quorum.db.engine import create_engine
    from quorum.db.tables import ledger_transactions, paper_orders
    from quorum.events.base import new_envelope
    from quorum.events.market_data import CandleClosed
    from quorum.events.orders import SubmitOrder
    from quorum.infra.embedded import free_port
    from quorum.types import OrderType, Side, TradingMode
    from sqlalchemy import func, insert, select

    from services.ledger.service import LedgerService, LedgerSettings
    from services.matching.service import MatchingService, MatchingSettings

    os.environ.update({"DATABASE_URL": db, "NATS_URL": nats_url, "QUORUM_ENVIRONMENT": "test"})
    services = [MatchingService(MatchingSettings(http_port=free_port())),
                LedgerService(LedgerSettings(http_port=free_port()))]
    nc = await connect(nats_url, name="bench")
    pub = Publisher(jetstream(nc), "bench")
    engine = create_engine(db)
    candle = CandleClosed(exchange="binance", symbol="BTC/USDT", timeframe="1h", ts=T0, open=D(30000), high=D(30000),
                          low=D(30000), close=D(30000), volume=D(100000))
    async with engine.begin() as conn:  # the venue warms up from the stored candle, as in production
        await conn.execute(insert(paper_orders.metadata.tables["candles"]).values(
            exchange="binance", symbol="BTC/USDT", timeframe="1h", ts=T0, open=D(30000), high=D(30000),
            low=D(30000), close=D(30000), volume=D(100000), event_id=uuid.uuid4()))
    try:
        for s in services:
            await s.start()
        await pub.publish(new_envelope(candle, clock=LiveClock(), source="bench", key="candle"))
        before = await _count(engine, select(func.count()).select_from(ledger_transactions))
        t0 = time.perf_counter()
        for i in range(n):
            await pub.publish(new_envelope(SubmitOrder(
                venue="paper", mode=TradingMode.PAPER, client_order_id=f"B{i:031d}", exchange="binance",
                symbol="BTC/USDT", side=Side.BUY, order_type=OrderType.MARKET, quantity=D("0.001"),
                reference_ts=T0), clock=LiveClock(), source="bench", key=str(i)))
        while await _count(engine, select(func.count()).select_from(ledger_transactions)) < before + n:
            if any(s.failed for s in services):
                raise RuntimeError("a service failed; see the log")
            await asyncio.sleep(0.05)
        seconds = time.perf_counter() - t0
    finally:
        for s in services:
            await s.stop()
        await engine.dispose()
        await nc.close()
    return n / seconds, seconds


async def _count(engine: object, query: object) -> int:
    async with engine.connect() as conn:  # type: ignore[attr-defined]
        return (await conn.execute(query)).scalar_one()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--postings", type=int, default=50_000)
    p.add_argument("--db-postings", type=int, default=2_000)
    p.add_argument("--orders", type=int, default=1_000)
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    print("command:", shlex.join([os.path.relpath(sys.executable), *sys.argv]))
    print(f"machine: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}")
    print(f"ledger, pure (lines + hash chain + position fold): {pure_postings(args.postings):,.0f} postings/s")
    from quorum.devstack import migrate, provision_topology

    with tempfile.TemporaryDirectory(prefix="quorum-bench-") as tmp, servers(Path(tmp)) as (db, nats_url, notes):
        for note in notes:
            print(note)
        migrate(db)
        asyncio.run(provision_topology(nats_url))
        rate = asyncio.run(db_postings(db, args.db_postings))
        print(f"ledger, one committed transaction per posting: {rate:,.0f} postings/s ({args.db_postings:,})")
        per_s, seconds = asyncio.run(end_to_end(db, nats_url, args.orders))
        print(f"end to end, {args.orders:,} market orders -> matching service -> fills -> ledger service: "
              f"{per_s:,.0f} orders/s ({seconds:.2f}s to the last posting)")


if __name__ == "__main__":
    main()
