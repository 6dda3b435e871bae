"""The paper venue's decisions without infrastructure: arrange a venue book, feed one message, assert the events
and the new book."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import uuid4

from quorum.clock import TestClock
from quorum.events.base import new_envelope
from quorum.events.fills import OrderFilled
from quorum.events.market_data import CandleClosed
from quorum.events.orders import CancelOrder, OrderAccepted, OrderCanceled, OrderRejected, SubmitOrder
from quorum.matching import EngineConfig, FeeAsset, LatencyModel, VenueFees
from quorum.matching.venue import (
    FillRecorded,
    MarketEvent,
    MarketWindow,
    OrderOpened,
    OrderStatusSet,
    StoredCandle,
    VenueBook,
    VenueParams,
    decide,
    market_needed,
)
from quorum.outcome import Outcome
from quorum.times import to_ms
from quorum.types import Liquidity, OrderStatus, OrderType, Side, TradingMode

D = Decimal
T0 = datetime(2024, 1, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)
LATENCY = timedelta(milliseconds=100)
SYMBOL = "BTC/USDT"
KEY = ("binance", SYMBOL)
PARAMS = VenueParams(EngineConfig(latency=LatencyModel.fixed(100), remember_final=500), seed=7)


def close_of(i: int) -> datetime:
    return T0 + (i + 1) * HOUR


def candle(i: int, close: str, *, high: str | None = None, low: str | None = None) -> CandleClosed:
    c = D(close)
    return CandleClosed(exchange="binance", symbol=SYMBOL, timeframe="1h", ts=T0 + i * HOUR, open=c,
                        high=D(high) if high else c, low=D(low) if low else c, close=c, volume=D(1000))


def stored(i: int, close: str) -> StoredCandle:
    c = D(close)
    return StoredCandle(to_ms(close_of(i)), 3600, c, c, c, c, D(1000))


def submit(coid: str, side: Side, qty: str, order_type: OrderType = OrderType.MARKET, *, limit: str | None = None,
           stop: str | None = None, group: str | None = None) -> SubmitOrder:
    return SubmitOrder(venue="paper", mode=TradingMode.PAPER, client_order_id=coid, exchange="binance", symbol=SYMBOL,
                       side=side, order_type=order_type, quantity=D(qty), limit_price=D(limit) if limit else None,
                       stop_price=D(stop) if stop else None, oco_group=group, oco_size=2 if group else None,
                       reference_ts=T0)


def message(payload: Any, at: datetime | None = None) -> Any:
    if at is None:
        at = payload.ts + HOUR if isinstance(payload, CandleClosed) else close_of(0)
    return new_envelope(payload, clock=TestClock(T0), source="test", key=uuid4(), event_time=at)


def run(book: VenueBook, payload: Any, at: datetime | None = None, market: tuple[MarketEvent, ...] = (),
        params: VenueParams = PARAMS) -> Outcome[VenueBook]:
    return decide(book, message(payload, at), params, T0, market)


def feed(book: VenueBook, *payloads: Any, params: VenueParams = PARAMS) -> VenueBook:
    for p in payloads:
        book = run(book, p, params=params).state
    return book


def payloads(outcome: Outcome[VenueBook]) -> list[Any]:
    return [e.payload for e in outcome.events]


def holding(qty: str) -> VenueBook:
    """Candle 0 (close 100) applied and ``qty`` bought."""
    return feed(VenueBook(), candle(0, "100"), submit("ENTRY", Side.BUY, qty))


# --- matching ------------------------------------------------------------------------------------------------

def test_a_market_buy_fills_at_the_ask_of_the_candles_book_with_a_taker_fee_after_its_latency() -> None:
    book = feed(VenueBook(), candle(0, "100"))

    out = run(book, submit("B1", Side.BUY, "2"))

    accepted, fill = payloads(out)
    assert isinstance(accepted, OrderAccepted) and accepted.ts == close_of(0) + LATENCY
    assert isinstance(fill, OrderFilled)
    assert (fill.quantity, fill.price, fill.liquidity) == (D(2), D("100.0100"), Liquidity.TAKER)  # ask: mid + 1 bp
    assert (fill.fee, fill.fee_currency) == (D(2) * D("100.0100") * D("0.001"), "USDT")
    assert out.events[1].key == "B1-1" and out.events[1].event_time == close_of(0) + LATENCY
    assert out.events[0].key == "B1:ACCEPTED"
    assert out.state.held[KEY] == D(2) and "B1" not in out.state.orders and out.state.finished == {"B1": "binance"}
    assert [type(r) for r in out.records] == [OrderOpened, OrderStatusSet, FillRecorded, OrderStatusSet]
    assert out.records[-1] == OrderStatusSet("B1", OrderStatus.FILLED)


def test_a_fee_in_the_received_asset_reduces_what_a_buy_holds() -> None:
    params = VenueParams(EngineConfig(fees=VenueFees(fee_asset=FeeAsset.RECEIVED), latency=LatencyModel.fixed(100)))
    book = feed(VenueBook(), candle(0, "100"), params=params)

    out = run(book, submit("B1", Side.BUY, "2"), params=params)

    fill = payloads(out)[1]
    assert (fill.fee, fill.fee_currency) == (D("0.002"), "BTC")
    assert out.state.held[KEY] == D("1.998")


def test_a_resting_limit_buy_fills_as_a_maker_at_its_price_when_a_candle_trades_through_it() -> None:
    book = feed(VenueBook(), candle(0, "100"), submit("L1", Side.BUY, "1", OrderType.LIMIT, limit="98"))
    assert book.orders["L1"].status is OrderStatus.ACCEPTED

    out = run(book, candle(1, "99", high="100", low="97"))

    (fill,) = payloads(out)
    assert (fill.price, fill.liquidity, fill.ts) == (D(98), Liquidity.MAKER, close_of(1))
    assert "L1" not in out.state.orders and out.state.held[KEY] == D(1)


# --- spot balance ----------------------------------------------------------------------------------------------

def test_a_sell_beyond_the_free_balance_is_rejected_for_insufficient_balance_and_abandons_its_oco_group() -> None:
    book = feed(holding("1"), submit("TP", Side.SELL, "1", OrderType.LIMIT, limit="110", group="G"))
    assert book.engines[KEY].waiting and book.orders["TP"].status is OrderStatus.SUBMITTED

    out = run(book, submit("SL", Side.SELL, "2", OrderType.STOP, stop="95", group="G"))

    rejected, abandoned = payloads(out)
    assert isinstance(rejected, OrderRejected) and rejected.reason_code == "INSUFFICIENT_BALANCE"
    assert rejected.detail == "sell 2 > free 1 (held 1)"
    assert out.events[0].key is None and out.events[0].event_time is None  # the command's own time, one per cause
    assert isinstance(abandoned, OrderCanceled) and (abandoned.client_order_id, abandoned.reason_code) == (
        "TP", "OCO_LEG_REJECTED")
    assert out.state.orders == {} and not out.state.engines[KEY].waiting
    assert out.state.finished.keys() >= {"TP", "SL"}


def test_open_sells_lock_what_they_would_sell_so_a_second_sell_finds_nothing_free() -> None:
    book = feed(holding("2"), submit("TP", Side.SELL, "2", OrderType.LIMIT, limit="110"))

    out = run(book, submit("S2", Side.SELL, "1"))

    (rejected,) = payloads(out)
    assert rejected.reason_code == "INSUFFICIENT_BALANCE" and rejected.detail == "sell 1 > free 0 (held 2)"


# --- OCO -------------------------------------------------------------------------------------------------------

def test_the_legs_of_an_oco_group_wait_for_each_other_and_arrive_together() -> None:
    book = holding("2")

    first = run(book, submit("TP", Side.SELL, "2", OrderType.LIMIT, limit="110", group="G"))
    second = run(first.state, submit("SL", Side.SELL, "2", OrderType.STOP, stop="95", group="G"))

    assert payloads(first) == [] and "TP" in first.state.engines[KEY].waiting
    assert [(type(p), p.client_order_id, p.ts) for p in payloads(second)] == [
        (OrderAccepted, "TP", close_of(0) + LATENCY), (OrderAccepted, "SL", close_of(0) + LATENCY)]
    assert {c: o.status for c, o in second.state.orders.items()} == {"TP": OrderStatus.ACCEPTED,
                                                                       "SL": OrderStatus.ACCEPTED}


def test_a_stop_triggers_on_a_candle_low_sells_into_its_bid_and_cancels_its_oco_partner() -> None:
    book = feed(holding("2"), submit("TP", Side.SELL, "2", OrderType.LIMIT, limit="110", group="G"),
                submit("SL", Side.SELL, "2", OrderType.STOP, stop="95", group="G"))

    out = run(book, candle(1, "96", high="101", low="94"))

    fill, canceled = payloads(out)
    assert (fill.client_order_id, fill.price, fill.ts) == ("SL", D("95.9904"), close_of(1))  # close 96 - 1 bp
    assert (canceled.client_order_id, canceled.reason_code) == ("TP", "OCO")
    assert out.state.orders == {} and out.state.held[KEY] == D(0)


# --- cancels ---------------------------------------------------------------------------------------------------

def test_a_cancel_of_an_order_the_venue_never_had_says_nothing() -> None:
    book = holding("1")

    out = run(book, CancelOrder(venue="paper", client_order_id="NOPE", symbol=SYMBOL))

    assert out.events == () and out.records == () and out.state is book


def test_a_cancel_of_a_resting_order_cancels_it_at_the_commands_time() -> None:
    book = feed(VenueBook(), candle(0, "100"), submit("L1", Side.BUY, "1", OrderType.LIMIT, limit="90"))

    out = run(book, CancelOrder(venue="paper", client_order_id="L1", symbol=SYMBOL), at=close_of(0) + HOUR / 2)

    (canceled,) = payloads(out)
    assert (canceled.reason_code, canceled.ts) == ("CANCELED", close_of(0) + HOUR / 2)
    assert out.events[0].key == "L1:CANCELED" and out.state.orders == {}


def test_a_second_submit_of_an_order_the_venue_has_is_ignored() -> None:
    book = holding("1")

    out = run(book, submit("ENTRY", Side.BUY, "5"))

    assert out.events == () and out.state is book


# --- market time -----------------------------------------------------------------------------------------------

def test_a_candle_the_engine_applied_already_changes_nothing() -> None:
    book = feed(VenueBook(), candle(0, "100"), candle(1, "101"))

    out = run(book, candle(0, "100"))

    assert out.state is book and out.events == ()


def test_a_decision_leaves_the_book_it_was_given_as_it_was() -> None:
    book = feed(VenueBook(), candle(0, "100"), submit("L1", Side.BUY, "1", OrderType.LIMIT, limit="98"))
    engine_before = book.engines[KEY].to_dict()

    out = run(book, candle(1, "99", high="100", low="97"))

    assert book.engines[KEY].to_dict() == engine_before and book.orders["L1"].filled == 0
    assert out.state.engines[KEY].market_ts == to_ms(close_of(1)) and "L1" not in out.state.orders


def test_an_order_the_venue_is_behind_catches_up_on_the_market_data_passed_in_and_fills_at_its_own_candle() -> None:
    book = feed(VenueBook(), candle(0, "100"))
    order = message(submit("B1", Side.BUY, "1"), at=close_of(2))

    windows = market_needed(book, order)
    out = decide(book, order, PARAMS, T0, (stored(1, "101"), stored(2, "102")))

    assert windows == (MarketWindow("binance", SYMBOL, to_ms(close_of(0)), to_ms(close_of(2)), False),)
    fill = payloads(out)[1]
    assert (fill.price, fill.ts) == (D("102.0102"), close_of(2) + LATENCY)  # nothing live: only candle 2 matters
    assert out.state.engines[KEY].market_ts == to_ms(close_of(2))


def test_an_order_the_venue_is_ahead_of_is_replayed_over_its_own_candle_without_moving_the_venue_clock() -> None:
    book = feed(VenueBook(), *(candle(i, str(100 + i)) for i in range(4)))
    order = message(submit("B1", Side.BUY, "1"), at=close_of(1))

    windows = market_needed(book, order)
    out = decide(book, order, PARAMS, T0, tuple(stored(i, str(100 + i)) for i in range(4)))

    assert windows == (MarketWindow("binance", SYMBOL, 0, to_ms(close_of(1)), False),
                       MarketWindow("binance", SYMBOL, to_ms(close_of(1)), to_ms(close_of(3)), True))
    fill = payloads(out)[1]
    assert (fill.price, fill.ts) == (D("101.0101"), close_of(1) + LATENCY)
    assert out.state.engines[KEY].market_ts == to_ms(close_of(3))


def test_in_lock_step_an_order_at_the_venues_own_time_needs_no_market_data() -> None:
    book = feed(VenueBook(), candle(0, "100"))

    assert market_needed(book, message(submit("B1", Side.BUY, "1"), at=close_of(0))) == ()
