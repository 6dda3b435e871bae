"""Paper matching engine: book walk and consumption, time in force, maker fills from trades and candles, fees,
stops, latency, restartable state, cancels and validation."""

from __future__ import annotations

import json
import random
from collections import defaultdict
from decimal import Decimal, localcontext

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from quorum.matching import (
    CancelRejected,
    EngineConfig,
    FeeAsset,
    Fill,
    LatencyKind,
    LatencyModel,
    MatchingEngine,
    Order,
    StatusChange,
    StopTriggered,
    SyntheticBookModel,
    VenueFees,
)
from quorum.types import Liquidity, OrderStatus, OrderType, Side, TimeInForce

D = Decimal
S = OrderStatus
BUY, SELL = Side.BUY, Side.SELL
MKT, LMT, STOP, STOP_LIMIT = OrderType.MARKET, OrderType.LIMIT, OrderType.STOP, OrderType.STOP_LIMIT
GTC, IOC, FOK = TimeInForce.GTC, TimeInForce.IOC, TimeInForce.FOK
BIDS = [(D("99"), D("1")), (D("98"), D("2")), (D("97"), D("3"))]
ASKS = [(D("101"), D("1")), (D("102"), D("2")), (D("103"), D("3"))]
NO_FEES = VenueFees(D(0), D(0))


def engine(**config: object) -> MatchingEngine:
    """No latency unless asked: most tests are about matching, not timing."""
    config.setdefault("latency", LatencyModel.fixed(0))
    return MatchingEngine("BTC/USDT", EngineConfig(**config), seed=1)  # type: ignore[arg-type]


def booked(**config: object) -> MatchingEngine:
    e = engine(**config)
    e.on_book(1_000, BIDS, ASKS)
    return e


def fills(out: list) -> list[Fill]:
    return [o for o in out if isinstance(o, Fill)]


def statuses(out: list) -> list[tuple[str, S, str | None]]:
    return [(o.client_order_id, o.status, o.reason) for o in out if isinstance(o, StatusChange)]


def taken(out: list) -> list[tuple[Decimal, Decimal]]:
    return [(f.quantity, f.price) for f in fills(out)]


def order(coid: str, side: Side, qty: str, type_: OrderType = MKT, limit: str | None = None,
          stop: str | None = None, tif: TimeInForce = GTC) -> Order:
    return Order(coid, side, D(qty), type_, None if limit is None else D(limit), None if stop is None else D(stop), tif)


# --- book walk and liquidity consumption -----------------------------------------------------------------

def test_market_buy_walks_the_asks_one_fill_per_level_at_that_levels_price() -> None:
    out = booked().submit(1_000, order("a", BUY, "2.5"))

    assert taken(out) == [(D("1"), D("101")), (D("1.5"), D("102"))]
    assert [f.fill_id for f in fills(out)] == ["a-1", "a-2"]
    assert [f.is_final for f in fills(out)] == [False, True]
    assert statuses(out) == [("a", S.ACCEPTED, None), ("a", S.FILLED, None)]
    vwap = sum(q * p for q, p in taken(out)) / D("2.5")
    assert vwap == D("101.6")


def test_market_sell_walks_the_bids() -> None:
    assert taken(booked().submit(1_000, order("a", SELL, "1.5"))) == [(D("1"), D("99")), (D("0.5"), D("98"))]


def test_two_market_orders_in_one_snapshot_do_not_both_take_level_one() -> None:
    e = booked()

    first = e.submit(1_000, order("a", BUY, "0.6"))
    second = e.submit(1_010, order("b", BUY, "0.6"))

    assert taken(first) == [(D("0.6"), D("101"))]
    assert taken(second) == [(D("0.4"), D("101")), (D("0.2"), D("102"))]


def test_consumed_liquidity_resets_when_a_new_snapshot_replaces_the_book() -> None:
    e = booked()
    e.submit(1_000, order("a", BUY, "1"))
    e.on_book(1_100, BIDS, ASKS)

    assert taken(e.submit(1_100, order("b", BUY, "1"))) == [(D("1"), D("101"))]


