"""Benchmark: the market-data replay's publish rate (events/s), the path every downstream service is fed by.

Starts an embedded NATS (JetStream, fsync always) and an embedded durable PostgreSQL unless NATS_URL /
DATABASE_URL are set, migrates and provisions them, then runs ``MarketDataService`` in-process replaying the
real BTC/USDT 1m file (50,000 candles) as fast as possible: per batch, store and commit, then publish every
candle and wait for JetStream's acks, then checkpoint. Timed until the MD stream holds every candle. Not a test.

    python bench/replay_publish.py [--rows 50000] [--batch 500]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import shlex
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("QUORUM_DATA_DIR", REPO.parent / "shared" / "data"))


@contextlib.contextmanager
def servers(tmp: Path) -> Iterator[tuple[str, str, list[str]]]:
    """(database url, nats url, descriptions): the configured servers, or embedded durable ones."""
    from quorum.infra.embedded import EmbeddedNats, EmbeddedPostgres

    started: list[EmbeddedNats | EmbeddedPostgres] = []
    notes = []
    try:
        db = os.environ.get("DATABASE_URL")
        if db:
            notes.append("PostgreSQL: DATABASE_URL (as configured)")
        else:
            pg = EmbeddedPostgres(tmp / "pg", durable=True).start()
            started.append(pg)
            db = pg.url("quorum")
            notes.append("PostgreSQL: embedded, durable=True (fsync=on, synchronous_commit=on)")
        nats_url = os.environ.get("NATS_URL")
        if nats_url:
            notes.append("NATS: NATS_URL (as configured)")
        else:
            nats = EmbeddedNats(tmp / "nats").start()
            started.append(nats)
            nats_url = nats.url
            notes.append("NATS: embedded nats-server, JetStream file storage, sync_interval=always")
        yield db, nats_url, notes
    finally:
        for server in reversed(started):
            server.stop()


async def replay(db: str, nats_url: str, path: Path, rows: int, batch: int) -> tuple[float, float, int]:
    """(start-up seconds, replay seconds, events on the MD stream)."""
    from quorum.bus.connection import connect, jetstream
    from quorum.infra.embedded import free_port

    from services.market_data.service import MarketDataService
    from services.market_data.settings import MarketDataSettings

    os.environ.update({"DATABASE_URL": db, "NATS_URL": nats_url, "QUORUM_ENVIRONMENT": "test"})
    svc = MarketDataService(MarketDataSettings(http_port=free_port(), replay_file=path, replay_speed=0.0,
                                               replay_pacing="free", replay_limit=rows, replay_batch=batch))
    nc = await connect(nats_url, name="bench")
    js = jetstream(nc)
    try:
        t0 = time.perf_counter()
        await svc.start()
        t1 = time.perf_counter()
        while (await js.stream_info("MD")).state.messages < rows:
            if svc.failed:
                raise RuntimeError("the market-data service failed; see the log above")
            await asyncio.sleep(0.01)
        t2 = time.perf_counter()
        count = (await js.stream_info("MD")).state.messages
    finally:
        await svc.stop()
        await nc.close()
    return t1 - t0, t2 - t1, count


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=50_000)
    p.add_argument("--batch", type=int, default=500, help="candles per store-then-publish batch (service default)")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    path = DATA / "ohlcv" / "binance_BTCUSDT_1m.csv"
    if not path.is_file():
        sys.exit(f"{path} not found: set QUORUM_DATA_DIR to the shared data folder")
    print("command:", shlex.join([os.path.relpath(sys.executable), *sys.argv]))
    print(f"machine: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}")
    from quorum.devstack import migrate, provision_topology

    with tempfile.TemporaryDirectory(prefix="quorum-bench-") as tmp, servers(Path(tmp)) as (db, nats_url, notes):
        for note in notes:
            print(note)
        migrate(db)
        asyncio.run(provision_topology(nats_url))
        startup, seconds, count = asyncio.run(replay(db, nats_url, path, args.rows, args.batch))
    print(f"replayed {path.name}: {count:,} CandleClosed events stored, published and acked in {seconds:.2f}s "
          f"= {count / seconds:,.0f} events/s (batch {args.batch}; service start-up {startup:.2f}s not counted)")


if __name__ == "__main__":
    main()
