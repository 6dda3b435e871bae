"""The council's strategy library: each strategy's buy, sell, hold and warm-up behaviour, confidence bounds,
determinism, stop/take-profit suggestions, configuration parsing, and a run over real BTC/USDT features."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from quorum.council.base import FeatureRow, PredictionView, ProducerKind, RiskTag, Signal, StrategyInput
from quorum.council.strategies import (
    MAX_STOP_FRACTION,
    STRATEGY_TYPES,
    BollingerReversion,
    DipAwareEntry,
    KeltnerReversion,
    MacdTrend,
    ModelDriven,
    MultivariateComposite,
    RsiReversion,
    default_strategies,
    parse_strategies,
    protective_levels,
)
from quorum.domain.models import MomentumBaseline
from quorum.indicators import FeatureSetSpec, compute_features, ohlcv_frame
from quorum.marketdata.files import read_rows
from quorum.types import Action

from tests.support import data_file

T0 = datetime(2024, 1, 1, tzinfo=UTC)
Values = Mapping[str, float | None]


def make(*values: Values, closes: Sequence[str] = (), p_up: float | None = None, model: str = "lgbm",
         predictions: Sequence[PredictionView] = ()) -> StrategyInput:
    """An input from feature dicts (oldest first, the last is the current candle). ``closes`` sets every row's
    close (default 100) and adds empty rows in front when it is the longer; ``p_up`` adds one prediction."""
    n = max(len(values), len(closes), 1)
    rows = [{}] * (n - len(values)) + list(values)
    prices = list(closes) if closes else ["100"] * n
    history = tuple(FeatureRow(T0 + timedelta(hours=i), Decimal(c), v) for i, (c, v) in enumerate(zip(
        ["100"] * (n - len(prices)) + prices, rows, strict=True)))
    preds = tuple(predictions) + ((PredictionView(model, "v7", 4, p_up),) if p_up is not None else ())
    return StrategyInput("binance", "BTC/USDT", "1h", history, preds)


def assert_valid(signal: Signal, close: Decimal) -> None:
    assert 0.0 <= signal.confidence <= 1.0
    assert signal.direction is not Action.HOLD or signal.confidence == 0.0
    assert all(code == code.upper() and " " not in code for code in signal.reason_codes)
    if signal.direction is not Action.BUY:
        assert signal.stop_loss is None and signal.take_profit is None
    if signal.stop_loss is not None:
        assert close * (1 - MAX_STOP_FRACTION) <= signal.stop_loss < close
    if signal.take_profit is not None:
        assert signal.take_profit > close


def codes(signal: Signal) -> tuple[Action, tuple[str, ...]]:
    return signal.direction, signal.reason_codes


# --- RSI ----------------------------------------------------------------------------------------------------

RSI = RsiReversion()
rsi_values = st.floats(min_value=0.0, max_value=100.0, allow_nan=False)


def rsi_input(rsi: float | None, atr: float | None = 1.0, **more: float | None) -> StrategyInput:
    return make({"rsi_14": rsi, "atr_14": atr, **more})


@pytest.mark.parametrize("rsi", [29.99, 20.0, 0.0])
def test_rsi_below_oversold_is_a_buy(rsi: float) -> None:
    assert codes(RSI.evaluate(rsi_input(rsi))) == (Action.BUY, ("RSI_OVERSOLD",))


@pytest.mark.parametrize("rsi", [70.01, 80.0, 100.0])
def test_rsi_above_overbought_is_a_sell(rsi: float) -> None:
    assert codes(RSI.evaluate(rsi_input(rsi))) == (Action.SELL, ("RSI_OVERBOUGHT",))


@pytest.mark.parametrize("rsi", [30.0, 50.0, 70.0])
def test_rsi_between_the_thresholds_inclusive_is_a_hold_with_no_confidence(rsi: float) -> None:
    signal = RSI.evaluate(rsi_input(rsi))

    assert (signal.direction, signal.confidence, signal.reason_codes) == (Action.HOLD, 0.0, ("RSI_NEUTRAL",))


@pytest.mark.parametrize("values", [{"rsi_14": None}, {}, {"rsi_7": 10.0}, {"rsi_14": float("nan")}],
                         ids=["none", "missing", "other-period", "nan"])
def test_rsi_warm_up_is_a_hold(values: Values) -> None:
    signal = RSI.evaluate(make(values))

    assert (signal.direction, signal.confidence, signal.reason_codes) == (Action.HOLD, 0.0, ("WARMUP",))
    assert signal.metadata["feature"] == "rsi_14"


def test_rsi_strategy_reads_the_rsi_of_its_own_period() -> None:
    signal = RsiReversion(period=7).evaluate(make({"rsi_7": 10.0, "rsi_14": 90.0, "atr_14": 1.0}))

    assert signal.direction is Action.BUY
    assert signal.strategy == "rsi"


def test_rsi_custom_thresholds_move_the_decision_boundaries() -> None:
    strict = RsiReversion(oversold=20.0, overbought=80.0)

    assert strict.evaluate(rsi_input(25.0)).direction is Action.HOLD
    assert strict.evaluate(rsi_input(75.0)).direction is Action.HOLD
    assert strict.evaluate(rsi_input(19.0)).direction is Action.BUY


def test_rsi_confidence_starts_at_one_half_past_the_threshold_and_grows_with_the_distance() -> None:
    assert RSI.evaluate(rsi_input(29.999999)).confidence == pytest.approx(0.5, abs=1e-6)
    assert RSI.evaluate(rsi_input(15.0)).confidence == pytest.approx(1.0)
    assert RSI.evaluate(rsi_input(85.0)).confidence == pytest.approx(1.0)
    assert RSI.evaluate(rsi_input(0.0)).confidence == 1.0  # capped


@settings(max_examples=200, deadline=None, derandomize=True)
@given(rsi=rsi_values)
def test_rsi_confidence_is_a_probability_and_the_direction_follows_the_thresholds(rsi: float) -> None:
    signal = RSI.evaluate(rsi_input(rsi))

    assert 0.0 <= signal.confidence <= 1.0
    expected = Action.BUY if rsi < 30 else Action.SELL if rsi > 70 else Action.HOLD
    assert signal.direction is expected
    assert (signal.confidence >= 0.5) is (signal.direction is not Action.HOLD)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(a=rsi_values, b=rsi_values)
def test_more_extreme_rsi_never_lowers_confidence_on_the_same_side(a: float, b: float) -> None:
    lo, hi = sorted((a, b))
    s_lo, s_hi = RSI.evaluate(rsi_input(lo)), RSI.evaluate(rsi_input(hi))

    if s_lo.direction is s_hi.direction is Action.BUY:
        assert s_lo.confidence >= s_hi.confidence
    if s_lo.direction is s_hi.direction is Action.SELL:
        assert s_hi.confidence >= s_lo.confidence


# --- stop-loss / take-profit --------------------------------------------------------------------------------

def test_a_buy_suggests_an_atr_stop_and_take_profit_on_the_close_grid_rounded_toward_the_close() -> None:
    signal = RSI.evaluate(make({"rsi_14": 10.0, "atr_14": 123.456}, closes=["60050.5"]))

    # 60050.5 - 2 * 123.456 = 59803.588 -> 59803.6; 60050.5 + 3 * 123.456 = 60420.868 -> 60420.8
    assert (signal.stop_loss, signal.take_profit) == (Decimal("59803.6"), Decimal("60420.8"))
    assert str(signal.stop_loss) == "59803.6" and str(signal.take_profit) == "60420.8"
    assert "STOP_CLAMPED" not in signal.reason_codes


def test_a_stop_further_than_fifteen_percent_is_clamped_and_says_so() -> None:
    signal = RSI.evaluate(make({"rsi_14": 10.0, "atr_14": 10.0}, closes=["100.00"]))

    assert signal.stop_loss == Decimal("85.00") and str(signal.stop_loss) == "85.00"
    assert signal.take_profit == Decimal("130.00")
    assert signal.reason_codes == ("RSI_OVERSOLD", "STOP_CLAMPED")


def test_levels_can_be_disabled_one_by_one_and_without_them_no_atr_is_needed() -> None:
    no_stop = RsiReversion(stop_atr_mult=None).evaluate(rsi_input(10.0, atr=2.0))
    none = RsiReversion(stop_atr_mult=None, take_profit_atr_mult=None)

    assert (no_stop.stop_loss, no_stop.take_profit) == (None, Decimal("106"))
    assert codes(none.evaluate(rsi_input(10.0, atr=None))) == (Action.BUY, ("RSI_OVERSOLD",))
    assert none.feature_names == ("rsi_14",)


def test_a_buy_waits_for_the_atr_when_it_suggests_levels() -> None:
    signal = RSI.evaluate(rsi_input(10.0, atr=None))

    assert codes(signal) == (Action.HOLD, ("WARMUP",)) and signal.metadata["feature"] == "atr_14"


def test_sells_carry_no_levels_and_do_not_need_the_atr() -> None:
    signal = RSI.evaluate(rsi_input(90.0, atr=None))

    assert signal.direction is Action.SELL and (signal.stop_loss, signal.take_profit) == (None, None)


def test_the_atr_period_is_a_parameter() -> None:
    signal = RsiReversion(atr_period=7).evaluate(make({"rsi_14": 10.0, "atr_7": 1.0}))

    assert signal.stop_loss == Decimal("98")


@pytest.mark.parametrize(("close", "atr", "expected"), [
    ("100", 0.0, (None, None, False)),
    ("100", -1.0, (None, None, False)),
    ("100", 0.1, (None, None, False)),  # both would round onto the close
    ("100.0", 0.1, (Decimal("99.8"), Decimal("100.3"), False)),
    ("6E+4", 100.0, (Decimal("59800"), Decimal("60300"), False)),  # exponent above 0 -> whole units
])
def test_protective_levels_edge_cases(close: str, atr: float, expected: tuple[object, ...]) -> None:
    assert protective_levels(Decimal(close), atr, 2.0, 3.0) == expected


@settings(max_examples=300, deadline=None, derandomize=True)
@given(close=st.decimals(min_value=Decimal("0.00000001"), max_value=Decimal("1e7"), allow_nan=False, places=8),
       atr=st.floats(min_value=0.0, max_value=1e9, allow_nan=False),
       mult=st.floats(min_value=0.01, max_value=100.0))
def test_a_stop_is_never_more_than_fifteen_percent_away_and_both_levels_sit_on_the_close_grid(
        close: Decimal, atr: float, mult: float) -> None:
    stop, take, clamped = protective_levels(close, atr, mult, mult)

    exponent = min(close.as_tuple().exponent, 0)
    for level in (stop, take):
        assert level is None or level.as_tuple().exponent == exponent
    if stop is not None:
        assert close * (1 - MAX_STOP_FRACTION) <= stop < close
    if take is not None:
        assert take > close
    assert clamped == (atr > 0 and Decimal(repr(mult)) * Decimal(repr(atr)) > close * MAX_STOP_FRACTION)


# --- MACD ---------------------------------------------------------------------------------------------------

HIST = "macd_12_26_9_hist"
MACD = MacdTrend()


def macd_input(prev: float | None, now: float | None, atr: float | None = 4.0) -> StrategyInput:
    return make({HIST: prev, "atr_14": atr}, {HIST: now, "atr_14": atr})


def test_macd_histogram_crossing_above_zero_is_a_buy_with_confidence_from_its_size_in_atrs() -> None:
    signal = MACD.evaluate(macd_input(-1.0, 0.5))

    # 0.5 / (0.25 * 4 ATR) = half way to full strength -> 0.5 + 0.25
    assert codes(signal) == (Action.BUY, ("MACD_CROSS_UP",))
    assert signal.confidence == pytest.approx(0.75)
    assert signal.stop_loss == Decimal("92")


def test_macd_histogram_crossing_below_zero_is_a_sell_and_confidence_saturates() -> None:
    signal = MACD.evaluate(macd_input(1.0, -2.0))

    assert codes(signal) == (Action.SELL, ("MACD_CROSS_DOWN",))
    assert signal.confidence == 1.0


@pytest.mark.parametrize(("prev", "now"), [(1.0, 2.0), (-1.0, -0.5), (0.0, 0.0), (0.5, 0.0)])
def test_macd_without_a_crossing_holds(prev: float, now: float) -> None:
    assert codes(MACD.evaluate(macd_input(prev, now))) == (Action.HOLD, ("MACD_NO_CROSS",))


def test_macd_leaving_zero_counts_as_the_crossing() -> None:
    assert MACD.evaluate(macd_input(0.0, 0.1)).direction is Action.BUY
    assert MACD.evaluate(macd_input(0.0, -0.1)).direction is Action.SELL


@pytest.mark.parametrize(("prev", "now", "atr"), [(None, 1.0, 4.0), (-1.0, None, 4.0), (-1.0, 1.0, None)])
def test_macd_warm_up_is_a_hold(prev: float | None, now: float | None, atr: float | None) -> None:
    assert codes(MACD.evaluate(macd_input(prev, now, atr))) == (Action.HOLD, ("WARMUP",))


def test_macd_needs_two_rows_of_history() -> None:
    assert MACD.lookback == 2
    assert codes(MACD.evaluate(make({HIST: 1.0, "atr_14": 4.0}))) == (Action.HOLD, ("WARMUP",))


def test_macd_zero_trigger_reads_the_line_and_parameters_change_the_feature_names() -> None:
    zero = MacdTrend(trigger="zero", fast=5, slow=35, signal=5)
    line = "macd_5_35_5_line"

    assert zero.feature_names == (line, "atr_14")
    assert zero.evaluate(make({line: -1.0, "atr_14": 4.0, HIST: 5.0},
                              {line: 1.0, "atr_14": 4.0, HIST: 5.0})).direction is Action.BUY


# --- Bollinger and Keltner band reversion -------------------------------------------------------------------

BANDS = {
    "bollinger": (BollingerReversion, ("bb_20_2_upper", "bb_20_2_middle", "bb_20_2_lower"), "BB"),
    "keltner": (KeltnerReversion, ("kc_20_10_2_upper", "kc_20_10_2_middle", "kc_20_10_2_lower"), "KC"),
}


def band_input(names: Sequence[str], close: str, upper: float | None = 110.0, middle: float | None = 100.0,
               lower: float | None = 90.0) -> StrategyInput:
    return make({**dict(zip(names, (upper, middle, lower), strict=True)), "atr_14": 1.0}, closes=[close])


@pytest.mark.parametrize("kind", BANDS)
@pytest.mark.parametrize(("close", "confidence"), [("90", 0.5), ("87.5", 0.75), ("85", 1.0), ("50", 1.0)])
def test_band_reversion_buys_at_or_below_the_lower_band(kind: str, close: str, confidence: float) -> None:
    cls, names, code = BANDS[kind]
    signal = cls().evaluate(band_input(names, close))

    assert codes(signal) == (Action.BUY, (f"{code}_BELOW_LOWER",))
    assert signal.confidence == pytest.approx(confidence)


@pytest.mark.parametrize("kind", BANDS)
@pytest.mark.parametrize(("close", "confidence"), [("100", 0.5), ("102.5", 0.75), ("120", 1.0)])
def test_band_reversion_sells_back_at_the_middle_by_default(kind: str, close: str, confidence: float) -> None:
    cls, names, code = BANDS[kind]
    signal = cls().evaluate(band_input(names, close))

    assert codes(signal) == (Action.SELL, (f"{code}_ABOVE_MIDDLE",))
    assert signal.confidence == pytest.approx(confidence)


@pytest.mark.parametrize("kind", BANDS)
def test_band_reversion_can_wait_for_the_upper_band_to_exit(kind: str) -> None:
    cls, names, code = BANDS[kind]
    upper = cls(exit_at="upper")

    assert codes(upper.evaluate(band_input(names, "105"))) == (Action.HOLD, (f"{code}_INSIDE",))
    assert codes(upper.evaluate(band_input(names, "110"))) == (Action.SELL, (f"{code}_ABOVE_UPPER",))


@pytest.mark.parametrize("kind", BANDS)
def test_band_reversion_holds_inside_the_bands_and_on_degenerate_bands(kind: str) -> None:
    cls, names, code = BANDS[kind]

    assert codes(cls().evaluate(band_input(names, "95"))) == (Action.HOLD, (f"{code}_INSIDE",))
    assert codes(cls().evaluate(band_input(names, "95", 100.0, 100.0, 100.0))) == (Action.HOLD,
                                                                                   (f"{code}_DEGENERATE",))


@pytest.mark.parametrize("kind", BANDS)
def test_band_reversion_entry_position_moves_the_buy_threshold_inside_the_band(kind: str) -> None:
    cls, names, _ = BANDS[kind]

    assert cls().evaluate(band_input(names, "92")).direction is Action.HOLD
    assert cls(entry_position=0.1).evaluate(band_input(names, "92")).direction is Action.BUY


@pytest.mark.parametrize("kind", BANDS)
@pytest.mark.parametrize("missing", ["upper", "middle", "lower"])
def test_band_reversion_warm_up_is_a_hold(kind: str, missing: str) -> None:
    cls, names, _ = BANDS[kind]
    signal = cls().evaluate(band_input(names, "80", **{missing: None}))

    assert codes(signal) == (Action.HOLD, ("WARMUP",))


def test_band_parameters_name_the_bands_they_read() -> None:
    assert BollingerReversion(period=10, nbdev=2.5).feature_names[:3] == (
        "bb_10_2.5_upper", "bb_10_2.5_middle", "bb_10_2.5_lower")
    assert KeltnerReversion(ema_period=30, channel_atr_period=14, multiplier=1.5).feature_names[:3] == (
        "kc_30_14_1.5_upper", "kc_30_14_1.5_middle", "kc_30_14_1.5_lower")


# --- composite ----------------------------------------------------------------------------------------------

COMPOSITE = MultivariateComposite()


def composite_input(rsi: float | None = 50.0, hist: float | None = 0.0, coe: float | None = 0.0,
                    slope: float | None = 0.0, atr: float | None = 4.0) -> StrategyInput:
    return make({"rsi_14": rsi, HIST: hist, "close_over_ema": coe, "ema_slope_20_5": slope, "atr_14": atr})


def test_composite_all_bullish_components_make_a_full_confidence_buy_with_component_scores() -> None:
    signal = COMPOSITE.evaluate(composite_input(rsi=30.0, hist=1.0, coe=0.02, slope=0.002))

    assert codes(signal) == (Action.BUY, ("COMPOSITE_BULLISH",))
    assert signal.confidence == 1.0
    assert {k: signal.metadata[k] for k in ("score", "rsi_score", "macd_score", "ema_score", "slope_score")} == \
        pytest.approx({"score": 1.0, "rsi_score": 1.0, "macd_score": 1.0, "ema_score": 1.0, "slope_score": 1.0})


def test_composite_score_is_the_weighted_mean_of_the_components() -> None:
    # rsi 40 -> 0.5 (w 1), hist 0.5 / (0.25 * 4) -> 0.5 (w 1), ema and slope 0 (w 0.5 each): 1.0 / 3
    signal = COMPOSITE.evaluate(composite_input(rsi=40.0, hist=0.5))

    assert signal.direction is Action.BUY
    assert signal.confidence == pytest.approx(1 / 3)


def test_composite_all_bearish_components_make_a_sell() -> None:
    signal = COMPOSITE.evaluate(composite_input(rsi=70.0, hist=-1.0, coe=-0.05, slope=-0.01))

    assert codes(signal) == (Action.SELL, ("COMPOSITE_BEARISH",))
    assert signal.confidence == 1.0


def test_composite_mixed_components_hold() -> None:
    signal = COMPOSITE.evaluate(composite_input(rsi=70.0, hist=1.0, coe=0.0, slope=0.0))

    assert codes(signal) == (Action.HOLD, ("COMPOSITE_NEUTRAL",))
    assert signal.metadata["score"] == pytest.approx(0.0)


@pytest.mark.parametrize("missing", ["rsi", "hist", "coe", "slope", "atr"])
def test_composite_warm_up_is_a_hold(missing: str) -> None:
    assert codes(COMPOSITE.evaluate(composite_input(**{missing: None}))) == (Action.HOLD, ("WARMUP",))


def test_composite_ignores_components_with_zero_weight() -> None:
    rsi_only = MultivariateComposite(macd_weight=0, ema_weight=0, slope_weight=0, stop_atr_mult=None,
                                     take_profit_atr_mult=None)
    signal = rsi_only.evaluate(make({"rsi_14": 35.0}))

    assert rsi_only.feature_names == ("rsi_14",)
    assert signal.direction is Action.BUY and signal.confidence == pytest.approx(0.75)
    assert set(signal.metadata) == {"score", "rsi_score"}


# --- model-driven -------------------------------------------------------------------------------------------

MODEL = ModelDriven()


@pytest.mark.parametrize(("p_up", "direction", "reason", "confidence"), [
    (0.8, Action.BUY, "MODEL_BULLISH", 0.6), (0.6, Action.BUY, "MODEL_BULLISH", 0.2),
    (0.3, Action.SELL, "MODEL_BEARISH", 0.4), (0.0, Action.SELL, "MODEL_BEARISH", 1.0),
    (0.5, Action.HOLD, "MODEL_NEUTRAL", 0.0), (0.59, Action.HOLD, "MODEL_NEUTRAL", 0.0),
])
def test_model_votes_its_direction_with_confidence_from_the_distance_to_a_coin_flip(
        p_up: float, direction: Action, reason: str, confidence: float) -> None:
    signal = MODEL.evaluate(make({"atr_14": 1.0}, p_up=p_up))

    assert codes(signal) == (direction, (reason,))
    assert signal.confidence == pytest.approx(confidence)
    assert signal.metadata["model_version"] == "v7" and signal.metadata["model_name"] == "lgbm"


@pytest.mark.parametrize("predictions", [(), (PredictionView("lgbm", "v7", 4, None),),
                                         (PredictionView("lgbm", "v7", 4, float("nan")),),
                                         (PredictionView("lgbm", "v7", 4, 1.5),)],
                         ids=["none", "warming-up", "nan", "out-of-range"])
def test_model_without_a_usable_prediction_holds(predictions: tuple[PredictionView, ...]) -> None:
    assert codes(MODEL.evaluate(make({"atr_14": 1.0}, predictions=predictions))) == (Action.HOLD,
                                                                                     ("NO_PREDICTION",))


def test_model_reads_only_its_named_model() -> None:
    named = ModelDriven(model_name="xgb")
    inp = make({"atr_14": 1.0}, predictions=[PredictionView("lgbm", "1", 1, 0.9), PredictionView("xgb", "3", 1, 0.1)])

    signal = named.evaluate(inp)

    assert signal.direction is Action.SELL and signal.metadata["model_version"] == "3"
    assert named.kind is ProducerKind.MODEL and named.risk_tag is RiskTag.MEDIUM


@pytest.mark.parametrize(("p_up", "expected", "direction", "reason"), [
    (0.8, 0.003, Action.BUY, "MODEL_BULLISH"), (0.8, 0.001, Action.HOLD, "MODEL_EDGE_TOO_SMALL"),
    (0.8, None, Action.BUY, "MODEL_BULLISH"), (0.2, -0.003, Action.SELL, "MODEL_BEARISH"),
    (0.2, -0.001, Action.HOLD, "MODEL_EDGE_TOO_SMALL"), (0.2, 0.004, Action.HOLD, "MODEL_EDGE_TOO_SMALL"),
])
def test_model_votes_only_with_the_expected_return_to_pay_for_the_trade(
        p_up: float, expected: float | None, direction: Action, reason: str) -> None:
    fee_aware = ModelDriven(min_expected_return=0.002)
    inp = make({"atr_14": 1.0}, predictions=[PredictionView("lgbm", "v7", 1, p_up, expected_return=expected)])

    signal = fee_aware.evaluate(inp)

    assert codes(signal) == (direction, (reason,))
    assert signal.metadata["expected_return"] == expected


def test_model_buy_waits_for_the_atr_it_sets_levels_from() -> None:
    assert codes(MODEL.evaluate(make({}, p_up=0.9))) == (Action.HOLD, ("WARMUP",))


@pytest.mark.parametrize("params", [{"buy_above": 0.5}, {"sell_below": 0.5}, {"buy_above": 1.1},
                                    {"model_name": ""}])
def test_model_thresholds_must_straddle_a_coin_flip(params: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        ModelDriven(**params)


# --- dip-aware entry ----------------------------------------------------------------------------------------

DIP = DipAwareEntry()


def dip_input(*path: str, p_up: float | None = 0.7, current: str = "102", atr: float | None = 1.0) -> StrategyInput:
    """24 closes: 100 with the given path (the closes before the current one) at the end, then ``current``."""
    closes = ["100"] * (23 - len(path)) + list(path) + [current]
    return make({"atr_14": atr}, closes=closes, p_up=p_up)


def test_dip_a_drop_then_a_recovery_with_model_support_is_a_buy() -> None:
    signal = DIP.evaluate(dip_input("110", "105", "100", "101"))

    # drop 10/110 = 9.09 % (depth 0.818 of the way to 2x), p_up 0.7 is 1/3 of the way from 0.55 to 1
    assert codes(signal) == (Action.BUY, ("DIP_RECOVERY",))
    assert signal.confidence == pytest.approx(0.5 + 0.25 * (10 / 110 * 100 / 5 - 1) + 0.25 * (0.15 / 0.45))
    assert (signal.metadata["high"], signal.metadata["low"]) == ("110", "100")
    assert signal.stop_loss == Decimal("100") and signal.take_profit == Decimal("105")


def test_dip_thresholds_are_exact_decimal_comparisons() -> None:
    # exactly 5 % down from 100 to 95, exactly 1.5 % back up to 96.425
    assert DIP.evaluate(dip_input("100", "95", current="96.425")).direction is Action.BUY
    assert codes(DIP.evaluate(dip_input("100", "95.01", current="96.5"))) == (Action.HOLD, ("NO_DIP",))
    assert codes(DIP.evaluate(dip_input("100", "95", current="96.424"))) == (Action.HOLD, ("NO_RECOVERY",))


def test_dip_a_low_before_the_high_is_no_setup() -> None:
    assert codes(DIP.evaluate(dip_input("90", "95", "110", current="108"))) == (Action.HOLD, ("NO_DIP",))


def test_dip_without_recovery_is_no_entry() -> None:
    assert codes(DIP.evaluate(dip_input("110", "100", current="100.5"))) == (Action.HOLD, ("NO_RECOVERY",))
    assert codes(DIP.evaluate(dip_input("110", "101", current="100"))) == (Action.HOLD, ("NO_RECOVERY",))


def test_dip_recovered_to_a_new_high_is_no_entry() -> None:
    assert codes(DIP.evaluate(dip_input("110", "100", current="111"))) == (Action.HOLD, ("NO_DIP",))


def test_dip_with_a_weak_prediction_is_no_entry() -> None:
    signal = DIP.evaluate(dip_input("110", "100", p_up=0.5))

    assert codes(signal) == (Action.HOLD, ("PREDICTION_WEAK",)) and signal.metadata["p_up"] == 0.5


def test_dip_without_a_prediction_holds_unless_not_required() -> None:
    assert codes(DIP.evaluate(dip_input("110", "100", p_up=None))) == (Action.HOLD, ("NO_PREDICTION",))

    signal = DipAwareEntry(require_prediction=False).evaluate(dip_input("110", "100", p_up=None))

    assert signal.direction is Action.BUY
    assert signal.confidence == pytest.approx(0.5 + 0.25 * (10 / 110 * 100 / 5 - 1))


def test_dip_warm_up_is_a_hold() -> None:
    short = make({"atr_14": 1.0}, closes=["110", "100", "102"], p_up=0.9)

    assert DIP.lookback == 24
    assert codes(DIP.evaluate(short)) == (Action.HOLD, ("WARMUP",))
    assert codes(DIP.evaluate(dip_input("110", "100", atr=None))) == (Action.HOLD, ("WARMUP",))


def test_dip_window_and_thresholds_are_parameters() -> None:
    inp = dip_input("110", "100")

    assert DIP.evaluate(inp).direction is Action.BUY
    assert DipAwareEntry(window=3).evaluate(dip_input("110", "100", "101")).reason_codes == ("NO_DIP",)  # 110 is out
    assert DipAwareEntry(drop_pct=10).evaluate(inp).reason_codes == ("NO_DIP",)
    assert DipAwareEntry(recovery_pct=3).evaluate(inp).reason_codes == ("NO_RECOVERY",)
    assert DipAwareEntry(min_p_up=0.8).evaluate(inp).reason_codes == ("PREDICTION_WEAK",)


# --- every strategy: bounds, determinism, configuration -----------------------------------------------------

DEFAULTS = default_strategies()
ALL_FEATURES = sorted({n for s in DEFAULTS for n in s.feature_names})
feature_value = st.one_of(st.none(), st.floats(), st.floats(min_value=-200.0, max_value=200.0))


@st.composite
def random_inputs(draw: st.DrawFn) -> StrategyInput:
    n = draw(st.integers(min_value=1, max_value=30))
    closes = draw(st.lists(st.decimals(min_value=Decimal("0.0001"), max_value=Decimal("1e6"), places=4,
                                       allow_nan=False), min_size=n, max_size=n))
    rows = draw(st.lists(st.fixed_dictionaries({k: feature_value for k in ALL_FEATURES}), min_size=n, max_size=n))
    p_up = draw(st.one_of(st.none(), st.floats(), st.floats(min_value=0.0, max_value=1.0)))
    return make(*rows, closes=[str(c) for c in closes],
                predictions=[PredictionView("m", "1", 1, p_up)] if p_up is not None else ())


@settings(max_examples=300, deadline=None, derandomize=True)
@given(inp=random_inputs())
def test_every_strategy_returns_a_valid_signal_for_any_features(inp: StrategyInput) -> None:
    for strategy in DEFAULTS:
        signal = strategy.evaluate(inp)
        assert_valid(signal, inp.close)
        assert signal.strategy == strategy.name


@settings(max_examples=100, deadline=None, derandomize=True)
@given(inp=random_inputs())
def test_every_strategy_is_deterministic(inp: StrategyInput) -> None:
    copy = StrategyInput(inp.exchange, inp.symbol, inp.timeframe,
                         tuple(FeatureRow(r.ts, r.close, dict(r.values)) for r in inp.history), inp.predictions)
    for strategy in DEFAULTS:
        assert strategy.evaluate(inp) == strategy.evaluate(inp) == strategy.model_copy().evaluate(copy)


def test_dip_only_ever_buys_or_holds() -> None:
    for path in (("110", "100"), ("90", "110"), ("100",)):
        for current in ("50", "99", "102", "150"):
            assert DIP.evaluate(dip_input(*path, current=current)).direction in (Action.BUY, Action.HOLD)


def test_defaults_are_one_of_each_type_but_the_opt_in_policy_follower_named_after_it_with_their_risk_tags() -> None:
    assert [(s.name, s.risk_tag) for s in DEFAULTS] == [
        ("rsi", RiskTag.LOW), ("macd", RiskTag.MEDIUM), ("bollinger", RiskTag.LOW), ("keltner", RiskTag.MEDIUM),
        ("composite", RiskTag.LOW), ("model", RiskTag.MEDIUM), ("dip", RiskTag.HIGH), ("trend", RiskTag.MEDIUM)]
    assert set(STRATEGY_TYPES) == {s.name for s in DEFAULTS} | {"policy"}
    assert all(type(s) is STRATEGY_TYPES[s.name] for s in DEFAULTS)


def test_default_feature_names_exist_in_the_default_feature_set() -> None:
    provided = set(FeatureSetSpec().feature_names)

    assert {n for s in DEFAULTS for n in s.feature_names} <= provided


def test_parse_strategies_reads_json_and_lists_and_round_trips() -> None:
    text = json.dumps([s.model_dump(mode="json") for s in DEFAULTS])

    assert parse_strategies(text) == DEFAULTS
    assert parse_strategies([{"type": "rsi", "name": "rsi-fast", "period": 7}, {"type": "dip", "window": 48}]) == (
        RsiReversion(name="rsi-fast", period=7), DipAwareEntry(window=48))
    assert parse_strategies("[]") == ()


@pytest.mark.parametrize(("config", "message"), [
    ([{"type": "ichimoku"}], "ichimoku"),
    ([{"type": "rsi", "perod": 7}], "perod"),
    ([{"type": "rsi", "oversold": 70, "overbought": 70}], "oversold"),
    ([{"type": "rsi", "oversold": 80}], "oversold"),
    ([{"type": "macd", "fast": 26, "slow": 12}], "slow"),
    ([{"type": "composite", "rsi_weight": 0, "macd_weight": 0, "ema_weight": 0, "slope_weight": 0}], "weight"),
    ([{"type": "rsi", "name": "RSI Strategy"}], "name"),
    ([{"type": "rsi", "stop_atr_mult": 0}], "stop_atr_mult"),
    ([{"name": "rsi"}], "type"),
])
def test_parse_strategies_refuses_bad_configuration(config: list[dict[str, object]], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_strategies(config)
    with pytest.raises(ValueError, match=message):
        parse_strategies(json.dumps(config))


def test_parse_strategies_refuses_duplicate_instance_names() -> None:
    with pytest.raises(ValueError, match=r"duplicate strategy names \['rsi'\]"):
        parse_strategies([{"type": "rsi"}, {"type": "rsi", "period": 7}])
    with pytest.raises(ValueError, match="duplicate strategy names"):
        parse_strategies([{"type": "rsi", "name": "x"}, {"type": "macd", "name": "x"}])


def test_strategies_are_immutable_configuration() -> None:
    with pytest.raises(ValidationError):
        RSI.period = 7  # type: ignore[misc]


# --- real data ----------------------------------------------------------------------------------------------

def test_every_default_strategy_gives_valid_signals_on_real_btc_features() -> None:
    raw = read_rows(data_file("ohlcv", "binance_BTCUSDT_1h.csv")).head(1200)
    features = compute_features(ohlcv_frame(raw), FeatureSetSpec()).drop("ts")
    model = MomentumBaseline()
    rows = [FeatureRow(datetime.fromtimestamp(int(ts) / 1000, UTC), Decimal(close), values)
            for ts, close, values in zip(raw["ts"], raw["close"], features.iter_rows(named=True), strict=True)]
    depth = max(s.lookback for s in DEFAULTS)
    votes: dict[str, dict[Action, int]] = {s.name: dict.fromkeys(Action, 0) for s in DEFAULTS}
    warm: dict[str, int] = dict.fromkeys(votes, 0)

    for i in range(len(rows)):
        p_up = model.predict(dict(rows[i].values))
        inp = StrategyInput("binance", "BTC/USDT", "1h", tuple(rows[max(0, i + 1 - depth):i + 1]),
                            (PredictionView(model.name, model.version, model.horizon, p_up),))
        for s in DEFAULTS:
            signal = s.evaluate(inp)
            assert_valid(signal, inp.close)
            votes[s.name][signal.direction] += 1
            warm[s.name] += "WARMUP" in signal.reason_codes

    assert features.height == 1200 and isinstance(features, pl.DataFrame)
    assert any(v[Action.BUY] + v[Action.SELL] for v in votes.values())
    assert votes["dip"][Action.BUY] and not votes["dip"][Action.SELL], votes["dip"]
    # Everything is out of warm-up well before the end: MACD needs 34 candles, the trend's 480-bar EMA and its
    # 60-bar slope 539.
    assert warm.pop("trend") == 480 + 60 - 1
    assert all(w < 50 for w in warm.values()), warm
    assert all(v[Action.BUY] and v[Action.SELL] for name, v in votes.items() if name != "dip"), votes