def test_buying_does_not_consume_the_bids() -> None:
    e = booked()
    e.submit(1_000, order("a", BUY, "6"))

    assert taken(e.submit(1_000, order("b", SELL, "1"))) == [(D("1"), D("99"))]


# --- time in force ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("tif", [GTC, IOC])
def test_market_order_never_rests_its_remainder_expires_whatever_the_tif(tif: TimeInForce) -> None:
    e = booked()
    out = e.submit(1_000, order("a", BUY, "10", tif=tif))

    assert sum(q for q, _ in taken(out)) == D("6")
    assert fills(out)[-1].is_final
    assert out[-1] == StatusChange("a", S.EXPIRED, 1_000, D("6"), "INSUFFICIENT_DEPTH")
    assert not e.resting and e.cancel(1_001, "a") == [CancelRejected("a", 1_001, "ALREADY_FINAL")]


def test_fok_market_fills_nothing_and_consumes_nothing_when_depth_is_short() -> None:
    e = booked()

    out = e.submit(1_000, order("a", BUY, "6.1", tif=FOK))

    assert fills(out) == [] and statuses(out)[-1] == ("a", S.EXPIRED, "FOK_UNFILLABLE")
    assert taken(e.submit(1_000, order("b", BUY, "1"))) == [(D("1"), D("101"))]


def test_fok_market_fills_whole_when_depth_suffices() -> None:
    out = booked().submit(1_000, order("a", BUY, "6", tif=FOK))

    assert sum(q for q, _ in taken(out)) == D("6") and statuses(out)[-1] == ("a", S.FILLED, None)


def test_marketable_gtc_limit_takes_up_to_its_price_then_rests_the_rest() -> None:
    e = booked()
    out = e.submit(1_000, order("a", BUY, "5", LMT, "102"))

    assert taken(out) == [(D("1"), D("101")), (D("2"), D("102"))]
    assert not any(f.is_final for f in fills(out))
    assert statuses(out) == [("a", S.ACCEPTED, None), ("a", S.PARTIALLY_FILLED, None)]
    assert e.resting["a"].remaining == D("2")


def test_ioc_limit_remainder_expires() -> None:
    e = booked()
    out = e.submit(1_000, order("a", BUY, "5", LMT, "102", tif=IOC))

    assert taken(out) == [(D("1"), D("101")), (D("2"), D("102"))] and fills(out)[-1].is_final
    assert out[-1] == StatusChange("a", S.EXPIRED, 1_000, D("3"), "IOC_REMAINDER") and not e.resting


@pytest.mark.parametrize(("limit", "filled"), [("102", "0"), ("103", "5")])
def test_fok_limit_is_all_or_nothing_within_its_price(limit: str, filled: str) -> None:
    out = booked().submit(1_000, order("a", BUY, "5", LMT, limit, tif=FOK))

    assert sum((q for q, _ in taken(out)), D(0)) == D(filled)
    assert statuses(out)[-1][1] == (S.FILLED if filled != "0" else S.EXPIRED)


def test_non_marketable_limit_rests_without_fills() -> None:
    e = booked()
    out = e.submit(1_000, order("a", BUY, "1", LMT, "100"))

    assert statuses(out) == [("a", S.ACCEPTED, None)] and "a" in e.resting


def test_a_limit_may_rest_before_any_market_data() -> None:
    e = engine()
    assert statuses(e.submit(0, order("a", BUY, "1", LMT, "100"))) == [("a", S.ACCEPTED, None)]


# --- resting limits fill from trades and candles (maker) -------------------------------------------------

def test_resting_buy_fills_as_maker_at_its_price_from_trades_at_or_below_it_partially() -> None:
    e = booked(fees=NO_FEES)
    e.submit(1_000, order("a", BUY, "1", LMT, "100"))

    above = e.on_trade(1_100, D("100.01"), D("5"), SELL)
    first = e.on_trade(1_200, D("100"), D("0.3"), SELL)
    second = e.on_trade(1_300, D("99.5"), D("2"), SELL)

    assert above == []
    assert fills(first) == [Fill("a", "a-1", BUY, D("0.3"), D("100"), D(0), "USDT", Liquidity.MAKER, 1_200, False)]
    assert statuses(first) == [("a", S.PARTIALLY_FILLED, None)]
    assert taken(second) == [(D("0.7"), D("100"))] and fills(second)[0].is_final
    assert statuses(second) == [("a", S.FILLED, None)] and not e.resting


