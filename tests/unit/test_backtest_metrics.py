"""Backtest metrics against values computed by hand on small synthetic curves and fills."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from quorum.backtest.config import RunnerConfig
from quorum.backtest.engine import BacktestResult, EquityPoint, Trade
from quorum.backtest.metrics import (
    bar_curve,
    buy_and_hold,
    metrics_of,
    monthly_returns,
    performance,
    periods_per_year,
    round_trips,
)
from quorum.types import Side

D = Decimal
T0 = datetime(2024, 1, 1, tzinfo=UTC)  # the first bar's open
HOUR = timedelta(hours=1)


@pytest.fixture(scope="module")
def config() -> RunnerConfig:
    return replace(RunnerConfig.from_env(), starting_cash=D(100))


def at(n: int) -> datetime:
    """The close of the n-th 1h bar."""
    return T0 + n * HOUR


def curve(*rows: tuple[str, str]) -> list[EquityPoint]:
    """(equity, position value) per bar close, from the first bar's."""
    return [EquityPoint(at(n), D(e), D(e) - D(v), D(v)) for n, (e, v) in enumerate(rows, 1)]


def trade(n: int, symbol: str, side: Side, qty: str, price: str, fee: str, fee_currency: str = "USDT",
          reference: str | None = None) -> Trade:
    return Trade(at(n), symbol, side, D(qty), D(price), D(fee), fee_currency, f"o{n}{symbol}", "ENTRY",
                 None if reference is None else D(reference))


# the brief's curve: 100 at the start, then 110, 99, 121 at the bar closes
CURVE = curve(("110", "100"), ("99", "0"), ("121", "60"))
TRADES = [
    trade(0, "BTC/USDT", Side.BUY, "1", "100", "0.1", reference="99"),  # a loss: -100.1 + 89.91 = -10.19
    trade(1, "BTC/USDT", Side.SELL, "1", "90", "0.09", reference="91"),
    trade(1, "BTC/USDT", Side.BUY, "1", "50", "0.001", fee_currency="BTC"),  # 0.999 BTC held for 50
    trade(3, "BTC/USDT", Side.SELL, "0.999", "60", "0.05994"),  # a win: 59.94 - 0.05994 - 50 = 9.88006
    trade(3, "ETH/USDT", Side.BUY, "2", "10", "0.02"),  # still open at the end
]


def test_periods_per_year_count_bars_in_a_365_day_year() -> None:
    assert (periods_per_year("1h"), periods_per_year("1d"), periods_per_year("5m")) == (8760, 365, 105120)


def test_returns_ratios_and_drawdown_of_a_small_curve_are_the_hand_computed_values() -> None:
    m = performance(CURVE, [], initial=D(100), timeframe="1h", symbols=["BTC/USDT"])
    r = [110 / 100 - 1, 99 / 110 - 1, 121 / 99 - 1]  # 0.1, -0.1, 0.2222
    mean = sum(r) / 3
    sd = math.sqrt(sum((x - mean) ** 2 for x in r) / 2)  # sample standard deviation
    downside = math.sqrt((0.1 ** 2) / 3)  # the root mean square of the returns below 0
    assert m.total_return == pytest.approx(0.21)
    assert m.sharpe == pytest.approx(mean / sd * math.sqrt(8760))
    assert m.sharpe == pytest.approx(42.62, abs=0.01)
    assert m.sortino == pytest.approx(mean / downside * math.sqrt(8760))
    assert (m.start, m.end, m.bars) == (T0, at(3), 3)
    assert m.max_drawdown == pytest.approx(0.1)  # 110 -> 99
    assert (m.max_drawdown_bars, m.max_drawdown_seconds) == (2, 7200)  # from the 110 close until 121 beat it
    assert (m.max_drawdown_peak, m.max_drawdown_recovered) == (at(1), True)
    assert m.cagr == pytest.approx(1.21 ** (8760 / 3) - 1)  # 21% in 3 hours, compounded over a year
    assert m.calmar == pytest.approx(m.cagr / 0.1)
    assert m.exposure == pytest.approx(1 / 3)  # of the 3 bars only the second began with a position


def test_cagr_is_the_yearly_rate_of_the_whole_period() -> None:
    two_years = [EquityPoint(T0 + timedelta(days=n), D(100), D(100), D(0)) for n in range(1, 730)]
    two_years.append(EquityPoint(T0 + timedelta(days=730), D(121), D(121), D(0)))
    m = performance(two_years, [], initial=D(100), timeframe="1d", symbols=["BTC/USDT"])
    assert m.cagr == pytest.approx(0.1)
    assert m.calmar is None and m.max_drawdown == 0 and m.max_drawdown_peak is None


def test_a_drawdown_not_recovered_lasts_until_the_end() -> None:
    m = performance(curve(("120", "0"), ("90", "0"), ("100", "0")), [], initial=D(100), timeframe="1h",
                    symbols=["BTC/USDT"])
    assert m.max_drawdown == pytest.approx(0.25)
    assert (m.max_drawdown_bars, m.max_drawdown_seconds, m.max_drawdown_recovered) == (2, 7200, False)
    assert m.sortino is not None and m.exposure == 0


