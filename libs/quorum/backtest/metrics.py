"""How a backtest did, beside buy-and-hold over the same bars (pure: numbers from a ``BacktestResult``).

The equity series is the starting capital at the first bar's open followed by the equity at every bar close, so
its returns are one per bar: Sharpe and Sortino annualise them with the bars in a year of the timeframe (365 days;
8760 for 1h) and a risk-free rate of 0. A round trip is a closed campaign: one symbol's position from zero back to
zero, its profit net of every fee. Buy-and-hold puts equal parts of the starting cash in each symbol of the run at
its first close and sells at its last, paying the venue's taker fee each way, and is measured the same way.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from decimal import Decimal
from typing import Any

import numpy as np

from quorum.backtest.engine import BacktestResult, EquityPoint, Trade, fees_in_quote
from quorum.domain.position import fill_effect
from quorum.times import timeframe_step
from quorum.types import Side, split_symbol, timeframe_seconds

ZERO = Decimal(0)
YEAR_S = 365 * 86400
BUY_AND_HOLD = "BUY_AND_HOLD"


def periods_per_year(timeframe: str) -> float:
    """Bars of ``timeframe`` in a 365-day year: 8760 for 1h, 365 for 1d."""
    return YEAR_S / timeframe_seconds(timeframe)


def bar_curve(points: Sequence[EquityPoint]) -> list[EquityPoint]:
    """One point per bar close: candles of several symbols closing together leave a point each, and the last of
    them has every symbol marked at that close."""
    out: list[EquityPoint] = []
    for p in points:
        if out and out[-1].ts == p.ts:
            out[-1] = p
        else:
            out.append(p)
    return out


def drawdown_series(values: np.ndarray) -> np.ndarray:
    """The fall from the running peak, as a fraction of the peak (0 at a new high)."""
    return 1.0 - values / np.maximum.accumulate(values)


@dataclass(frozen=True)
class RoundTrip:
    symbol: str
    opened: datetime
    closed: datetime
    fills: int
    cost: Decimal  # quote paid for the buys, fees included
    pnl: Decimal  # quote received less quote paid: net of every fee

    @property
    def ret(self) -> float:
        return float(self.pnl / self.cost) if self.cost else 0.0


@dataclass
class _Campaign:
    opened: datetime
    fills: int = 0
    held: Decimal = ZERO
    cost: Decimal = ZERO
    pnl: Decimal = ZERO


def round_trips(trades: Sequence[Trade]) -> tuple[list[RoundTrip], int]:
    """The closed campaigns, in the order they closed, and how many were still open at the end. Fills are folded
    through the one position calculation, so a fee in the base asset counts as the services count it."""
    open_: dict[str, _Campaign] = {}
    closed: list[RoundTrip] = []
    for t in trades:
        base, _ = split_symbol(t.symbol)
        effect = fill_effect(t.side, t.quantity, t.notional, t.fee, t.fee_currency, base)
        c = open_.get(t.symbol)
        if c is None:
            if t.side is not Side.BUY:
                continue  # spot is long-only: a sell with nothing held opens nothing
            c = open_[t.symbol] = _Campaign(t.ts)
        c.fills += 1
        c.held += effect.base
        c.pnl += effect.quote
        if effect.quote < 0:
            c.cost -= effect.quote
        if c.held <= 0:
            closed.append(RoundTrip(t.symbol, c.opened, t.ts, c.fills, c.cost, c.pnl))
            del open_[t.symbol]
    return closed, len(open_)


def buy_and_hold(result: BacktestResult, fee: Decimal) -> tuple[list[EquityPoint], list[Trade]]:
    """Equal parts of the starting cash in every symbol of the run, each bought at its first close and sold at its
    last, paying ``fee`` of the notional each way (in the quote); marked at every bar close."""
    if not result.closes:
        return [], []
    symbols = sorted(result.closes)
    share = result.config.starting_cash / len(symbols)
    first = {s: result.closes[s][0][0] for s in symbols}
    last = {s: result.closes[s][-1][0] for s in symbols}
    at: dict[datetime, list[tuple[str, Decimal]]] = {}
    for s in symbols:
        for ts, close in result.closes[s]:
            at.setdefault(ts, []).append((s, close))
    cash = result.config.starting_cash
    held: dict[str, Decimal] = {}
    marks: dict[str, Decimal] = {}
    points: list[EquityPoint] = []
    trades: list[Trade] = []
    for ts in sorted(at):
        for s, close in at[ts]:
            marks[s] = close
            quote = split_symbol(s)[1]
            if ts == first[s] and s not in held:
                q = share / (close * (1 + fee))
                paid = q * close * fee
                cash -= q * close + paid
                held[s] = q
                trades.append(Trade(ts, s, Side.BUY, q, close, paid, quote, f"{BUY_AND_HOLD}:{s}", BUY_AND_HOLD,
                                    close))
            if ts == last[s] and held.get(s):
                q, held[s] = held[s], ZERO
                paid = q * close * fee
                cash += q * close - paid
                trades.append(Trade(ts, s, Side.SELL, q, close, paid, quote, f"{BUY_AND_HOLD}:{s}", BUY_AND_HOLD,
                                    close))
        value = sum((q * marks[s] for s, q in held.items()), ZERO)
        points.append(EquityPoint(ts, cash + value, cash, value))
    return points, trades


@dataclass(frozen=True)
class Metrics:
    """One equity curve's performance; a backtest's carries its buy-and-hold benchmark's beside it."""

    timeframe: str
    start: datetime  # the first bar's open
    end: datetime  # the last bar's close
    bars: int
    periods_per_year: float
    symbols: tuple[str, ...]
    initial_equity: Decimal
    final_equity: Decimal
    total_return: float
    cagr: float | None
    sharpe: float | None
    sortino: float | None
    max_drawdown: float  # fraction of the peak
    max_drawdown_bars: int  # from the peak to the recovery (or to the end, if none)
    max_drawdown_seconds: float
    max_drawdown_peak: datetime | None
    max_drawdown_recovered: bool
    calmar: float | None
    fills: int
    round_trips: int  # closed campaigns: a symbol's position from zero back to zero
    open_round_trips: int
    win_rate: float | None
    avg_win: Decimal | None  # quote, per winning round trip, net of fees
    avg_loss: Decimal | None  # quote (negative), per losing round trip, net of fees
    avg_win_return: float | None  # of the round trip's cost
    avg_loss_return: float | None
    exposure: float  # share of bars that began with a position held
    turnover: float  # traded notional / mean equity
    fees: Decimal  # quote
    slippage: Decimal  # quote, positive: paid
    buy_and_hold: Metrics | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-safe: floats (None where undefined or infinite), Decimals as text, times in ISO 8601."""
        return {f.name: _json(getattr(self, f.name)) for f in fields(self)}


def _json(value: Any) -> Any:
    if isinstance(value, Metrics):
        return value.as_dict()
    if isinstance(value, Decimal):
        return format(value.normalize(), "f")
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, tuple):
        return list(value)
    return value


def _finite(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def _mean(values: Sequence[Decimal]) -> Decimal | None:
    return sum(values, ZERO) / len(values) if values else None


def performance(points: Sequence[EquityPoint], trades: Sequence[Trade], *, initial: Decimal, timeframe: str,
                symbols: Sequence[str], benchmark: Metrics | None = None) -> Metrics:
    """The metrics of one curve (``points``: one per bar close, in time order) that started with ``initial``."""
    if not points:
        raise ValueError("an equity curve without bars has no metrics")
    ppy = periods_per_year(timeframe)
    times = [points[0].ts - timeframe_step(timeframe), *(p.ts for p in points)]
    values = np.array([float(initial), *(float(p.equity) for p in points)])
    held = np.array([False, *(p.position_value != 0 for p in points)])
    with np.errstate(divide="ignore", invalid="ignore"):
        returns = values[1:] / values[:-1] - 1.0
        dd = drawdown_series(values)
    mean = float(returns.mean())
    sd = float(returns.std(ddof=1)) if len(returns) > 1 else 0.0
    downside = float(np.sqrt(np.mean(np.minimum(returns, 0.0) ** 2)))
    sharpe = _finite(mean / sd * math.sqrt(ppy)) if sd > 0 else None
    sortino = _finite(mean / downside * math.sqrt(ppy)) if downside > 0 else None

    final = points[-1].equity
    growth = final / initial
    years = (times[-1] - times[0]).total_seconds() / YEAR_S
    cagr: float | None
    try:
        cagr = -1.0 if growth <= 0 else _finite(math.exp(math.log(float(growth)) / years) - 1.0)
    except OverflowError:
        cagr = None  # a big gain over a few bars: no meaningful yearly rate

    trough = int(np.nanargmax(dd))
    max_dd = float(dd[trough])
    peak_at = recovered_at = trough
    recovered = True
    if max_dd > 0:
        peak = values[:trough + 1].max()
        peak_at = int(np.flatnonzero(values[:trough + 1] >= peak)[-1])
        later = np.flatnonzero(values[trough:] >= peak)
        recovered = bool(later.size)
        recovered_at = trough + int(later[0]) if recovered else len(values) - 1
    calmar = _finite(cagr / max_dd) if cagr is not None and max_dd > 0 else None

    trips, still_open = round_trips(trades)
    wins = [t for t in trips if t.pnl > 0]
    losses = [t for t in trips if t.pnl <= 0]  # one that made nothing counts as a loss
    notional = sum((t.notional for t in trades), ZERO)
    return Metrics(
        timeframe=timeframe, start=times[0], end=times[-1], bars=len(points), periods_per_year=ppy,
        symbols=tuple(symbols), initial_equity=initial, final_equity=final, total_return=float(growth - 1),
        cagr=cagr, sharpe=sharpe, sortino=sortino, max_drawdown=max_dd, max_drawdown_bars=recovered_at - peak_at,
        max_drawdown_seconds=(times[recovered_at] - times[peak_at]).total_seconds(),
        max_drawdown_peak=times[peak_at] if max_dd > 0 else None, max_drawdown_recovered=recovered, calmar=calmar,
        fills=len(trades), round_trips=len(trips), open_round_trips=still_open,
        win_rate=len(wins) / len(trips) if trips else None,
        avg_win=_mean([t.pnl for t in wins]), avg_loss=_mean([t.pnl for t in losses]),
        avg_win_return=float(np.mean([t.ret for t in wins])) if wins else None,
        avg_loss_return=float(np.mean([t.ret for t in losses])) if losses else None,
        exposure=float(held[:-1].mean()), turnover=float(notional) / float(values.mean()),
        fees=sum((fees_in_quote(t) for t in trades), ZERO), slippage=sum((t.slippage for t in trades), ZERO),
        buy_and_hold=benchmark)


def benchmark_of(result: BacktestResult) -> tuple[list[EquityPoint], list[Trade]]:
    """Buy-and-hold of the run's symbols at the venue's taker fee (the fee a market order pays)."""
    return buy_and_hold(result, result.config.venue.engine.fees.taker)


def monthly_returns(points: Sequence[EquityPoint], initial: Decimal, timeframe: str) -> list[tuple[str, float]]:
    """``[("2021-04", r), ...]``: each calendar month's return, from the equity at the last close of the month
    before (the starting capital for the first) to its own last; a bar belongs to the month it opened in."""
    step = timeframe_step(timeframe)
    ends: dict[str, Decimal] = {}
    for p in points:
        ends[f"{p.ts - step:%Y-%m}"] = p.equity
    out: list[tuple[str, float]] = []
    before = initial
    for month, equity in ends.items():
        out.append((month, float(equity / before - 1)))
        before = equity
    return out


def metrics_of(result: BacktestResult, timeframe: str) -> Metrics:
    """A backtest's metrics, with buy-and-hold of its symbols beside them."""
    curve = bar_curve(result.equity)
    symbols = sorted(result.closes)
    initial = result.config.starting_cash
    points, trades = benchmark_of(result)
    benchmark = (performance(points, trades, initial=initial, timeframe=timeframe, symbols=symbols)
                 if points else None)
    return performance(curve, result.trades, initial=initial, timeframe=timeframe, symbols=symbols,
                       benchmark=benchmark)
