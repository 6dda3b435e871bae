"""A backtest: the runner over market data, with what a report needs recorded bar by bar — the equity curve
(cash, holdings at the bar's close, drawdown), every fill with its fee and slippage, and each symbol's closes
for buy-and-hold over the same period."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from quorum.backtest.config import RunnerConfig
from quorum.backtest.runner import Runner
from quorum.events.fills import OrderFilled
from quorum.events.market_data import CandleClosed
from quorum.events.orders import OrderIntentApproved, SubmitOrder
from quorum.events.signals import DecisionMade
from quorum.ledger.book import LedgerBook
from quorum.times import candle_close
from quorum.types import Action, Side, split_symbol

ZERO = Decimal(0)


@dataclass(frozen=True)
class EquityPoint:
    ts: datetime  # the bar's close
    equity: Decimal
    cash: Decimal
    position_value: Decimal


@dataclass(frozen=True)
class Trade:
    """One fill, with the price the order was meant to get: a decision's reference close, a stop's trigger or a
    limit's price. ``slippage`` is what the difference cost (positive: paid)."""

    ts: datetime
    symbol: str
    side: Side
    quantity: Decimal
    price: Decimal
    fee: Decimal
    fee_currency: str
    order_id: str
    purpose: str
    reference_price: Decimal | None

    @property
    def slippage(self) -> Decimal:
        if self.reference_price is None:
            return ZERO
        sign = 1 if self.side is Side.BUY else -1
        return sign * (self.price - self.reference_price) * self.quantity

    @property
    def notional(self) -> Decimal:
        return self.price * self.quantity


@dataclass
class BacktestResult:
    config: RunnerConfig
    equity: list[EquityPoint] = field(default_factory=list)
    trades: list[Trade] = field(default_factory=list)
    closes: dict[str, list[tuple[datetime, Decimal]]] = field(default_factory=dict)  # per symbol, per bar
    decisions: dict[str, int] = field(default_factory=dict)  # per action
    bars: int = 0

    @property
    def start(self) -> datetime | None:
        return self.equity[0].ts if self.equity else None

    @property
    def end(self) -> datetime | None:
        return self.equity[-1].ts if self.equity else None


def cash_of(book: LedgerBook, config: RunnerConfig) -> Decimal:
    return book.balances.get(f"{config.mode.value.lower()}:cash:{config.quote_currency}", ZERO)


def held_of(book: LedgerBook, config: RunnerConfig) -> dict[str, Decimal]:
    return {symbol: h.position.quantity for (mode, symbol), h in book.holdings.items()
            if mode is config.mode and h.position.quantity}


def backtest(config: RunnerConfig, market: Iterable[CandleClosed], *,
             progress: Callable[[int], None] | None = None) -> BacktestResult:
    """Run ``market`` (candles in time order, any number of symbols) and record the equity at every bar close."""
    runner = Runner(config)
    result = BacktestResult(config)
    marks: dict[str, Decimal] = {}
    purposes: dict[str, tuple[str, Decimal | None]] = {}  # client order id -> (purpose, reference price)
    references: dict[Any, Decimal] = {}  # decision id -> the close it was sized at
    for n, candle in enumerate(market, 1):
        recorder = runner.run((candle,))
        marks[candle.symbol] = candle.close
        result.closes.setdefault(candle.symbol, []).append((candle_close(candle.ts, candle.timeframe), candle.close))
        for env in recorder.envelopes:
            p = env.payload
            if isinstance(p, DecisionMade):
                result.decisions[p.action.value] = result.decisions.get(p.action.value, 0) + 1
            elif isinstance(p, OrderIntentApproved):
                references[p.decision_id] = p.reference_price
            elif isinstance(p, SubmitOrder):
                order = runner.oms_book.orders.get(p.client_order_id)
                ref = p.stop_price or p.limit_price
                if ref is None and order is not None and order.decision_id is not None:
                    ref = references.get(order.decision_id)
                purposes[p.client_order_id] = (order.purpose if order is not None else "", ref)
            elif isinstance(p, OrderFilled):
                purpose, ref = purposes.get(p.client_order_id, ("", None))
                result.trades.append(Trade(p.ts, p.symbol, p.side, p.quantity, p.price, p.fee, p.fee_currency,
                                           p.client_order_id, purpose, ref))
        cash = cash_of(runner.ledger_book, config)
        value = sum((q * marks.get(s, ZERO) for s, q in held_of(runner.ledger_book, config).items()), ZERO)
        result.equity.append(EquityPoint(candle_close(candle.ts, candle.timeframe), cash + value, cash, value))
        result.bars = n
        if progress is not None:
            progress(n)
    return result


def fees_in_quote(trade: Trade) -> Decimal:
    base, _ = split_symbol(trade.symbol)
    return trade.fee * trade.price if trade.fee_currency == base else trade.fee


def is_buy(action: str) -> bool:
    return action == Action.BUY.value
