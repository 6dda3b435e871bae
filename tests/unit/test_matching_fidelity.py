"""Fidelity on the real Binance BTC/USDT book: market orders sent through the engine, latency included, fill
exactly what the book in force at their arrival offers, computed here straight from the CSV levels."""

from __future__ import annotations

from bisect import bisect_right
from decimal import Decimal

import polars as pl
import pytest
from quorum.matching import EngineConfig, Fill, MatchingEngine, Order, StatusChange
from quorum.types import OrderStatus, Side

from tests.support import data_file

D = Decimal
ROWS = 300  # ~40 s of 100 ms snapshots
SIZES = ["0.001", "0.1", "1.5", "50"]  # small, medium, large, beyond the 20 levels (top 20 hold 0.6-12 BTC)
Level = tuple[Decimal, Decimal]


@pytest.fixture(scope="module")
def snapshots() -> list[tuple[int, list[Level], list[Level]]]:
    df = pl.read_csv(data_file("orderbook", "binance_BTCUSDT_book_top20_20240808.csv"), infer_schema=False,
                     n_rows=ROWS)

    def side(name: str, row: dict[str, str]) -> list[Level]:
        return [(D(row[f"{name}_px_{i}"]), D(row[f"{name}_qty_{i}"])) for i in range(1, 21)]

    return [(int(r["ts"]), side("bid", r), side("ask", r)) for r in df.iter_rows(named=True)]


def reference_walk(levels: list[Level], qty: Decimal) -> tuple[Decimal, Decimal]:
    """(filled, quote notional) of taking ``qty`` from fresh levels, best first."""
    filled = notional = D(0)
    for price, available in levels:
        take = min(qty - filled, available)
        filled, notional = filled + take, notional + take * price
    return filled, notional


def test_market_orders_fill_the_vwap_of_the_real_book_in_force_after_latency(snapshots: list) -> None:
    engine = MatchingEngine("BTC/USDT", EngineConfig(), seed=20240808)  # default latency: uniform 50-200 ms
    times = [ts for ts, _, _ in snapshots]
    plan = [(side, size) for size in SIZES for side in Side] * 3  # 24 orders, one every 10 snapshots
    submitted: dict[str, tuple[int, Side, Decimal]] = {}
    out: list = []
    k = 0
    for i, (ts, bids, asks) in enumerate(snapshots):
        out += engine.on_book(ts, bids, asks)
        if i % 10 == 5 and k < len(plan):
            side, size = plan[k]
            coid, at = f"o{k}", ts + 37
            out += engine.advance(at)
            out += engine.submit(at, Order(coid, side, D(size)))
            submitted[coid], k = (at, side, D(size)), k + 1
    out += engine.advance(times[-1] + 1)
    assert k == len(plan)

    used: set[int] = set()
    for coid, (at, side, qty) in submitted.items():
        fills = [o for o in out if isinstance(o, Fill) and o.client_order_id == coid]
        final = [o for o in out if isinstance(o, StatusChange) and o.client_order_id == coid][-1]
        accepted = next(o for o in out if isinstance(o, StatusChange) and o.client_order_id == coid)
        assert 50 <= accepted.ts - at <= 200
        index = bisect_right(times, accepted.ts) - 1  # the snapshot in force at arrival
        assert index not in used  # each order meets a fresh snapshot, so the reference needs no consumption
        used.add(index)
        _, bids, asks = snapshots[index]

        want_filled, want_notional = reference_walk(asks if side == Side.BUY else bids, qty)
        filled = sum((f.quantity for f in fills), D(0))
        notional = sum((f.quantity * f.price for f in fills), D(0))

        assert (filled, notional) == (want_filled, want_notional), coid
        assert notional / filled == want_notional / want_filled  # the VWAP, exactly
        assert qty - filled == max(D(0), qty - sum(q for _, q in (asks if side == Side.BUY else bids)))
        assert sum((f.fee for f in fills), D(0)) == notional * D("0.001")
        assert all(f.ts == accepted.ts for f in fills) and fills[-1].is_final
        if filled == qty:
            assert final.status == OrderStatus.FILLED
        else:
            assert (final.status, final.reason, final.filled_quantity) == (OrderStatus.EXPIRED,
                                                                           "INSUFFICIENT_DEPTH", filled)
    assert sum(1 for o in out if isinstance(o, StatusChange) and o.status == OrderStatus.EXPIRED) >= 6