def test_resting_sell_fills_from_trades_at_or_above_it() -> None:
    e = booked()
    e.submit(1_000, order("a", SELL, "1", LMT, "102"))

    assert e.on_trade(1_100, D("101.99"), D("1"), BUY) == []
    assert taken(e.on_trade(1_200, D("102"), D("1"), BUY)) == [(D("1"), D("102"))]


def test_one_trade_supplies_resting_orders_best_price_first_then_oldest_and_no_more_than_its_quantity() -> None:
    e = booked()
    for coid, limit in [("old", "100"), ("new", "100"), ("best", "100.5")]:
        e.submit(1_000, order(coid, BUY, "1", LMT, limit))

    out = e.on_trade(1_100, D("99"), D("2.5"), SELL)

    assert [(f.client_order_id, f.quantity) for f in fills(out)] == [("best", D("1")), ("old", D("1")),
                                                                       ("new", D("0.5"))]


def test_resting_limit_fills_from_a_candle_up_to_its_volume_share() -> None:
    e = booked(candle_fill_fraction=D("0.1"))
    e.submit(1_000, order("a", BUY, "5", LMT, "100"))
    e.submit(1_000, order("b", SELL, "1", LMT, "110"))

    out = e.on_candle(60_000, D("101"), D("109"), D("99.9"), D("100.5"), D("20"))

    assert [(f.client_order_id, f.quantity, f.price, f.liquidity) for f in fills(out)] == [
        ("a", D("2.0"), D("100"), Liquidity.MAKER)]
    assert statuses(out) == [("a", S.PARTIALLY_FILLED, None)]
    assert taken(e.on_candle(120_000, D("100"), D("110"), D("98"), D("99"), D("100"))) == [
        (D("3"), D("100")), (D("1"), D("110"))]


def test_candle_supply_is_rounded_down_to_the_lot_step() -> None:
    e = booked(lot_step=D("0.01"))
    e.submit(1_000, order("a", BUY, "1", LMT, "100"))

    assert taken(e.on_candle(60_000, D("100"), D("100"), D("99"), D("100"), D("1.2345"))) == [(D("0.12"), D("100"))]


def test_an_order_that_starts_resting_during_a_trade_takes_nothing_from_that_trade() -> None:
    e = booked()
    e.submit(1_000, order("s", BUY, "1", STOP_LIMIT, limit="100", stop="100"))

    out = e.on_trade(1_100, D("100"), D("5"), BUY)

    assert [type(o) for o in out] == [StopTriggered] and "s" in e.resting
    assert taken(e.on_trade(1_200, D("100"), D("5"), SELL)) == [(D("1"), D("100"))]


# --- fees ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("fees", "side", "liquidity", "fee", "currency"), [
    (VenueFees(), BUY, Liquidity.TAKER, "1.004867766", "USDT"),
    (VenueFees(D("0.0002"), D("0.0007")), BUY, Liquidity.MAKER, "0.2009735532", "USDT"),
    (VenueFees(D("0.0002"), D("0.0007")), SELL, Liquidity.TAKER, "0.7034074362", "USDT"),
    (VenueFees(fee_asset=FeeAsset.RECEIVED), BUY, Liquidity.TAKER, "0.00001657", "BTC"),
    (VenueFees(D("0.0002"), fee_asset=FeeAsset.RECEIVED), BUY, Liquidity.MAKER, "0.000003314", "BTC"),
    (VenueFees(fee_asset=FeeAsset.RECEIVED), SELL, Liquidity.MAKER, "1.004867766", "USDT"),
], ids=["taker-quote", "maker-quote", "sell-taker-quote", "buy-received-base", "buy-maker-base", "sell-received"])
def test_fee_is_exact_per_fill_in_quote_or_in_the_received_asset(
        fees: VenueFees, side: Side, liquidity: Liquidity, fee: str, currency: str) -> None:
    assert fees.charge(side, D("0.01657"), D("60643.8"), liquidity, "BTC", "USDT") == (D(fee), currency)


