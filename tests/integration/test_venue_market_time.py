"""The paper venue on market time, with real risk, OMS and matching over NATS and PostgreSQL (issue 12, items 2
and 4): both OCO legs rest and the first to execute cancels the other; an order fills against the candle in force
at its own time (its decision's candle close + latency), whether the venue's candle consumer is ahead of it or
behind it, and its protection trades only on market data after that time."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from quorum.bus.publisher import Publisher
from quorum.clock import LiveClock
from quorum.db.engine import create_engine
from quorum.db.tables import candles, fills, matching_state, order_events, orders, paper_orders, risk_positions
from quorum.events.base import Payload, new_envelope
from quorum.events.market_data import CandleClosed
from quorum.matching import MatchingEngine
from quorum.types import Action, Intent
from sqlalchemy import insert, select

from services.matching.service import MatchingService
from tests.integration.helpers import publish as bus_publish
from tests.integration.helpers import rows
from tests.integration.test_market_data_service import running, until
from tests.integration.test_trading_services import T0, _has, authorize, candle, decision, order_states, publish, stack

pytestmark = pytest.mark.integration

D = Decimal
HOUR = timedelta(hours=1)


def close_of(i: int) -> datetime:
    return T0 + (i + 1) * HOUR


async def send(js: Any, payload: Payload, key: str | None = None) -> None:
    """Publish at the market time of the payload's candle close, as the pipeline does (market data stamps a candle
    with its close, and every event caused by it inherits that time down to the SubmitOrder), under an event id
    keyed by ``key`` (default: the content)."""
    event_time = payload.ts + HOUR  # type: ignore[attr-defined]
    await Publisher(js, "test").publish(new_envelope(payload, clock=LiveClock(), source="test",
                                                     key=repr(payload) if key is None else key,
                                                     event_time=event_time))


async def store(url: str, *cs: CandleClosed) -> None:
    """Store candles as market data does before it publishes them (and the venue reads them back from there)."""
    engine = create_engine(url)
    async with engine.begin() as conn:
        for c in cs:
            await conn.execute(insert(candles).values(
                exchange=c.exchange, symbol=c.symbol, timeframe=c.timeframe, ts=c.ts, open=c.open, high=c.high,
                low=c.low, close=c.close, volume=c.volume, event_id=uuid.uuid4()))
    await engine.dispose()


async def venue_time(url: str) -> datetime | None:
    """The market time the venue's engine has reached (its last applied candle close)."""
    got = await rows(url, select(matching_state.c.state))
    return datetime.fromtimestamp(got[0].state["market_ts"] / 1000, T0.tzinfo) if got else None


async def fills_by_purpose(url: str) -> dict[str, list[tuple[Decimal, Decimal, datetime]]]:
    out: dict[str, list[tuple[Decimal, Decimal, datetime]]] = {}
    for r in await rows(url, select(orders.c.purpose, fills.c.quantity, fills.c.price, fills.c.ts).join(
            orders, orders.c.client_order_id == fills.c.client_order_id).order_by(fills.c.ts)):
        out.setdefault(r.purpose, []).append((r.quantity, r.price, r.ts))
    return out


async def reasons(url: str) -> dict[str, set[str]]:
    """Every reason code an order's transitions carried, by purpose (a refused leg would show one here)."""
    out: dict[str, set[str]] = {}
    for r in await rows(url, select(orders.c.purpose, order_events.c.reason_code).join(
            orders, orders.c.client_order_id == order_events.c.client_order_id)):
        if r.reason_code:
            out.setdefault(r.purpose, set()).add(r.reason_code)
    return out


def arrival(matching: MatchingService, seed: int, coid: str) -> timedelta:
    """The venue's latency for this order: a function of its seed and the order's id alone."""
    return timedelta(milliseconds=MatchingEngine("BTC/USDT", matching.engine_config, seed).latency_of(coid))


async def entry_arrival(url: str, matching: MatchingService) -> timedelta:
    state = (await rows(url, select(matching_state.c.state)))[0].state
    coid = (await rows(url, select(orders.c.client_order_id).where(orders.c.purpose == "ENTRY")))[0][0]
    return arrival(matching, state["seed"], coid)


