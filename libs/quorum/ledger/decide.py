"""The ledger's behaviour as pure decisions over a ``LedgerBook``: every fill posted as one balanced journal
transaction linked into its mode's keyed hash chain, with balances and the position (average cost, realized PnL,
fees) following; the paper book's opening balance; equity (quote cash + holdings at their marks) marked with its
peak and drawdown at every fill and on every candle of a held symbol.

Records: the journal transactions with their lines, the positions and marks that changed and the equity points;
the store writes them (balances as the lines' deltas, so a book loaded as a slice is never written back whole).
A decision reads from the book only the position of the fill's symbol, the holdings of the marked mode, the quote
cash balance, the chain's head, the equity peak and whether the transaction was posted before.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

from quorum.domain.ledger import (
    Line,
    ParsedFill,
    check_balanced,
    fill_lines,
    opening_balance,
    position_effect,
    txn_hash,
)
from quorum.events.base import Envelope
from quorum.events.fills import OrderFilled
from quorum.events.ledger import EquityMarked, Posting, TransactionPosted
from quorum.events.market_data import CandleClosed
from quorum.ids import stable_uuid
from quorum.ledger.book import ZERO, Holding, LedgerBook, LedgerParams
from quorum.outcome import Emit, Outcome
from quorum.types import Side, TradingMode, split_symbol, timeframe_seconds


@dataclass(frozen=True)
class JournalTransaction:
    """One appended journal transaction (``ledger_transactions`` + its ``ledger_entries``, in posting order)."""

    txn_id: UUID
    mode: TradingMode
    ts: datetime
    description: str
    source_event_id: UUID | None
    prev_hash: str
    hash: str
    lines: tuple[Line, ...]


@dataclass(frozen=True)
class PositionSaved:
    """A position after a fill, marked at the fill's price (``positions``)."""

    mode: TradingMode
    symbol: str
    holding: Holding
    ts: datetime


@dataclass(frozen=True)
class MarkMoved:
    """Every non-flat position of ``symbol`` (whatever the mode) is now marked at ``price``."""

    symbol: str
    price: Decimal


@dataclass(frozen=True)
class EquityPoint:
    mode: TradingMode
    ts: datetime
    equity: Decimal
    peak: Decimal
    drawdown: Decimal


def decide(book: LedgerBook, message: Envelope[Any], params: LedgerParams, now: datetime) -> Outcome[LedgerBook]:
    p = message.payload
    if isinstance(p, OrderFilled):
        return on_fill(book, p, message.event_id, params)
    if isinstance(p, CandleClosed):
        return on_candle(book, p, params)
    return Outcome(book)


def opening_txn_id(mode: TradingMode) -> UUID:
    return stable_uuid("opening-balance", mode.value)


def fill_txn_id(fill_id: str) -> UUID:
    return stable_uuid("fill", fill_id)


def open_book(book: LedgerBook, params: LedgerParams, now: datetime) -> Outcome[LedgerBook]:
    """Open the paper book once: the starting cash credited from equity."""
    mode, ccy, amount = TradingMode.PAPER, params.quote_currency, params.starting_cash
    return post_transaction(book, mode, opening_txn_id(mode), now, f"opening balance {amount} {ccy}",
                            opening_balance(mode, ccy, amount), None, chain_key=params.chain_key)