def test_each_fill_is_charged_its_own_maker_or_taker_fee() -> None:
    e = booked(fees=VenueFees(D("0.0002"), D("0.0007")))
    taker = fills(e.submit(1_000, order("a", BUY, "4", LMT, "102")))
    maker = fills(e.on_trade(1_100, D("101"), D("1"), SELL))

    assert [(f.fee, f.liquidity) for f in taker] == [(D("0.0707"), Liquidity.TAKER), (D("0.1428"), Liquidity.TAKER)]
    assert [(f.fee, f.liquidity) for f in maker] == [(D("0.0204"), Liquidity.MAKER)]


def test_venue_fees_come_from_config_with_binance_spot_as_default() -> None:
    config = {"kraken": {"maker": "0.0016", "taker": "0.0026", "fee_asset": "received"}}

    assert VenueFees.for_venue(config, "kraken") == VenueFees(D("0.0016"), D("0.0026"), FeeAsset.RECEIVED)
    assert VenueFees.for_venue(config, "binance") == VenueFees(D("0.001"), D("0.001"), FeeAsset.QUOTE)
    with pytest.raises(ValueError, match="fee rates"):
        VenueFees(D("-0.001"))


# --- stops -----------------------------------------------------------------------------------------------

def test_buy_stop_triggers_when_a_trade_reaches_it_then_takes_the_book() -> None:
    e = booked()
    e.submit(1_000, order("s", BUY, "1.5", STOP, stop="100.5"))

    assert e.on_trade(1_100, D("100.4"), D("1"), BUY) == []
    out = e.on_trade(1_200, D("100.5"), D("1"), BUY)

    assert out[0] == StopTriggered("s", 1_200, D("100.5"))
    assert taken(out) == [(D("1"), D("101")), (D("0.5"), D("102"))] and statuses(out)[-1] == ("s", S.FILLED, None)
    assert {f.liquidity for f in fills(out)} == {Liquidity.TAKER}


def test_sell_stop_triggers_on_a_candle_low_and_sells_into_the_book() -> None:
    e = booked()
    e.submit(1_000, order("s", SELL, "1", STOP, stop="95"))

    assert e.on_candle(60_000, D("99"), D("100"), D("95.01"), D("99"), D("10")) == []
    out = e.on_candle(120_000, D("99"), D("100"), D("94"), D("99"), D("10"))

    assert out[0] == StopTriggered("s", 120_000, D("94")) and taken(out) == [(D("1"), D("99"))]


def test_stop_limit_triggers_then_takes_within_its_limit_and_rests_the_rest() -> None:
    e = booked()
    e.submit(1_000, order("s", BUY, "2", STOP_LIMIT, limit="101", stop="100.8"))

    out = e.on_trade(1_100, D("100.9"), D("0.1"), BUY)

    assert isinstance(out[0], StopTriggered) and taken(out) == [(D("1"), D("101"))]
    assert statuses(out) == [("s", S.PARTIALLY_FILLED, None)] and e.resting["s"].remaining == D("1")


def test_an_armed_stop_can_be_cancelled() -> None:
    e = booked()
    e.submit(1_000, order("s", SELL, "1", STOP, stop="90"))

    assert statuses(e.cancel(1_100, "s")) == [("s", S.CANCELED, None)]
    assert e.on_trade(1_200, D("80"), D("1"), SELL) == []


# --- latency ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("model", [LatencyModel(), LatencyModel(LatencyKind.NORMAL, 20, 90, 30.0, 50.0)],
                         ids=["uniform", "normal-truncated"])
def test_latency_draws_stay_within_bounds_and_repeat_with_the_seed(model: LatencyModel) -> None:
    rng_a, rng_b, rng_c = random.Random(7), random.Random(7), random.Random(8)
    a = [model.draw(rng_a) for _ in range(2_000)]

    assert all(model.low_ms <= ms <= model.high_ms for ms in a)
    assert a == [model.draw(rng_b) for _ in range(2_000)]
    assert a != [model.draw(rng_c) for _ in range(2_000)]
    assert len(set(a)) > 40  # it does spread over the window


