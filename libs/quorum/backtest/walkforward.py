"""Walk-forward evaluation: folds over a time range (rolling or expanding training windows, an embargo gap before
each test window), a backtest per test window, and the out-of-sample test windows joined into one result. The
learning loop scores models with the same machinery: ``config_for_fold`` is where a model trained on the fold's
training window comes in.

Warm-up: a test window's backtest is fed the bars before it (from the fold's training start, or ``warmup`` before
the test start) and then sliced at the test start, rather than started cold at it. The features, the council's
history and the models need bars behind them before their first decision, and the slice keeps the engine
untouched: one code path for backtests and walk-forward, so a fold scores exactly what a backtest of the same
span would have done from the test start on. The score is relative to the equity at the test start (the
portfolio as the system would have held it then, positions included); only bars, trades and closes after it
count. Risk's state carries over too: a drawdown halt tripped during the warm-up still holds in the window, as
it would have live. The cost is the warm-up: a rolling walk runs (train + embargo + test) / test times the bars
of a plain backtest over the test windows; ``warmup`` bounds it.

Pure: candles in, results out; no clock, no I/O.
"""

from __future__ import annotations

import bisect
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any

from quorum.backtest.config import RunnerConfig
from quorum.backtest.engine import BacktestResult, EquityPoint, backtest
from quorum.backtest.metrics import metrics_of
from quorum.events.market_data import CandleClosed

ZERO = timedelta(0)


class WindowMode(StrEnum):
    ROLLING = "rolling"  # the training window keeps its length and moves with the test window
    EXPANDING = "expanding"  # the training window always starts at the range's start and grows


@dataclass(frozen=True)
class Fold:
    """Half-open windows over candle open times: train ``[train_start, train_end)``, then the embargo gap, then
    test ``[test_start, test_end)``."""

    train_start: datetime
    train_end: datetime
    test_start: datetime
    test_end: datetime

    @property
    def embargo(self) -> timedelta:
        return self.test_start - self.train_end

    def as_dict(self) -> dict[str, str]:
        return {k: getattr(self, k).isoformat() for k in ("train_start", "train_end", "test_start", "test_end")}


def folds(start: datetime, end: datetime, *, train: timedelta, test: timedelta, step: timedelta | None = None,
          embargo: timedelta = ZERO, mode: WindowMode | str = WindowMode.ROLLING) -> Iterator[Fold]:
    """Every fold whose test window ends by ``end``. ``step`` (default: ``test``) moves the test window; it may
    not be shorter than ``test``, so test windows never overlap and their concatenation is a plain out-of-sample
    history. ``embargo`` is the purge gap between a training window's end and its test window: bars whose
    labels (future returns) would reach into the test window are not trained on."""
    mode = WindowMode(mode)
    step = test if step is None else step
    if train <= ZERO or test <= ZERO:
        raise ValueError("train and test must be positive durations")
    if step < test:
        raise ValueError(f"step ({step}) must be at least test ({test}): test windows must not overlap")
    if embargo < ZERO:
        raise ValueError("embargo must not be negative")
    k = 0
    while True:
        offset = step * k
        train_start = start if mode is WindowMode.EXPANDING else start + offset
        train_end = start + train + offset
        test_start = train_end + embargo
        test_end = test_start + test
        if test_end > end:
            return
        yield Fold(train_start, train_end, test_start, test_end)
        k += 1


def span(candles: Sequence[CandleClosed]) -> tuple[datetime, datetime]:
    """``[first open, last close)`` of candles in time order: the range their folds can cover."""
    from quorum.times import candle_close

    if not candles:
        raise ValueError("no candles")
    return candles[0].ts, candle_close(candles[-1].ts, candles[-1].timeframe)


# --- one test window ----------------------------------------------------------------------------------------
def score_window(result: BacktestResult, start: datetime) -> BacktestResult:
    """``result`` from ``start`` on, shaped as a backtest that began there: its starting cash is the equity at the
    last bar close at or before ``start`` (the baseline the window's returns are measured from), and the bars,
    trades and closes are those after it. A fill is stamped at or just after the close of the bar that caused it
    (market orders carry the venue's latency), so the baseline bar's fills are those before the next bar's close
    and the window's trades are those from that close on. Decision counts are not kept (they are not per bar)."""
    points = result.equity
    base = bisect.bisect_right([p.ts for p in points], start) - 1  # the last point at or before start
    if base < 0:  # no warm-up bar: the run began in the window
        return BacktestResult(result.config, equity=list(points), trades=list(result.trades),
                              closes={s: list(c) for s, c in result.closes.items()}, bars=len(points))
    baseline, equity = points[base], points[base + 1:]
    first_close = equity[0].ts if equity else None
    trades = [t for t in result.trades if first_close is not None and t.ts >= first_close]
    closes = {s: [(ts, c) for ts, c in found if ts > baseline.ts] for s, found in result.closes.items()}
    return BacktestResult(replace(result.config, starting_cash=baseline.equity), equity=list(equity), trades=trades,
                          closes={s: c for s, c in closes.items() if c}, bars=len(equity))


