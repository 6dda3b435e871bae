"""Benchmark: how fast the backfill's write path ingests candles into PostgreSQL.

For N candles (default 1,000,000: the real BTC/USDT 1m file, 50,000 rows, repeated over distinct symbols) it
measures each stage of the backfill's write path (``quorum.marketdata.bulk`` and ``.store``) on its own and
together, per page size:

* prepare: text rows -> ``accepted_frame`` (validation with ``CandleValidator``'s verdicts, event ids);
* write:   ``write_candles``, one transaction per page: CSV COPY -> temp staging -> one merge into candles;
* end to end: prepare + write page after page, as a backfill does (one connection);
* re-run:  the same pages again (every row conflicts: the path that looks for corrections).

It also times the alternatives the design was chosen against (binary COPY of Python records; row-by-row
``CandleValidator``), so the figures say where the time goes. Starts an embedded, durable PostgreSQL (fsync on)
unless DATABASE_URL is set, and migrates it. Not a test.

    python bench/backfill_ingest.py [--rows 1000000] [--pages 1000,10000,50000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import polars as pl

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("QUORUM_DATA_DIR", REPO.parent / "shared" / "data"))


@contextmanager
def database() -> Iterator[tuple[str, str]]:
    """(url, description): DATABASE_URL as given, or a fresh embedded durable server."""
    if os.environ.get("DATABASE_URL"):
        yield os.environ["DATABASE_URL"], "DATABASE_URL (as configured)"
        return
    from quorum.infra.embedded import EmbeddedPostgres

    with tempfile.TemporaryDirectory(prefix="quorum-bench-pg-") as tmp:
        pg = EmbeddedPostgres(Path(tmp), durable=True).start()
        try:
            yield pg.url("quorum"), "embedded PostgreSQL, durable=True (fsync=on, synchronous_commit=on, " \
                                    "full_page_writes=on; server defaults otherwise)"
        finally:
            pg.stop()


def source(n: int) -> list[tuple[str, pl.DataFrame]]:
    """(symbol, rows) pairs totalling N rows: the real 1m file, as text, under distinct universe symbols."""
    from quorum.marketdata.files import read_rows
    from quorum.marketdata.universe import UNIVERSE_V1

    path = DATA / "ohlcv" / "binance_BTCUSDT_1m.csv"
    if not path.is_file():
        sys.exit(f"{path} not found: set QUORUM_DATA_DIR to the shared data folder")
    base = read_rows(path)
    out, bases = [], UNIVERSE_V1.bases
    for i in range(-(-n // base.height)):
        symbol = f"{bases[i % len(bases)]}{i // len(bases) or ''}/USDT"
        out.append((symbol, base.head(n - i * base.height)))
    return out


def pages(series: list[tuple[str, pl.DataFrame]], size: int) -> Iterator[tuple[str, pl.DataFrame]]:
    for symbol, rows in series:
        for i in range(0, rows.height, size):
            yield symbol, rows.slice(i, size)


def prepare(series: list[tuple[str, pl.DataFrame]], size: int, now: datetime) -> list[pl.DataFrame]:
    from quorum.marketdata.bulk import accepted_frame
    from quorum.marketdata.validation import CandleValidator, SeriesId

    validators = {s: CandleValidator(SeriesId("binance", s, "1m")) for s, _ in series}
    out = [accepted_frame(rows, validators[s], now=now) for s, rows in pages(series, size)]
    assert sum(v.rejections.total for v in validators.values()) == 0
    return out


async def write(url: str, frames: list[pl.DataFrame], *, truncate: bool,
                series: list[tuple[str, pl.DataFrame]] | None = None, size: int = 0) -> tuple[float, int]:
    """Write prepared frames (or, with ``series``, prepare each page just before writing it)."""
    from quorum.clock import LiveClock
    from quorum.db.engine import create_engine
    from quorum.marketdata.bulk import accepted_frame
    from quorum.marketdata.store import write_candles
    from quorum.marketdata.validation import CandleValidator, SeriesId
    from sqlalchemy import text

    engine = create_engine(url, pool_size=1)
    try:
        if truncate:
            async with engine.begin() as conn:
                await conn.execute(text("TRUNCATE candles, candle_corrections"))
            async with engine.connect() as conn:  # the same start for every run: no dead tuples, fresh statistics
                driver = (await conn.get_raw_connection()).driver_connection  # outside a transaction, as VACUUM wants
                await driver.execute("VACUUM ANALYZE candles")
                await driver.execute("CHECKPOINT")
        clock, inserted = LiveClock(), 0
        now = clock.now()
        validators: dict[str, CandleValidator] = {}
        source_pages = ((None, f) for f in frames) if series is None else pages(series, size)
        started = time.perf_counter()
        for symbol, frame in source_pages:
            if symbol is not None:
                v = validators.setdefault(symbol, CandleValidator(SeriesId("binance", symbol, "1m")))
                frame = accepted_frame(frame, v, now=now)
            async with engine.begin() as conn:
                inserted += (await write_candles(conn, frame, clock=clock)).inserted
        return time.perf_counter() - started, inserted
    finally:
        await engine.dispose()


async def binary_copy_alternative(url: str, frame: pl.DataFrame) -> float:
    """rows/s of asyncpg's binary COPY (``copy_records_to_table``) of Python records (Decimal, datetime, UUID)
    into a temp table: the client-side encoding the CSV COPY avoids."""
    from decimal import Decimal
    from uuid import UUID

    import asyncpg
    from quorum.marketdata.store import COLUMNS

    records = [(e, s, tf, datetime.fromisoformat(ts), *map(Decimal, prices), UUID(eid))
               for e, s, tf, ts, *prices, eid in frame.iter_rows()]
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        async with conn.transaction():
            await conn.execute("CREATE TEMP TABLE b (LIKE candles) ON COMMIT DROP")
            started = time.perf_counter()
            await conn.copy_records_to_table("b", records=records, columns=COLUMNS)
            return len(records) / (time.perf_counter() - started)
    finally:
        await conn.close()


def row_by_row_alternative(rows: pl.DataFrame, now: datetime) -> float:
    """rows/s of ``CandleValidator.check`` (pydantic) + ``candle_event_id`` per row: what bulk validation replaces."""
    from quorum.marketdata.keys import candle_event_id
    from quorum.marketdata.validation import CandleValidator, SeriesId

    v = CandleValidator(SeriesId("binance", "BTC/USDT", "1m"))
    started = time.perf_counter()
    for r in rows.iter_rows():
        c = v.check(*r, now=now)
        assert c is not None
        candle_event_id(c)
    return rows.height / (time.perf_counter() - started)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--pages", default="1000,10000,50000", help="page sizes (rows per transaction) to measure")
    args = p.parse_args()
    sizes = [int(x) for x in args.pages.split(",")]
    print("command:", shlex.join([os.path.relpath(sys.executable), *sys.argv]))
    print(f"machine: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, polars {pl.__version__}")
    series = source(args.rows)
    n = sum(rows.height for _, rows in series)
    print(f"data: {n:,} candles = real binance_BTCUSDT_1m.csv ({series[0][1].height:,} rows) x {len(series)} symbols")
    now = datetime.now(UTC)

    with database() as (url, what):
        from quorum.devstack import migrate

        migrate(url)
        print(f"database: {what}")
        print(f"alternative, row by row: CandleValidator + event id {row_by_row_alternative(series[0][1], now):,.0f} "
              "rows/s (client only)")
        for size in sizes:
            started = time.perf_counter()
            frames = prepare(series, size, now)
            t_prep = time.perf_counter() - started
            t_write, inserted = asyncio.run(write(url, frames, truncate=True))
            assert inserted == n, (inserted, n)
            t_again, again = asyncio.run(write(url, frames, truncate=False))
            assert again == 0, again
            t_e2e, inserted = asyncio.run(write(url, [], truncate=True, series=series, size=size))
            assert inserted == n, (inserted, n)
            print(f"page {size:>6,}: prepare {n / t_prep:>9,.0f} rows/s | write (COPY->staging->merge) "
                  f"{n / t_write:>7,.0f} rows/s | end to end {n / t_e2e:>7,.0f} rows/s ({t_e2e:.1f}s) | "
                  f"re-run, all conflicts {n / t_again:>7,.0f} rows/s")
        print(f"alternative, binary COPY of Python records into a temp table: "
              f"{asyncio.run(binary_copy_alternative(url, frames[0])):,.0f} rows/s")


if __name__ == "__main__":
    main()