async def both_legs_rest(url: str) -> None:
    await until("both OCO legs rest", lambda: _has(url, {"STOP_LOSS": "ACCEPTED", "TAKE_PROFIT": "ACCEPTED"}))
    venue = {r.status for r in await rows(url, select(paper_orders.c.status))}
    assert venue == {"FILLED", "ACCEPTED"}  # the entry filled; neither leg refused by the venue
    assert "INSUFFICIENT_BALANCE" not in {code for codes in (await reasons(url)).values() for code in codes}


async def flat(url: str) -> bool:
    pos = (await rows(url, select(risk_positions)))[0]
    return (pos.quantity, pos.pending_client_order_id, pos.reserved_cash) == (0, None, 0)


# --- the take-profit leg works ------------------------------------------------------------------------------------

async def test_price_rising_through_the_target_fills_the_take_profit_and_cancels_the_stop(
        infra: Any, database_url: str, tmp_path: Path) -> None:
    url = database_url
    async with running(*stack(tmp_path)):
        await authorize(infra)
        await publish(infra, url, candle(0, "100"))
        await send(infra, decision(0, Action.BUY, Intent.ENTRY, "100", stop="95", target="110"))
        await both_legs_rest(url)
        await publish(infra, url, candle(1, "108", high="111", low="99"))  # through the target only
        await until("the group resolves", lambda: _has(url, {"TAKE_PROFIT": "FILLED", "STOP_LOSS": "CANCELED"}))
        await until("risk is flat", lambda: flat(url))

    states, got = await order_states(url), await fills_by_purpose(url)
    assert states["ENTRY"] == ("BUY", "FILLED", D(20))  # 10000 x 1% / (100 - 95)
    assert states["TAKE_PROFIT"] == ("SELL", "FILLED", D(20))
    assert got["TAKE_PROFIT"] == [(D(20), D(110), close_of(1))]  # a maker fill at its limit, from candle 1
    assert "STOP_LOSS" not in got and (await reasons(url))["STOP_LOSS"] >= {"OCO"}


async def test_price_falling_through_the_stop_fills_the_stop_loss_and_cancels_the_take_profit(
        infra: Any, database_url: str, tmp_path: Path) -> None:
    url = database_url
    async with running(*stack(tmp_path)):
        await authorize(infra)
        await publish(infra, url, candle(0, "100"))
        await send(infra, decision(0, Action.BUY, Intent.ENTRY, "100", stop="95", target="110"))
        await both_legs_rest(url)
        await publish(infra, url, candle(1, "96", high="101", low="94"))  # through the stop only
        await until("the group resolves", lambda: _has(url, {"STOP_LOSS": "FILLED", "TAKE_PROFIT": "CANCELED"}))
        await until("risk is flat", lambda: flat(url))

    states, got = await order_states(url), await fills_by_purpose(url)
    assert states["STOP_LOSS"] == ("SELL", "FILLED", D(20))
    assert got["STOP_LOSS"] == [(D(20), D("95.9904"), close_of(1))]  # into candle 1's synthetic bid (-1 bp)
    assert "TAKE_PROFIT" not in got and (await reasons(url))["TAKE_PROFIT"] >= {"OCO"}


# --- fills belong to the order's own market time ---------------------------------------------------------------

# Every close distinct, so a fill's price names the candle it came from; candle 6 dips through the stop (97).
PRICES = {i: str(100 + i) for i in range(11)} | {6: "96"}


async def test_an_order_the_venue_is_ahead_of_fills_at_its_own_candle_and_its_stop_on_a_later_one(
        infra: Any, database_url: str, tmp_path: Path) -> None:
    url = database_url
    risk, oms, matching = stack(tmp_path)
    async with running(risk, oms, matching):
        await authorize(infra)
        await publish(infra, url, *(candle(i, p, low="96" if i == 6 else None) for i, p in PRICES.items()))
        await until("the venue has applied candle 10", lambda: _reached(url, close_of(10)))
        await send(infra, decision(2, Action.BUY, Intent.ENTRY, "102", stop="97", target="115"))
        await until("the stop fills from candle 6", lambda: _has(url, {"STOP_LOSS": "FILLED",
                                                                       "TAKE_PROFIT": "CANCELED"}))
        latency = await entry_arrival(url, matching)

    got = await fills_by_purpose(url)
    # candle 2's synthetic ask (102 + 1 bp) at candle 2's close + latency, not candle 10's book or time
    assert got["ENTRY"] == [(D(20), D("102.0102"), close_of(2) + latency)]
    assert got["STOP_LOSS"] == [(D(20), D("95.9904"), close_of(6))]  # the first stored candle after it to cross
    assert "TAKE_PROFIT" not in got
    assert await venue_time(url) == close_of(10)  # the replay did not move the venue's clock


