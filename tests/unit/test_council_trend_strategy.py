"""The trend regime strategy: long while the close is above a rising long EMA, out once it is not, the band's
hysteresis, warm-up, its features by name, its configuration, and a run over real BTC/USDT features."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from pydantic import ValidationError
from quorum.council.base import FeatureRow, StrategyInput
from quorum.council.strategies import TrendRegime, parse_strategies
from quorum.indicators import FeatureSetSpec, compute_features, ohlcv_frame
from quorum.indicators.spec import AtrSpec, CloseOverEmaSpec, EmaSlopeSpec
from quorum.marketdata.files import read_rows
from quorum.types import Action

from tests.support import data_file

T0 = datetime(2024, 1, 1, tzinfo=UTC)
DISTANCE, SLOPE, ATR = "close_over_ema_200", "ema_slope_200_24", "atr_14"


def trend(**params: object) -> TrendRegime:
    """The strategy on a 200-bar EMA (shorter warm-up than the shipped 480): what these cases are written for."""
    return TrendRegime(**({"ema_period": 200, "slope_lookback": 24} | params))  # type: ignore[arg-type]


def at(distance: float | None, slope: float | None, atr: float | None = 1.0, close: str = "100") -> StrategyInput:
    values = {k: v for k, v in ((DISTANCE, distance), (SLOPE, slope), (ATR, atr)) if v is not None}
    return StrategyInput("binance", "BTC/USDT", "1h", (FeatureRow(T0, Decimal(close), values),))


def test_buys_while_the_close_is_above_a_rising_ema_with_a_wide_stop_and_no_target() -> None:
    signal = trend().evaluate(at(0.02, 0.001))

    assert (signal.direction, signal.reason_codes) == (Action.BUY, ("TREND_UP",))
    assert signal.confidence == pytest.approx(0.5 + 0.5 * 0.02 / 0.05)
    assert signal.stop_loss == Decimal("94") and signal.take_profit is None  # 100 - 6 x ATR 1


def test_sells_once_the_close_falls_below_the_ema() -> None:
    signal = trend().evaluate(at(-0.01, 0.001))

    assert (signal.direction, signal.reason_codes) == (Action.SELL, ("TREND_BROKEN",))
    assert signal.confidence == pytest.approx(0.6)
    assert signal.stop_loss is None


def test_sells_when_the_ema_turns_down_even_with_the_close_above_it() -> None:
    signal = trend().evaluate(at(0.03, -0.0001))

    assert (signal.direction, signal.reason_codes, signal.confidence) == (Action.SELL, ("TREND_FALLING",), 0.5)


@pytest.mark.parametrize(("distance", "slope", "expected"), [
    (0.005, 0.001, Action.HOLD), (-0.005, 0.001, Action.HOLD), (0.015, 0.001, Action.BUY),
    (-0.015, 0.001, Action.SELL), (0.005, -0.001, Action.SELL), (0.015, 0.0, Action.HOLD),
])
def test_the_band_holds_whatever_position_there_is_near_the_ema(distance: float, slope: float,
                                                                 expected: Action) -> None:
    assert trend(band=0.01).evaluate(at(distance, slope)).direction is expected


def test_confidence_saturates_at_one_past_the_full_distance() -> None:
    assert trend(full_distance=0.02).evaluate(at(0.5, 0.001)).confidence == 1.0


@pytest.mark.parametrize("missing", [DISTANCE, SLOPE])
def test_a_warming_up_feature_holds_and_names_it(missing: str) -> None:
    values = {DISTANCE: 0.02, SLOPE: 0.001} | {missing: None}

    signal = trend().evaluate(at(values[DISTANCE], values[SLOPE]))

    assert (signal.direction, signal.reason_codes, signal.metadata["feature"]) == (Action.HOLD, ("WARMUP",), missing)


def test_reads_the_features_its_periods_name() -> None:
    strategy = TrendRegime(ema_period=480, slope_lookback=60, atr_period=20)
    spec = FeatureSetSpec()

    assert strategy.feature_names == ("close_over_ema_480", "ema_slope_480_60", "atr_20")
    assert set(strategy.feature_names) - {"atr_20"} <= set(spec.feature_names)
    assert set(TrendRegime().feature_names) <= set(FeatureSetSpec().feature_names)  # the shipped one is in it
    assert not set(trend().feature_names) <= set(FeatureSetSpec().feature_names)  # a 200-bar one is not


def test_is_configured_from_json_by_its_type_and_named_after_it() -> None:
    parsed = parse_strategies('[{"type": "trend", "ema_period": 480, "band": 0.01}]')

    assert parsed == (TrendRegime(ema_period=480, band=0.01),)
    assert parsed[0].name == "trend"


@pytest.mark.parametrize("bad", [{"band": -0.01}, {"band": 0.6}, {"ema_period": 0}, {"full_distance": 0},
                                 {"slope_lookback": 0}, {"emaperiod": 200}])
def test_bad_parameters_are_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        TrendRegime(**bad)


def test_on_real_btc_features_the_band_flips_the_position_less_often() -> None:
    raw = read_rows(data_file("ohlcv", "binance_BTCUSDT_1h.csv")).head(3000)
    spec = FeatureSetSpec(indicators=(CloseOverEmaSpec(period=200), EmaSlopeSpec(period=200, lookback=24),
                                      AtrSpec()), normalize=())
    features = compute_features(ohlcv_frame(raw), spec).drop("ts")
    inputs = [StrategyInput("binance", "BTC/USDT", "1h", (FeatureRow(T0 + timedelta(hours=i), Decimal(close), v),))
              for i, (close, v) in enumerate(zip(raw["close"], features.iter_rows(named=True), strict=True))]

    def flips(strategy: TrendRegime) -> tuple[int, int]:
        long, changes, warm = False, 0, 0
        for inp in inputs:
            signal = strategy.evaluate(inp)
            warm += "WARMUP" in signal.reason_codes
            if signal.direction is not Action.HOLD and (signal.direction is Action.BUY) != long:
                long, changes = not long, changes + 1
        return changes, warm

    plain, banded = flips(trend()), flips(trend(band=0.01))

    assert plain[1] == banded[1] == 200 + 24 - 1  # the EMA's seed, then the slope's lookback
    assert 0 < banded[0] < plain[0], (plain, banded)