def test_fixed_latency_is_constant_and_bad_models_are_refused() -> None:
    assert {LatencyModel.fixed(80).draw(random.Random(s)) for s in range(10)} == {80}
    with pytest.raises(ValueError):
        LatencyModel(low_ms=200, high_ms=50)


def test_engine_latency_is_reproducible_with_the_same_seed_and_differs_with_another() -> None:
    def arrivals(seed: int) -> list[int]:
        e = MatchingEngine("BTC/USDT", EngineConfig(), seed=seed)
        out = [o for i in range(30) for o in e.submit(i * 1_000, order(f"o{i}", BUY, "1", LMT, "1"))]
        accepted = out + e.advance(10**6)
        return [s.ts - i * 1_000 for i, s in enumerate(accepted)]

    assert arrivals(3) == arrivals(3) and arrivals(3) != arrivals(4)
    assert all(50 <= d <= 200 for d in arrivals(3))


def test_order_matches_the_snapshot_in_force_when_it_arrives_after_its_delay() -> None:
    e = engine(latency=LatencyModel.fixed(150))
    e.on_book(1_000, BIDS, [(D("101"), D("1"))])

    assert e.submit(1_000, order("a", BUY, "1")) == []  # on its way
    assert e.on_book(1_100, BIDS, [(D("105"), D("1"))]) == []  # arrives at 1_150: after this snapshot
    out = e.on_book(1_200, BIDS, [(D("110"), D("1"))])  # first event past 1_150: match against the 1_100 book

    assert fills(out)[0].price == D("105") and fills(out)[0].ts == 1_150 and out[0].ts == 1_150


def test_a_snapshot_stamped_exactly_at_arrival_is_the_one_in_force() -> None:
    e = engine(latency=LatencyModel.fixed(100))
    e.on_book(1_000, BIDS, ASKS)
    e.submit(1_000, order("a", SELL, "1"))

    assert taken(e.on_book(1_100, [(D("90"), D("1"))], ASKS)) == [(D("1"), D("90"))]


def test_advance_lets_due_orders_arrive() -> None:
    e = booked(latency=LatencyModel.fixed(100))
    e.submit(1_000, order("a", BUY, "1"))

    assert e.advance(1_099) == []
    assert taken(e.advance(1_100)) == [(D("1"), D("101"))]


# --- cancels and validation ------------------------------------------------------------------------------

def test_cancel_of_a_partially_filled_resting_order_reports_what_was_filled() -> None:
    e = booked()
    e.submit(1_000, order("a", BUY, "2", LMT, "101"))

    assert e.cancel(1_100, "a") == [StatusChange("a", S.CANCELED, 1_100, D("1"))]
    assert e.on_trade(1_200, D("90"), D("5"), SELL) == []


def test_cancel_before_arrival_cancels_the_order_on_its_way() -> None:
    e = booked(latency=LatencyModel.fixed(100))
    e.submit(1_000, order("a", BUY, "1"))

    assert statuses(e.cancel(1_050, "a")) == [("a", S.CANCELED, None)]
    assert e.advance(2_000) == []


@pytest.mark.parametrize(("coid", "reason"), [("nope", "UNKNOWN_ORDER"), ("done", "ALREADY_FINAL"),
                                              ("bad", "ALREADY_FINAL")])
def test_cancel_of_unknown_or_finished_order_is_a_rejection_not_an_exception(coid: str, reason: str) -> None:
    e = booked()
    e.submit(1_000, order("done", BUY, "1"))
    e.submit(1_000, order("bad", BUY, "0"))

    assert e.cancel(1_100, coid) == [CancelRejected(coid, 1_100, reason)]


def test_cancelling_twice_rejects_the_second() -> None:
    e = booked()
    e.submit(1_000, order("a", BUY, "1", LMT, "90"))
    e.cancel(1_100, "a")

    assert e.cancel(1_200, "a") == [CancelRejected("a", 1_200, "ALREADY_FINAL")]