# --- the whole walk -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FoldResult:
    fold: Fold
    result: BacktestResult  # the test window only (see ``score_window``)
    metrics: Any


@dataclass(frozen=True)
class WalkForwardResult:
    folds: tuple[FoldResult, ...]
    oos: BacktestResult  # every test window joined, each fold's equity chained onto the previous one's end
    metrics: Any  # of ``oos``
    skipped: tuple[Fold, ...] = field(default=())  # folds without a bar in their test window

    def summary(self) -> dict[str, Any]:
        """JSON-ready: the folds with their bars and metrics, and the out-of-sample aggregate."""
        return _jsonable({
            "folds": [{**f.fold.as_dict(), "bars": f.result.bars, "metrics": _as_dict(f.metrics)} for f in self.folds],
            "skipped": [f.as_dict() for f in self.skipped],
            "oos": {"bars": self.oos.bars, "start": self.oos.start, "end": self.oos.end,
                    "metrics": _as_dict(self.metrics)},
        })


def walk_forward(config_for_fold: Callable[[Fold], RunnerConfig], candles: Sequence[CandleClosed],
                 fold_list: Iterator[Fold] | Sequence[Fold], *, warmup: timedelta | None = None,
                 score: Callable[[BacktestResult], Any] | None = None,
                 progress: Callable[[int, int], None] | None = None) -> WalkForwardResult:
    """A backtest per fold over ``candles`` (time order, any symbols: one portfolio), fed from the fold's
    training start (or ``warmup`` before its test start, when given: cheaper for long expanding windows) to its
    test end and scored on the test window only. ``score`` turns a result into metrics (default: ``metrics_of``);
    ``progress(done, total)`` counts the bars fed over every fold."""
    score = score or default_score(candles[0].timeframe if candles else "1h")
    plan = _plan(candles, fold_list, warmup)
    total, done = _fed(plan), 0
    scored: list[FoldResult] = []
    skipped: list[Fold] = []
    for fold, lo, mid, hi in plan:
        if hi <= mid:
            skipped.append(fold)
            continue

        def fed(n: int, before: int = done) -> None:
            if progress is not None:
                progress(before + n, total)

        full = backtest(config_for_fold(fold), candles[lo:hi], progress=fed)
        done += hi - lo
        window = score_window(full, fold.test_start)
        scored.append(FoldResult(fold, window, score(window)))
    if not scored:
        raise ValueError("no fold has a bar in its test window")
    oos = chain([f.result for f in scored])
    return WalkForwardResult(tuple(scored), oos, score(oos), tuple(skipped))


def _plan(candles: Sequence[CandleClosed], fold_list: Iterator[Fold] | Sequence[Fold],
          warmup: timedelta | None) -> list[tuple[Fold, int, int, int]]:
    """Per fold, the candle indexes where its feed starts, its test window starts and ends."""
    opens = [c.ts for c in candles]
    plan = []
    for fold in fold_list:
        feed_from = fold.train_start if warmup is None else fold.test_start - warmup
        lo, mid, hi = (bisect.bisect_left(opens, t) for t in (feed_from, fold.test_start, fold.test_end))
        plan.append((fold, lo, mid, hi))
    return plan


def _fed(plan: Sequence[tuple[Fold, int, int, int]]) -> int:
    return sum(hi - lo for _, lo, mid, hi in plan if hi > mid)


def bars_to_feed(candles: Sequence[CandleClosed], fold_list: Sequence[Fold], warmup: timedelta | None = None) -> int:
    """How many bars ``walk_forward`` will feed over ``fold_list`` (what its progress counts to)."""
    return _fed(_plan(candles, fold_list, warmup))


def chain(windows: Sequence[BacktestResult]) -> BacktestResult:
    """Test windows in time order as one history that starts with the first window's capital: each window's
    equity scaled to start where the previous one ended, so the joined curve compounds the windows' returns.
    Trades and closes are concatenated as they are (amounts in their own window's scale)."""
    first = windows[0]
    out = BacktestResult(first.config, equity=list(first.equity), trades=list(first.trades),
                         closes={s: list(p) for s, p in first.closes.items()}, bars=first.bars)
    for w in windows[1:]:
        start = w.config.starting_cash
        factor = out.equity[-1].equity / start if out.equity and start else Decimal(1)
        out.equity += [EquityPoint(p.ts, p.equity * factor, p.cash * factor, p.position_value * factor)
                       for p in w.equity]
        out.trades += w.trades
        for s, points in w.closes.items():
            out.closes.setdefault(s, []).extend(points)
        out.bars += w.bars
    return out


def default_score(timeframe: str) -> Callable[[BacktestResult], Any]:
    return lambda result: metrics_of(result, timeframe)


def _as_dict(metrics: Any) -> Any:
    return metrics.as_dict() if hasattr(metrics, "as_dict") else metrics


def _jsonable(value: Any) -> Any:
    """Decimals as exact strings, times in ISO 8601, enums by value: ready for a JSON column."""
    return json.loads(json.dumps(value, default=lambda v: v.isoformat() if isinstance(v, datetime) else str(v)))