def post_transaction(book: LedgerBook, mode: TradingMode, txn_id: UUID, ts: datetime, description: str,
                     lines: Iterable[Line], source_event_id: UUID | None, *, chain_key: bytes) -> Outcome[LedgerBook]:
    """Append one transaction to ``mode``'s chain; nothing when it was posted before (idempotent by txn id)."""
    lines = tuple(lines)
    check_balanced(lines)
    if txn_id in book.posted:
        return Outcome(book)
    prev = book.head(mode)
    digest = txn_hash(prev, str(txn_id), ts.isoformat(), description, lines, key=chain_key)
    balances = dict(book.balances)
    for ln in lines:
        balances[ln.account] = balances.get(ln.account, ZERO) + ln.amount
    posted = TransactionPosted(
        txn_id=txn_id, mode=mode, ts=ts, description=description,
        postings=tuple(Posting(account=ln.account, currency=ln.currency, amount=ln.amount) for ln in lines))
    book = replace(book, balances=balances, last_hash={**book.last_hash, mode: digest},
                   posted={**book.posted, txn_id: digest})
    record = JournalTransaction(txn_id, mode, ts, description, source_event_id, prev, digest, lines)
    return Outcome(book, (Emit(posted, key=str(txn_id), event_time=ts),), (record,))


def on_fill(book: LedgerBook, f: OrderFilled, event_id: UUID | None, params: LedgerParams) -> Outcome[LedgerBook]:
    base, quote = split_symbol(f.symbol)
    pos = book.holding(f.mode, f.symbol).position
    effect = position_effect(ParsedFill(base, quote, f.side, f.quantity, f.quantity * f.price, f.fee,
                                        f.fee_currency, ZERO))
    realized = pos.realized_by(effect[1], effect[2]) if f.side is Side.SELL else ZERO
    lines = fill_lines(f.mode, f.symbol, f.side, f.quantity, f.price, f.fee, f.fee_currency, realized)
    desc = f"{f.side.value} {f.quantity} {f.symbol} @ {f.price} ({f.client_order_id})"
    txn_id = fill_txn_id(f.fill_id)
    posted = post_transaction(book, f.mode, txn_id, f.ts, desc, lines, event_id, chain_key=params.chain_key)
    if txn_id in book.posted:
        return posted  # a fill seen before: its position change is in the book already
    holding = Holding(pos.apply(*effect), f.price)
    book = replace(posted.state, holdings={**posted.state.holdings, (f.mode, f.symbol): holding})
    moved = Outcome(book, posted.events, posted.records + (PositionSaved(f.mode, f.symbol, holding, f.ts),))
    return moved.then(mark_equity(book, f.mode, f.ts, params))


def on_candle(book: LedgerBook, c: CandleClosed, params: LedgerParams) -> Outcome[LedgerBook]:
    """Mark every book holding this symbol at the candle's close."""
    held = [m for m in sorted(TradingMode) if book.holding(m, c.symbol).position.quantity != 0]
    if not held:
        return Outcome(book)
    holdings = dict(book.holdings)
    for mode in held:
        holdings[(mode, c.symbol)] = replace(holdings[(mode, c.symbol)], mark=c.close)
    close_ts = c.ts + timedelta(seconds=timeframe_seconds(c.timeframe))
    out = Outcome(replace(book, holdings=holdings), (), (MarkMoved(c.symbol, c.close),))
    for mode in held:
        out = out.then(mark_equity(out.state, mode, close_ts, params))
    return out


def mark_equity(book: LedgerBook, mode: TradingMode, ts: datetime, params: LedgerParams) -> Outcome[LedgerBook]:
    """Equity = quote cash + holdings at their mark; peak and drawdown follow."""
    held = sum((h.position.quantity * h.mark for (m, _), h in book.holdings.items()
                if m == mode and h.mark is not None), ZERO)
    value = book.cash(mode, params.quote_currency) + held
    prev_peak = book.peaks.get(mode)
    peak = max(value, prev_peak or value)
    drawdown = (peak - value) / peak if peak else Decimal(0)
    marked = EquityMarked(mode=mode, ts=ts, equity=value, peak_equity=peak, drawdown=drawdown)
    book = replace(book, peaks={**book.peaks, mode: peak if prev_peak is None else max(prev_peak, peak)})
    return Outcome(book, (Emit(marked, key=f"equity:{mode.value}:{ts.isoformat()}", event_time=ts),),
                   (EquityPoint(mode, ts, value, peak, drawdown),))