@pytest.mark.parametrize(("bad", "reason"), [
    (order("x", BUY, "0"), "INVALID_QUANTITY"),
    (order("x", BUY, "-1"), "INVALID_QUANTITY"),
    (Order("x", BUY, D("NaN")), "INVALID_QUANTITY"),
    (order("x", BUY, "0.0015"), "LOT_SIZE"),
    (order("x", BUY, "1", LMT), "MISSING_LIMIT_PRICE"),
    (order("x", BUY, "1", STOP), "MISSING_STOP_PRICE"),
    (order("x", BUY, "1", STOP_LIMIT, stop="100"), "MISSING_LIMIT_PRICE"),
    (order("x", BUY, "1", LMT, "0"), "INVALID_PRICE"),
    (order("x", BUY, "1", STOP, stop="-5"), "INVALID_PRICE"),
    (order("dup", BUY, "1"), "DUPLICATE_ORDER"),
])
def test_bad_orders_are_rejected_with_a_reason(bad: Order, reason: str) -> None:
    e = booked(lot_step=D("0.001"))
    e.submit(1_000, order("dup", BUY, "0.001", LMT, "1"))

    assert e.submit(1_000, bad) == [StatusChange("x" if bad.client_order_id == "x" else "dup", S.REJECTED, 1_000,
                                                 D(0), reason)]


def test_market_order_without_any_market_data_is_rejected() -> None:
    assert engine().submit(0, order("a", BUY, "1")) == [StatusChange("a", S.REJECTED, 0, D(0), "NO_MARKET_DATA")]


# --- synthetic book from candles -------------------------------------------------------------------------

def test_candle_synthesizes_a_book_around_the_close_with_the_documented_spread_depth_and_ticks() -> None:
    model = SyntheticBookModel(spread_bps=D("2"), levels=3, level_step_bps=D("5"), level_volume_fraction=D("0.01"))
    e = engine(synthetic_book=model, tick_size=D("0.01"), lot_step=D("0.001"))

    e.on_candle(60_000, D("100"), D("101"), D("99"), D("60000.05"), D("123.4567"))

    # half-spread 1 bp, then +5 bp per level; bids rounded down, asks up to the tick; 1% of volume, lot-rounded
    assert e.book.bids == ((D("59994.04"), D("1.234")), (D("59964.04"), D("1.234")), (D("59934.04"), D("1.234")))
    assert e.book.asks == ((D("60006.06"), D("1.234")), (D("60036.06"), D("1.234")), (D("60066.06"), D("1.234")))
    assert e.book.synthetic


def test_the_synthetic_book_is_replaced_by_each_candle_but_never_replaces_a_snapshot() -> None:
    e = engine()
    e.on_candle(60_000, D("100"), D("100"), D("100"), D("100"), D("10"))
    e.on_candle(120_000, D("200"), D("200"), D("200"), D("200"), D("10"))
    assert e.book.asks[0][0] == D("200.02")

    e.on_book(130_000, BIDS, ASKS)
    e.on_candle(180_000, D("300"), D("300"), D("300"), D("300"), D("10"))
    assert e.book.asks == tuple(ASKS) and not e.book.synthetic


def test_market_order_against_a_synthetic_book_fills_around_the_close() -> None:
    e = engine()
    e.on_candle(60_000, D("100"), D("100"), D("100"), D("100"), D("1000"))

    assert taken(e.submit(60_000, order("a", BUY, "7"))) == [(D("5.000"), D("100.0100")), (D("2"), D("100.0200"))]


def test_a_candles_book_is_the_one_of_its_own_decimal_context_however_late_it_is_read() -> None:
    now, later = engine(), engine()
    for e in (now, later):
        e.on_candle(60_000, D("100"), D("101"), D("99"), D("60000.05"), D("123.4567"))
    built = now.to_dict()["book"]

    with localcontext(prec=4):  # the book is only built here, when first read
        assert later.to_dict()["book"] == built


def test_a_copy_and_its_original_remember_their_own_finished_orders() -> None:
    e = booked()
    e.submit(1_000, order("a", BUY, "0.5"))
    twin = e.copy()

    twin.submit(1_000, order("b", BUY, "0.5"))
    e.submit(1_000, order("c", BUY, "0.5"))

    assert (e.final.keys(), twin.final.keys()) == ({"a", "c"}, {"a", "b"})
    assert e.cancel(2_000, "b") == [CancelRejected("b", 2_000, "UNKNOWN_ORDER")]


