"""The ledger's decisions without infrastructure: arrange a ledger book, feed one message, assert the events and
the new book."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import uuid4

import pytest
from quorum.clock import TestClock
from quorum.domain.ledger import GENESIS_HASH, JournalEntry, Line, UnbalancedTransaction, verify_chain
from quorum.events.base import new_envelope
from quorum.events.fills import OrderFilled
from quorum.events.ledger import EquityMarked, TransactionPosted
from quorum.events.market_data import CandleClosed
from quorum.ledger import (
    EquityPoint,
    JournalTransaction,
    LedgerBook,
    LedgerParams,
    MarkMoved,
    PositionSaved,
    decide,
    open_book,
    post_transaction,
)
from quorum.outcome import Outcome
from quorum.types import Liquidity, Side, TradingMode

D = Decimal
T0 = datetime(2024, 1, 1, tzinfo=UTC)
KEY = b"unit-test-chain-key-0123456789"
PARAMS = LedgerParams(KEY, "USDT", D(10000))
PAPER, LIVE = TradingMode.PAPER, TradingMode.LIVE
SYMBOL = "BTC/USDT"


def fill(n: int, side: Side, qty: str, price: str, fee: str = "0", fee_ccy: str = "USDT",
         mode: TradingMode = PAPER) -> OrderFilled:
    return OrderFilled(fill_id=f"f{n}", venue="paper", mode=mode, client_order_id=f"Q{n}", exchange="binance",
                       symbol=SYMBOL, side=side, quantity=D(qty), price=D(price), fee=D(fee), fee_currency=fee_ccy,
                       liquidity=Liquidity.TAKER, ts=T0 + timedelta(minutes=n))


def candle(i: int, close: str, symbol: str = SYMBOL) -> CandleClosed:
    c = D(close)
    return CandleClosed(exchange="binance", symbol=symbol, timeframe="1h", ts=T0 + timedelta(hours=i), open=c,
                        high=c, low=c, close=c, volume=D(10))


def run(book: LedgerBook, payload: Any) -> Outcome[LedgerBook]:
    env = new_envelope(payload, clock=TestClock(T0), source="test", key=uuid4(), event_time=T0)
    return decide(book, env, PARAMS, T0)


def feed(book: LedgerBook, *payloads: Any) -> LedgerBook:
    for p in payloads:
        book = run(book, p).state
    return book


def opened() -> LedgerBook:
    return open_book(LedgerBook(), PARAMS, T0).state


def journal(*outcomes: Outcome[LedgerBook]) -> list[JournalEntry]:
    txns = [r for o in outcomes for r in o.records if isinstance(r, JournalTransaction)]
    return [JournalEntry(n, str(t.txn_id), t.ts.isoformat(), t.description, t.lines, t.prev_hash, t.hash)
            for n, t in enumerate(txns, 1)]


def of(outcome: Outcome[LedgerBook], cls: type) -> list[Any]:
    return [e.payload for e in outcome.events if isinstance(e.payload, cls)]


# --- the journal -----------------------------------------------------------------------------------------------

def test_opening_the_book_credits_the_starting_cash_from_equity_once() -> None:
    first = open_book(LedgerBook(), PARAMS, T0)
    again = open_book(first.state, PARAMS, T0 + timedelta(days=1))

    (posted,) = of(first, TransactionPosted)
    assert posted.description == "opening balance 10000 USDT" and first.records[0].prev_hash == GENESIS_HASH
    assert first.state.balances == {"paper:cash:USDT": D(10000), "paper:equity:USDT": D(-10000)}
    assert again.state is first.state and again.events == ()


def test_a_fill_posts_a_balanced_transaction_linked_to_the_head_of_the_chain() -> None:
    start = open_book(LedgerBook(), PARAMS, T0)

    out = run(start.state, fill(1, Side.BUY, "0.5", "100", "0.05"))

    (txn,) = [r for r in out.records if isinstance(r, JournalTransaction)]
    assert txn.prev_hash == start.state.last_hash[PAPER] and out.state.last_hash[PAPER] == txn.hash
    assert sum(ln.amount for ln in txn.lines if ln.currency == "USDT") == 0
    assert sum(ln.amount for ln in txn.lines if ln.currency == "BTC") == 0
    assert verify_chain(journal(start, out), key=KEY) == []
    (posted,) = of(out, TransactionPosted)
    assert out.events[0].key == str(txn.txn_id) and out.events[0].event_time == T0 + timedelta(minutes=1)
    assert [(p.account, p.amount) for p in posted.postings] == [(ln.account, ln.amount) for ln in txn.lines]


def test_a_fill_seen_before_is_not_posted_twice() -> None:
    book = feed(opened(), fill(1, Side.BUY, "0.5", "100"))

    out = run(book, fill(1, Side.BUY, "0.5", "100"))

    assert out.state is book and out.events == () and out.records == ()


def test_an_unbalanced_transaction_is_refused() -> None:
    with pytest.raises(UnbalancedTransaction):
        post_transaction(opened(), PAPER, uuid4(), T0, "bad", [Line("paper:cash:USDT", "USDT", D(1))], None,
                         chain_key=KEY)


# --- positions -------------------------------------------------------------------------------------------------

def test_a_buy_opens_a_position_at_its_cost_with_the_quote_fee_kept_apart() -> None:
    out = run(opened(), fill(1, Side.BUY, "0.5", "100", "0.05"))

    holding = out.state.holdings[(PAPER, SYMBOL)]
    assert (holding.position.quantity, holding.position.avg_cost, holding.position.fees_paid) == (
        D("0.5"), D(100), D("0.05"))
    assert holding.mark == D(100)
    assert out.state.balances["paper:cash:USDT"] == D(10000) - D(50) - D("0.05")
    assert PositionSaved(PAPER, SYMBOL, holding, T0 + timedelta(minutes=1)) in out.records


def test_a_fee_in_the_base_asset_reduces_the_quantity_a_buy_holds() -> None:
    out = run(opened(), fill(1, Side.BUY, "0.5", "110", "0.0005", "BTC"))

    pos = out.state.holdings[(PAPER, SYMBOL)].position
    assert (pos.quantity, pos.avg_cost, pos.fees_paid) == (D("0.4995"), D(110), D("0.0005") * D(110))
    assert out.state.balances["paper:asset:BTC"] == D("0.4995")
    assert out.state.balances["paper:cash:USDT"] == D(10000) - D(55)


def test_a_sell_realizes_against_the_average_cost_and_credits_realized_pnl() -> None:
    book = feed(opened(), fill(1, Side.BUY, "1", "100"), fill(2, Side.BUY, "1", "110"))

    out = run(book, fill(3, Side.SELL, "1.5", "120", "0.18"))

    pos = out.state.holdings[(PAPER, SYMBOL)].position
    assert (pos.quantity, pos.avg_cost) == (D("0.5"), D(105))
    assert pos.realized_pnl == D(180) - D("1.5") * D(105)
    assert out.state.balances["paper:realized_pnl:USDT"] == -pos.realized_pnl  # a gain is a credit


# --- equity ----------------------------------------------------------------------------------------------------

def test_a_fill_marks_equity_at_the_fill_price() -> None:
    out = run(opened(), fill(1, Side.BUY, "0.5", "100", "0.05"))

    (marked,) = of(out, EquityMarked)
    assert marked.equity == D(10000) - D("0.05")  # cash after the buy + 0.5 at 100
    assert (marked.peak_equity, marked.drawdown) == (marked.equity, D(0))
    assert out.events[-1].key == f"equity:PAPER:{(T0 + timedelta(minutes=1)).isoformat()}"


def test_a_candle_of_a_held_symbol_marks_equity_at_its_close_with_its_peak_and_drawdown() -> None:
    book = feed(opened(), fill(1, Side.BUY, "1", "100"), candle(0, "120"))

    out = run(book, candle(1, "90"))

    (marked,) = of(out, EquityMarked)
    cash = D(9900)
    assert (marked.equity, marked.peak_equity) == (cash + D(90), cash + D(120))
    assert marked.drawdown == (D(30)) / (cash + D(120))
    assert marked.ts == T0 + timedelta(hours=2) and out.events[0].event_time == marked.ts  # the candle's close
    assert out.records[0] == MarkMoved(SYMBOL, D(90))
    assert out.records[1] == EquityPoint(PAPER, marked.ts, marked.equity, marked.peak_equity, marked.drawdown)
    assert out.state.holdings[(PAPER, SYMBOL)].mark == D(90) and out.state.peaks[PAPER] == cash + D(120)


def test_a_candle_of_a_symbol_nobody_holds_changes_nothing() -> None:
    book = feed(opened(), fill(1, Side.BUY, "1", "100"), fill(2, Side.SELL, "1", "100"))

    for c in (candle(0, "120"), candle(0, "5", symbol="ETH/USDT")):
        out = run(book, c)
        assert out.state is book and out.events == ()


def test_paper_and_live_books_never_mix_and_a_candle_marks_each_holder() -> None:
    live = open_book(LedgerBook(), LedgerParams(KEY), T0).state  # the live chain starts empty
    book = feed(live, fill(1, Side.BUY, "1", "100"), fill(2, Side.BUY, "2", "100", mode=LIVE))

    out = run(book, candle(0, "110"))

    assert out.state.balances["live:asset:BTC"] == D(2) and out.state.balances["paper:asset:BTC"] == D(1)
    assert out.state.last_hash.keys() == {PAPER, LIVE}
    assert [(m.mode, m.equity) for m in of(out, EquityMarked)] == [
        (LIVE, D(-200) + D(220)), (PAPER, D(9900) + D(110))]