async def test_an_order_the_venue_is_behind_fills_at_its_own_candle_from_the_stored_market_data(
        infra: Any, database_url: str, tmp_path: Path) -> None:
    url = database_url
    risk, oms, matching = stack(tmp_path)
    later = [candle(i, str(100 + i), low="90" if i == 3 else None) for i in range(1, 6)]  # 3 dips through the stop
    async with running(risk, oms, matching):
        await authorize(infra)
        await publish(infra, url, candle(0, "100"))
        await until("the venue has applied candle 0", lambda: _reached(url, close_of(0)))
        await store(url, *later)  # stored by market data; the venue's consumer has not seen them yet
        await send(infra, decision(5, Action.BUY, Intent.ENTRY, "105", stop="100", target="115"))
        await both_legs_rest(url)
        latency = await entry_arrival(url, matching)
        # The consumer now delivers candles 1..5: applied already by the catch-up, and older than the stop, which
        # must not fire on candle 3's dip. Candle 6 then rises through the target.
        await bus_publish(infra, *later)
        await publish(infra, url, candle(6, "112", high="116"))
        await until("the take-profit fills", lambda: _has(url, {"TAKE_PROFIT": "FILLED", "STOP_LOSS": "CANCELED"}))

    got = await fills_by_purpose(url)
    assert got["ENTRY"] == [(D(20), D("105.0105"), close_of(5) + latency)]  # candle 5's ask, at its close + latency
    assert got["TAKE_PROFIT"] == [(D(20), D(115), close_of(6))]
    assert "STOP_LOSS" not in got
    assert await venue_time(url) == close_of(6)


async def _reached(url: str, ts: datetime) -> bool:
    return await venue_time(url) == ts


# --- a partial exit leaves nothing bare ---------------------------------------------------------------------------

async def test_a_partial_take_profit_protects_what_is_still_held_with_a_new_oco_group(
        infra: Any, database_url: str, tmp_path: Path) -> None:
    url = database_url
    async with running(*stack(tmp_path)):
        await authorize(infra)
        await publish(infra, url, candle(0, "100"))
        await send(infra, decision(0, Action.BUY, Intent.ENTRY, "100", stop="95", target="110"))
        await both_legs_rest(url)
        await publish(infra, url, candle(1, "105", high="106", low="104"))  # crosses neither leg
        await send(infra, decision(1, Action.SELL, Intent.TAKE_PROFIT, "105", fraction="0.5"))
        await until("the remainder is protected again", lambda: _legs(url, "REDUCE", "ACCEPTED"))
        await publish(infra, url, candle(2, "96", high="101", low="94"))  # through the stop
        await until("the new stop sells the rest", lambda: _legs(url, "REDUCE", "FILLED"))
        await until("risk is flat", lambda: flat(url))

    by_id = {r.client_order_id: r for r in await rows(url, select(orders))}
    reduce_ = next(o for o in by_id.values() if o.purpose == "REDUCE")
    first = [o for o in by_id.values() if o.parent_client_order_id not in (None, reduce_.client_order_id)]
    again = [o for o in by_id.values() if o.parent_client_order_id == reduce_.client_order_id]
    assert reduce_.status == "FILLED" and 0 < reduce_.filled_quantity < D(20)
    assert {(o.purpose, o.status) for o in first} == {("STOP_LOSS", "CANCELED"), ("TAKE_PROFIT", "CANCELED")}
    assert {(o.purpose, o.status) for o in again} == {("STOP_LOSS", "FILLED"), ("TAKE_PROFIT", "CANCELED")}
    assert all(o.quantity == D(20) - reduce_.filled_quantity for o in again)  # exactly what was still held
    assert {o.oco_group for o in again} == {reduce_.client_order_id}


async def _legs(url: str, parent_purpose: str, stop_status: str) -> bool:
    """The stop-loss placed after an order of ``parent_purpose`` filled has reached ``stop_status``."""
    by_id = {r.client_order_id: r for r in await rows(url, select(orders))}
    parents = {c for c, o in by_id.items() if o.purpose == parent_purpose and o.status == "FILLED"}
    return any(o.parent_client_order_id in parents and o.purpose == "STOP_LOSS" and o.status == stop_status
               for o in by_id.values())