# --- restartable state -----------------------------------------------------------------------------------

def restart(e: MatchingEngine) -> MatchingEngine:
    return MatchingEngine.from_dict(json.loads(json.dumps(e.to_dict())), e.config)


def test_resting_limit_survives_a_restart_and_fills_exactly_once_when_the_market_crosses_it() -> None:
    e = booked(latency=LatencyModel())
    e.submit(1_000, order("a", BUY, "1", LMT, "100"))
    e.advance(2_000)
    assert "a" in e.resting

    restarted = restart(e)
    first = restarted.on_trade(3_000, D("99"), D("5"), SELL)

    assert first == e.on_trade(3_000, D("99"), D("5"), SELL)
    assert [(f.fill_id, f.quantity, f.price) for f in fills(first)] == [("a-1", D("1"), D("100"))]
    assert restarted.on_trade(3_100, D("98"), D("5"), SELL) == [] == e.on_trade(3_100, D("98"), D("5"), SELL)
    assert restarted.to_dict() == e.to_dict()


def test_restart_keeps_the_liquidity_already_consumed_in_the_current_snapshot_and_the_rng() -> None:
    e = booked(latency=LatencyModel())
    e.submit(1_000, order("a", BUY, "0.6"))
    e.advance(1_500)
    restarted = restart(e)

    assert restarted.submit(2_000, order("b", BUY, "1")) == e.submit(2_000, order("b", BUY, "1"))
    assert taken(restarted.advance(3_000)) == [(D("0.4"), D("101")), (D("0.6"), D("102"))]


def test_state_of_another_version_is_refused() -> None:
    with pytest.raises(ValueError, match="version"):
        MatchingEngine.from_dict({**engine().to_dict(), "version": 99})


# --- properties over random event sequences --------------------------------------------------------------

qty = st.integers(1, 40).map(lambda n: D(n) / 10)
px = st.integers(90, 110).map(D)
events = st.lists(st.one_of(
    st.tuples(st.just("book"), st.integers(0, 300), px, st.lists(qty, min_size=0, max_size=4)),
    st.tuples(st.just("trade"), st.integers(0, 300), px, qty),
    st.tuples(st.just("candle"), st.integers(0, 300), px, st.integers(0, 5).map(D), st.integers(0, 200).map(D)),
    st.tuples(st.just("submit"), st.integers(0, 300), st.sampled_from(list(Side)), st.sampled_from(list(OrderType)),
              st.sampled_from(list(TimeInForce)), qty, px, px),
    st.tuples(st.just("cancel"), st.integers(0, 300), st.integers(0, 10)),
    st.tuples(st.just("advance"), st.integers(0, 300)),
), min_size=10, max_size=60)


def play(e: MatchingEngine, evs: list[tuple], start: int = 0) -> list:
    """Apply events to ``e``; times are cumulative gaps; order ids are o0, o1, ... in submission order."""
    out: list = []
    ts = e.now
    n = sum(1 for ev in evs[:start] if ev[0] == "submit")
    for ev in evs[start:]:
        kind, ts = ev[0], ts + ev[1]
        if kind == "book":
            mid, qs = ev[2], ev[3]
            out += e.on_book(ts, [(mid - 1 - i, q) for i, q in enumerate(qs)],
                             [(mid + 1 + i, q) for i, q in enumerate(qs)])
        elif kind == "trade":
            out += e.on_trade(ts, ev[2], ev[3], None)
        elif kind == "candle":
            c, r, v = ev[2], ev[3], ev[4]
            out += e.on_candle(ts, c, c + r, c - r, c, v)
        elif kind == "submit":
            side, type_, tif, q, p1, p2 = ev[2:]
            out += e.submit(ts, Order(f"o{n}", side, q, type_, p1, p2, tif))
            n += 1
        elif kind == "cancel":
            out += e.cancel(ts, f"o{ev[2]}")
        else:
            out += e.advance(ts)
    return out


def fresh() -> MatchingEngine:
    return MatchingEngine("BTC/USDT", EngineConfig(latency=LatencyModel(low_ms=0, high_ms=150)), seed=11)