def test_round_trips_are_campaigns_back_to_zero_net_of_every_fee() -> None:
    trips, still_open = round_trips(TRADES)
    assert [(t.symbol, t.fills, t.cost, t.pnl) for t in trips] == [
        ("BTC/USDT", 2, D("100.1"), D("-10.19")), ("BTC/USDT", 2, D("50"), D("9.88006"))]
    assert still_open == 1
    assert trips[1].ret == pytest.approx(9.88006 / 50)


def test_trade_statistics_fees_slippage_and_turnover_are_the_hand_computed_values() -> None:
    m = performance(CURVE, TRADES, initial=D(100), timeframe="1h", symbols=["BTC/USDT", "ETH/USDT"])
    assert (m.fills, m.round_trips, m.open_round_trips, m.win_rate) == (5, 2, 1, 0.5)
    assert (m.avg_win, m.avg_loss) == (D("9.88006"), D("-10.19"))
    assert m.avg_win_return == pytest.approx(9.88006 / 50)
    assert m.avg_loss_return == pytest.approx(-10.19 / 100.1)
    assert m.fees == D("0.1") + D("0.09") + D("0.05") + D("0.05994") + D("0.02")  # the BTC fee at its price
    assert m.slippage == D(2)  # bought 1 above and sold 1 below the reference
    assert m.turnover == pytest.approx((100 + 90 + 50 + 59.94 + 20) / ((100 + 110 + 99 + 121) / 4))


def test_buy_and_hold_buys_at_the_first_close_and_sells_at_the_last_paying_the_fee_each_way(
        config: RunnerConfig) -> None:
    closes = [(at(1), D(100)), (at(2), D(90)), (at(3), D(120))]
    result = BacktestResult(config, equity=CURVE, closes={"BTC/USDT": closes}, bars=3)
    points, trades = buy_and_hold(result, D("0.001"))
    q = D(100) / (D(100) * D("1.001"))  # all the cash, the fee included
    assert [(t.side, t.quantity, t.price) for t in trades] == [(Side.BUY, q, D(100)), (Side.SELL, q, D(120))]
    assert [float(p.equity) for p in points] == pytest.approx([100 / 1.001, float(q) * 90, float(q) * 120 * 0.999])
    m = metrics_of(result, "1h").buy_and_hold
    assert m is not None
    assert m.total_return == pytest.approx(1.2 * 0.999 / 1.001 - 1)
    assert (m.round_trips, m.fills, m.win_rate, m.slippage) == (1, 2, 1.0, 0)
    assert float(m.fees) == pytest.approx((100 + 120) * 0.001 / 1.001)  # 0.1% of q x 100 in, of q x 120 out
    assert m.exposure == pytest.approx(2 / 3)  # the first bar is before the first close


def test_buy_and_hold_weights_every_symbol_equally_from_its_own_first_close(config: RunnerConfig) -> None:
    closes = {"BTC/USDT": [(at(1), D(100)), (at(2), D(110)), (at(3), D(120))],
              "ETH/USDT": [(at(2), D(10)), (at(3), D(5))]}
    points, trades = buy_and_hold(BacktestResult(config, closes=closes), D(0))
    assert [(t.symbol, t.side, t.quantity) for t in trades] == [
        ("BTC/USDT", Side.BUY, D("0.5")), ("ETH/USDT", Side.BUY, D(5)), ("BTC/USDT", Side.SELL, D("0.5")),
        ("ETH/USDT", Side.SELL, D(5))]
    assert [p.equity for p in points] == [D(100), D(105), D(85)]  # 50 cash + 50 BTC; 55 + 50; 60 + 25


def test_several_candles_closing_together_leave_one_point_per_bar() -> None:
    a, b, c = (EquityPoint(at(1), D(1), D(1), D(0)), EquityPoint(at(1), D(2), D(2), D(0)),
               EquityPoint(at(2), D(3), D(3), D(0)))
    assert bar_curve([a, b, c]) == [b, c]


def test_monthly_returns_chain_from_the_starting_capital_by_the_month_a_bar_opened_in() -> None:
    points = [EquityPoint(datetime(2024, 1, 31, 23, tzinfo=UTC), D(110), D(0), D(0)),
              EquityPoint(datetime(2024, 2, 1, tzinfo=UTC), D(121), D(0), D(0)),  # the last January bar's close
              EquityPoint(datetime(2024, 2, 1, 1, tzinfo=UTC), D(99), D(0), D(0))]
    assert monthly_returns(points, D(100), "1h") == [("2024-01", pytest.approx(0.21)),
                                                     ("2024-02", pytest.approx(99 / 121 - 1))]


def test_metrics_are_json_safe_with_undefined_ratios_as_null(config: RunnerConfig) -> None:
    flat = curve(("100", "0"), ("100", "0"))
    result = BacktestResult(config, equity=flat, closes={"BTC/USDT": [(at(1), D(100)), (at(2), D(100))]}, bars=2)
    doc = json.loads(json.dumps(metrics_of(result, "1h").as_dict(), allow_nan=False))
    assert (doc["sharpe"], doc["sortino"], doc["win_rate"], doc["calmar"]) == (None, None, None, None)
    assert doc["final_equity"] == "100" and doc["start"] == T0.isoformat()
    assert doc["buy_and_hold"]["fills"] == 2 and doc["buy_and_hold"]["buy_and_hold"] is None
