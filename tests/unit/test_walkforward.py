"""Walk-forward: fold boundaries (embargo gap, no overlap, rolling vs expanding), a test window scored from the
equity at its start, the windows chained into one out-of-sample history, and a whole walk over real candles."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from quorum.backtest.config import RunnerConfig
from quorum.backtest.engine import BacktestResult, EquityPoint, Trade, backtest
from quorum.backtest.metrics import metrics_of
from quorum.backtest.walkforward import Fold, WindowMode, chain, folds, score_window, span, walk_forward
from quorum.types import Side

from tests.unit.test_runner import SOLO_RSI, stream

T0 = datetime(2024, 1, 1, tzinfo=UTC)
H, D = timedelta(hours=1), timedelta(days=1)


@pytest.fixture(scope="module")
def config() -> RunnerConfig:
    return RunnerConfig.from_env(**SOLO_RSI)


def hours(fold: Fold) -> tuple[int, int, int, int]:
    return tuple(int((t - T0) / H) for t in (fold.train_start, fold.train_end, fold.test_start,
                                             fold.test_end))  # type: ignore[return-value]


# --- folds ------------------------------------------------------------------------------------------------
def test_rolling_folds_keep_the_training_length_and_leave_the_embargo_between_train_and_test() -> None:
    found = list(folds(T0, T0 + 100 * D, train=30 * D, test=10 * D, embargo=2 * D))

    assert len(found) == 6  # the 7th test window would end on day 102
    for f in found:
        assert f.train_end - f.train_start == 30 * D
        assert f.embargo == 2 * D and f.train_end < f.test_start  # the gap: no overlap
        assert f.test_end - f.test_start == 10 * D and f.test_end <= T0 + 100 * D
    assert [f.train_start for f in found] == [T0 + 10 * D * k for k in range(6)]
    assert all(a.test_end == b.test_start for a, b in zip(found, found[1:], strict=False))  # contiguous tests


def test_expanding_folds_start_training_at_the_range_start_and_grow_by_the_step() -> None:
    found = list(folds(T0, T0 + 100 * D, train=30 * D, test=10 * D, embargo=2 * D, mode="expanding"))

    assert {f.train_start for f in found} == {T0}
    assert [f.train_end - f.train_start for f in found] == [(30 + 10 * k) * D for k in range(6)]
    assert [f.test_start for f in found] == [f.test_start for f in folds(
        T0, T0 + 100 * D, train=30 * D, test=10 * D, embargo=2 * D, mode=WindowMode.ROLLING)]


def test_a_longer_step_leaves_gaps_between_test_windows_and_no_candle_is_in_train_and_test() -> None:
    found = list(folds(T0, T0 + 200 * H, train=50 * H, test=20 * H, step=30 * H, embargo=5 * H))
    opens = [T0 + k * H for k in range(200)]

    assert [hours(f) for f in found] == [(0, 50, 55, 75), (30, 80, 85, 105), (60, 110, 115, 135),
                                         (90, 140, 145, 165), (120, 170, 175, 195)]
    for f in found:
        train = {t for t in opens if f.train_start <= t < f.train_end}
        test = {t for t in opens if f.test_start <= t < f.test_end}
        gap = [t for t in opens if f.train_end <= t < f.test_start]
        assert train and test and not train & test and len(gap) == 5


def test_overlapping_test_windows_a_negative_embargo_and_empty_windows_are_refused() -> None:
    with pytest.raises(ValueError, match="overlap"):
        list(folds(T0, T0 + 100 * D, train=30 * D, test=10 * D, step=5 * D))
    with pytest.raises(ValueError, match="embargo"):
        list(folds(T0, T0 + 100 * D, train=30 * D, test=10 * D, embargo=-D))
    with pytest.raises(ValueError, match="positive"):
        list(folds(T0, T0 + 100 * D, train=timedelta(0), test=10 * D))
    assert list(folds(T0, T0 + 20 * D, train=30 * D, test=10 * D)) == []


# --- one window, and the windows joined ---------------------------------------------------------------------
def point(hour: int, equity: str, held: str = "0") -> EquityPoint:
    return EquityPoint(T0 + hour * H, Decimal(equity), Decimal(equity) - Decimal(held), Decimal(held))


def trade(at: datetime, side: Side = Side.BUY) -> Trade:
    return Trade(at, "BTC/USDT", side, Decimal("0.1"), Decimal(100), Decimal("0.01"), "USDT", f"o{at}", "ENTRY",
                 None)


def test_a_window_starts_from_the_equity_at_its_start_with_the_trades_after_the_baseline_bar(
        config: RunnerConfig) -> None:
    full = BacktestResult(config, equity=[point(1, "10000"), point(2, "10100", "500"), point(3, "10200", "600"),
                                          point(4, "10150")],
                          trades=[trade(T0 + H), trade(T0 + 2 * H + timedelta(milliseconds=113)),  # the baseline bar's
                                  trade(T0 + 3 * H), trade(T0 + 4 * H, Side.SELL)],
                          closes={"BTC/USDT": [(T0 + k * H, Decimal(100 + k)) for k in range(1, 5)]}, bars=4)

    window = score_window(full, T0 + 2 * H)  # the test window opens at hour 2: the bar closing at 2 is warm-up

    assert window.config.starting_cash == Decimal("10100") and window.config.config_hash == config.config_hash
    assert [p.ts for p in window.equity] == [T0 + 3 * H, T0 + 4 * H] and window.bars == 2
    assert [t.ts for t in window.trades] == [T0 + 3 * H, T0 + 4 * H]
    assert window.closes == {"BTC/USDT": [(T0 + 3 * H, Decimal(103)), (T0 + 4 * H, Decimal(104))]}
    assert score_window(full, T0).equity == full.equity  # nothing before the start: the whole run is the window


def test_chained_windows_compound_their_returns_from_the_first_windows_capital(config: RunnerConfig) -> None:
    from dataclasses import replace

    first = BacktestResult(replace(config, starting_cash=Decimal(1000)),
                           equity=[point(1, "1050"), point(2, "1100")], bars=2,
                           closes={"BTC/USDT": [(T0 + H, Decimal(1)), (T0 + 2 * H, Decimal(2))]})
    second = BacktestResult(replace(config, starting_cash=Decimal(5000)),  # another fold, another portfolio
                            equity=[point(3, "4750", "4750")], bars=1, trades=[trade(T0 + 3 * H)],
                            closes={"BTC/USDT": [(T0 + 3 * H, Decimal(3))]})

    oos = chain([first, second])

    assert [p.equity for p in oos.equity] == [Decimal(1050), Decimal(1100), Decimal(1045)]  # 1100 * 0.95
    assert oos.equity[-1].position_value == Decimal(1045) and oos.bars == 3 and len(oos.trades) == 1
    assert oos.config.starting_cash == Decimal(1000)
    assert [c for _, c in oos.closes["BTC/USDT"]] == [1, 2, 3]


# --- a walk over real candles -------------------------------------------------------------------------------
def test_a_walk_scores_each_test_window_after_warming_up_on_the_bars_before_it(config: RunnerConfig) -> None:
    candles = stream(700)
    start, end = span(candles)
    plan = list(folds(start, end, train=300 * H, test=100 * H, embargo=10 * H))
    seen: list[tuple[int, int]] = []

    walk = walk_forward(lambda _: config, candles, plan, progress=lambda done, total: seen.append((done, total)))

    assert len(walk.folds) == len(plan) == 3
    tested = [[c for c in candles if f.test_start <= c.ts < f.test_end] for f in plan]
    for f, bars in zip(walk.folds, tested, strict=True):
        assert f.result.bars == len(bars) > 90 and f.result.equity[0].ts == bars[0].ts + H
        assert f.metrics.bars == len(bars) and f.metrics.start == bars[0].ts
    assert walk.oos.bars == walk.metrics.bars == sum(map(len, tested))
    growth = [f.result.equity[-1].equity / f.result.config.starting_cash for f in walk.folds]
    assert float(walk.oos.equity[-1].equity) == pytest.approx(  # compounded across the folds
        float(walk.oos.config.starting_cash * growth[0] * growth[1] * growth[2]))
    assert walk.oos.config.starting_cash == walk.folds[0].result.config.starting_cash
    fed = sum(sum(f.train_start <= c.ts < f.test_end for c in candles) for f in plan)
    assert seen[-1] == (fed, fed)  # each fold fed from its training start to its test end
    summary = walk.summary()
    assert [f["test_start"] for f in summary["folds"]] == [f.test_start.isoformat() for f in plan]
    assert summary["oos"]["metrics"]["bars"] == walk.oos.bars


def test_a_window_scores_what_the_warmed_up_run_did_in_it(config: RunnerConfig) -> None:
    """The same window from a plain backtest of warm-up and test bars: equal trades and returns."""
    candles = stream(500)
    fold = Fold(candles[0].ts, candles[300].ts, candles[300].ts, candles[400].ts)

    walk = walk_forward(lambda _: config, candles, [fold])
    plain = backtest(config, candles[:400])
    tail = [p for p in plain.equity if p.ts > fold.test_start]

    assert [t.order_id for t in walk.folds[0].result.trades] == [t.order_id for t in plain.trades
                                                                 if t.ts >= tail[0].ts]
    assert walk.folds[0].result.equity == tail
    assert walk.metrics.total_return == pytest.approx(float(tail[-1].equity / plain.equity[299].equity - 1))
    assert walk.metrics.total_return == metrics_of(walk.folds[0].result, "1h").total_return