@settings(derandomize=True, max_examples=300, deadline=None)
@given(events)
def test_fills_never_exceed_the_order_and_nothing_happens_after_a_final_status(evs: list[tuple]) -> None:
    e = fresh()
    out = play(e, evs) + e.advance(e.now + 1_000)
    filled: dict[str, Decimal] = defaultdict(Decimal)
    quantity = {f"o{i}": ev[5] for i, ev in enumerate(ev for ev in evs if ev[0] == "submit")}
    done: set[str] = set()
    count: dict[str, int] = defaultdict(int)
    for o in out:
        if isinstance(o, Fill | StatusChange | StopTriggered):
            assert o.client_order_id not in done, o
        if isinstance(o, Fill):
            filled[o.client_order_id] += o.quantity
            assert o.quantity > 0 and filled[o.client_order_id] <= quantity[o.client_order_id]
            count[o.client_order_id] += 1
            assert o.fill_id == f"{o.client_order_id}-{count[o.client_order_id]}"
        elif isinstance(o, StatusChange):
            assert o.filled_quantity == filled[o.client_order_id]
            if o.status == S.FILLED:
                assert filled[o.client_order_id] == quantity[o.client_order_id]
            if o.status.is_terminal:
                done.add(o.client_order_id)


@settings(derandomize=True, max_examples=200, deadline=None)
@given(events, st.integers(0, 60))
def test_state_round_trips_exactly_and_a_restored_engine_continues_identically(evs: list[tuple], cut: int) -> None:
    cut = min(cut, len(evs))
    e = fresh()
    play(e, evs[:cut])
    state = e.to_dict()
    restored = MatchingEngine.from_dict(json.loads(json.dumps(state)), e.config)

    assert restored.to_dict() == state
    assert play(restored, evs, cut) == play(e, evs, cut)
    assert restored.to_dict() == e.to_dict()


# --- OCO ----------------------------------------------------------------------------------------------------------

def _oco_engine() -> MatchingEngine:
    from quorum.matching import EngineConfig, LatencyModel

    engine = MatchingEngine("BTC/USDT", EngineConfig(latency=LatencyModel.fixed(0)))
    engine.on_candle(0, Decimal(100), Decimal(101), Decimal(99), Decimal(100), Decimal(1000))
    for coid, kind, prices in (("sl", OrderType.STOP, {"stop_price": Decimal(95)}),
                               ("tp", OrderType.LIMIT, {"limit_price": Decimal(110)})):
        engine.submit(1, Order(coid, Side.SELL, Decimal(1), kind, oco_group="entry-1", **prices))
    engine.advance(2)
    return engine


def test_an_oco_take_profit_fill_cancels_the_stop_in_the_same_instant() -> None:
    engine = _oco_engine()

    out = engine.on_candle(3, Decimal(100), Decimal(112), Decimal(90), Decimal(105), Decimal(1000))

    fills = [o for o in out if isinstance(o, Fill)]
    assert [(f.client_order_id, f.quantity, f.price) for f in fills] == [("tp", Decimal(1), Decimal(110))]
    assert StatusChange("sl", S.CANCELED, 3, Decimal(0), "OCO") in out
    assert not any(isinstance(o, StopTriggered) for o in out)  # the stop never fires: the group sold once


def test_an_oco_stop_trigger_cancels_the_take_profit() -> None:
    engine = _oco_engine()

    out = engine.on_candle(3, Decimal(100), Decimal(101), Decimal(94), Decimal(95), Decimal(1000))

    assert [o.client_order_id for o in out if isinstance(o, Fill)] and all(
        o.client_order_id == "sl" for o in out if isinstance(o, Fill))
    assert StatusChange("tp", S.CANCELED, 3, Decimal(0), "OCO") in out


def test_the_oco_group_survives_a_restart() -> None:
    from quorum.matching import EngineConfig, LatencyModel

    engine = MatchingEngine.from_dict(_oco_engine().to_dict(), EngineConfig(latency=LatencyModel.fixed(0)))

    out = engine.on_candle(3, Decimal(100), Decimal(112), Decimal(90), Decimal(105), Decimal(1000))

    assert StatusChange("sl", S.CANCELED, 3, Decimal(0), "OCO") in out
