"""Benchmark: in-process throughput of the paper matching engine on the real BTC/USDT data. Not a test.

    .venv/bin/python bench/matching_bench.py [--per-snapshot 1] [--limit-every 4] [--repeat 3]

* market: the 6,493 real top-20 snapshots replayed; after each, ``--per-snapshot`` market orders (sides
  alternate, sizes 0.001 / 0.1 / 1.5 / 50 BTC) with the default 50-200 ms latency: each walks the book in
  force at its arrival, consuming it.
* limit: the ~19,900 real trades replayed; every ``--limit-every``-th trade a GTC limit 0-4 ticks behind the
  trade price (sides alternate, sizes 0.001 / 0.1 / 1.5 BTC) rests and fills as maker from later trades;
  5 s after submission each is cancelled (a cancel rejection, ALREADY_FINAL, if it has filled by then).

Orders/s = orders submitted / wall time of the whole replay (market data events included), best of
``--repeat``; CSV parsing into Decimals is done before timing.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter, deque
from decimal import Decimal
from pathlib import Path

import polars as pl

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DATA = Path(os.environ.get("QUORUM_DATA_DIR", REPO.parent / "shared" / "data")) / "orderbook"

from quorum.matching import EngineConfig, Fill, MatchingEngine, Order, StatusChange  # noqa: E402
from quorum.types import OrderType, Side  # noqa: E402

D = Decimal
SIZES = [D("0.001"), D("0.1"), D("1.5"), D("50")]
TICK = D("0.01")


def load(name: str) -> pl.DataFrame:
    path = DATA / name
    if not path.is_file():
        sys.exit(f"{path} not found: set QUORUM_DATA_DIR to the shared data folder")
    return pl.read_csv(path, infer_schema=False)


def snapshots() -> list[tuple[int, list, list]]:
    def side(name: str, row: dict[str, str]) -> list[tuple[Decimal, Decimal]]:
        return [(D(row[f"{name}_px_{i}"]), D(row[f"{name}_qty_{i}"])) for i in range(1, 21)]

    return [(int(r["ts"]), side("bid", r), side("ask", r))
            for r in load("binance_BTCUSDT_book_top20_20240808.csv").iter_rows(named=True)]


def trades() -> list[tuple[int, Decimal, Decimal, Side]]:
    return [(int(ts), D(px), D(qty), Side(side.upper()))
            for ts, _, px, qty, side in load("binance_BTCUSDT_trades_20240808.csv").iter_rows()]


def market_run(books: list, per_snapshot: int) -> tuple[int, Counter]:
    engine, out, n = MatchingEngine("BTC/USDT", EngineConfig(), seed=1), [], 0
    for ts, bids, asks in books:
        out += engine.on_book(ts, bids, asks)
        for _ in range(per_snapshot):
            out += engine.submit(ts, Order(f"m{n}", Side.BUY if n % 2 else Side.SELL, SIZES[n // 2 % len(SIZES)]))
            n += 1
    out += engine.advance(books[-1][0] + 1_000)
    return n, tally(out)


def limit_run(tape: list, every: int) -> tuple[int, Counter]:
    engine, out, n, open_ = MatchingEngine("BTC/USDT", EngineConfig(), seed=1), [], 0, deque()
    for i, (ts, px, qty, side) in enumerate(tape):
        out += engine.on_trade(ts, px, qty, side)
        while open_ and open_[0][0] <= ts - 5_000:
            out += engine.cancel(ts, open_.popleft()[1])
        if i % every == 0:
            buy = n % 2 == 0
            limit = px - (n % 5) * TICK if buy else px + (n % 5) * TICK
            coid = f"l{n}"
            out += engine.submit(ts, Order(coid, Side.BUY if buy else Side.SELL, SIZES[n % 3], OrderType.LIMIT, limit))
            open_.append((ts, coid))
            n += 1
    out += engine.advance(tape[-1][0] + 1_000)
    return n, tally(out)


def tally(out: list) -> Counter:
    c: Counter = Counter()
    for o in out:
        c[o.liquidity.value.lower() + " fills" if isinstance(o, Fill) else
          o.status.value if isinstance(o, StatusChange) else type(o).__name__] += 1
    return c


def timed(label: str, run, *args: object, repeat: int) -> None:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        orders, counts = run(*args)
        best = min(best, time.perf_counter() - t0)
    print(f"{label}: {orders:,} orders in {best:.3f} s -> {orders / best:,.0f} orders/s")
    print("   " + ", ".join(f"{k} {v:,}" for k, v in sorted(counts.items())))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--per-snapshot", type=int, default=1)
    ap.add_argument("--limit-every", type=int, default=4)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    books, tape = snapshots(), trades()
    print(f"python {sys.version.split()[0]}; {len(books):,} snapshots, {len(tape):,} trades")
    timed(f"market vs real book ({len(books):,} snapshots)", market_run, books, args.per_snapshot,
          repeat=args.repeat)
    timed(f"limit vs real trades ({len(tape):,} trades)", limit_run, tape, args.limit_every, repeat=args.repeat)


if __name__ == "__main__":
    main()
