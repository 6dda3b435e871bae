"""The indicator library against TA-Lib (value for value, warm-up included), streaming against batch (bit for
bit), and without look-ahead (values up to t never depend on rows after t)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import numpy as np
import polars as pl
import pytest
import talib
from hypothesis import given, seed, settings
from hypothesis import strategies as st
from quorum.indicators import (
    AtrSpec,
    BbandsSpec,
    Candle,
    EmaSpec,
    FeatureEngine,
    FeatureSetSpec,
    FibSpec,
    KeltnerSpec,
    MacdSpec,
    MfiSpec,
    ObvSpec,
    RealizedVolSpec,
    RocSpec,
    RsiSpec,
    SessionVwapSpec,
    SmaSpec,
    StochSpec,
    VwapSpec,
    WillrSpec,
    batch,
    compute_features,
    ohlcv_frame,
)
from quorum.indicators.batch import Bars
from quorum.indicators.engine import OHLCV
from quorum.indicators.spec import DEFAULT_INDICATORS, CloseOverEmaSpec, EmaSlopeSpec, NormalizeSpec
from quorum.indicators.streaming import FibonacciRetracement
from quorum.marketdata.files import read_rows

from tests.support import data_file

RTOL = 1e-9
PERIODS = (2, 5, 14, 20, 50)
HOURLY = ("BTC", "ETH", "BNB", "XRP", "SOL", "ADA", "LTC", "LINK", "AVAX", "DOT", "DOGE")
REAL_FILES = tuple(f"binance_{s}USDT_1h.csv" for s in HOURLY) + ("binance_BTCUSDT_1m.csv", "binance_ETHUSDT_1m.csv")
STREAMED_FILES = ("binance_BTCUSDT_1h.csv", "binance_ETHUSDT_1h.csv", "binance_BTCUSDT_1m.csv",
                  "binance_ETHUSDT_1m.csv")

Comparison = tuple[str, np.ndarray, np.ndarray]


def load(name: str) -> pl.DataFrame:
    return ohlcv_frame(read_rows(data_file("ohlcv", name)))


def warmup(values: np.ndarray) -> int:
    defined = ~np.isnan(values)
    return int(np.argmax(defined)) if defined.any() else len(values)


def assert_matches(label: str, ours: np.ndarray, ref: np.ndarray, rtol: float = RTOL) -> None:
    """Same warm-up (leading NaNs, none after), then ``|a - b| <= rtol * max(1, |b|)`` at every index."""
    start = warmup(ref)
    assert start < len(ref), f"{label}: the series is too short to compare any value"
    assert warmup(ours) == start, f"{label}: warm-up {warmup(ours)} != TA-Lib's {start}"
    assert not np.isnan(ours[start:]).any() and not np.isnan(ref[start:]).any(), f"{label}: NaN after warm-up"
    err = np.abs(ours - ref)[start:] / np.maximum(1.0, np.abs(ref[start:]))
    worst = int(np.argmax(err))
    assert err[worst] <= rtol, f"{label}: at {start + worst} ours={ours[start + worst]!r} ta-lib={ref[start + worst]!r}"


# --- the TA-Lib families ---------------------------------------------------------------------------------------


def _moving_averages(b: Bars) -> Iterator[Comparison]:
    for p in PERIODS:
        yield f"SMA({p})", batch.sma(b.close, p), talib.SMA(b.close, p)
        yield f"EMA({p})", batch.ema(b.close, p), talib.EMA(b.close, p)


def _momentum(b: Bars) -> Iterator[Comparison]:
    for p in PERIODS:
        yield f"RSI({p})", batch.rsi(b.close, p), talib.RSI(b.close, p)
        yield f"ROC({p})", batch.roc(b.close, p), talib.ROC(b.close, p)
        yield f"WILLR({p})", batch.williams_r(b.high, b.low, b.close, p), talib.WILLR(b.high, b.low, b.close, p)


def _macd(b: Bars) -> Iterator[Comparison]:
    for fast, slow, signal in ((12, 26, 9), (5, 35, 5), (3, 10, 16)):
        ours, ref = batch.macd(b.close, fast, slow, signal), talib.MACD(b.close, fast, slow, signal)
        for part, o, r in zip(("line", "signal", "hist"), ours, ref, strict=True):
            yield f"MACD({fast},{slow},{signal}).{part}", o, r


def _stoch(b: Bars) -> Iterator[Comparison]:
    for fk, sk, sd in ((5, 3, 3), (14, 3, 3), (9, 1, 5)):
        ours = batch.stochastic(b.high, b.low, b.close, fk, sk, sd)
        ref = talib.STOCH(b.high, b.low, b.close, fastk_period=fk, slowk_period=sk, slowd_period=sd)
        for part, o, r in zip(("k", "d"), ours, ref, strict=True):
            yield f"STOCH({fk},{sk},{sd}).{part}", o, r


def _volatility(b: Bars) -> Iterator[Comparison]:
    for p in PERIODS:
        yield f"ATR({p})", batch.atr(b.high, b.low, b.close, p), talib.ATR(b.high, b.low, b.close, p)
        for dev in (1.0, 2.0, 2.5):
            ours, ref = batch.bollinger(b.close, p, dev)[:3], talib.BBANDS(b.close, p, dev, dev)
            for part, o, r in zip(("upper", "middle", "lower"), ours, ref, strict=True):
                yield f"BBANDS({p},{dev}).{part}", o, r


def _volume(b: Bars) -> Iterator[Comparison]:
    yield "OBV", batch.obv(b.close, b.volume), talib.OBV(b.close, b.volume)
    for p in PERIODS:
        yield f"MFI({p})", batch.mfi(b.high, b.low, b.close, b.volume, p), talib.MFI(b.high, b.low, b.close,
                                                                                    b.volume, p)


FAMILIES: dict[str, Callable[[Bars], Iterator[Comparison]]] = {
    "moving averages": _moving_averages, "momentum": _momentum, "macd": _macd, "stoch": _stoch,
    "volatility": _volatility, "volume": _volume,
}


@pytest.fixture(scope="module", params=REAL_FILES)
def real_bars(request: pytest.FixtureRequest) -> Bars:
    return Bars.from_frame(load(request.param))


@pytest.mark.parametrize("family", FAMILIES)
def test_batch_matches_talib_on_real_candles(family: str, real_bars: Bars) -> None:
    for label, ours, ref in FAMILIES[family](real_bars):
        assert_matches(label, ours, ref)


def _synthetic(kind: str) -> Bars:
    """Series that hit the guard cases: flat stretches, 1-ulp moves, sub-cent prices, idle bars, a zero price."""
    rng = np.random.default_rng(7)
    size = 3000
    steps = np.where(rng.random(size) < 0.3, 0.0, rng.normal(0.0, 0.01, size))
    close = 100.0 * np.exp(np.cumsum(steps))
    if kind == "ulp moves":  # prices that differ in the last bit only: no money flow, flat ranges for TA-Lib
        close = np.where(rng.random(size) < 0.5, 100.0, np.nextafter(100.0, 200.0))
    if kind == "sub-cent prices":
        close *= 1e-8
    spread = np.abs(rng.normal(0.0, 0.004, size)) * close
    high, low = close + np.where(steps == 0.0, 0.0, spread), close - np.where(steps == 0.0, 0.0, spread)
    volume = np.where(rng.random(size) < 0.1, 0.0, rng.gamma(2.0, 5.0, size))
    if kind == "idle bars":
        volume[500:600] = 0.0
        high[500:600] = low[500:600] = close[500:600] = close[499]
    return Bars(np.arange(size, dtype=np.int64) * 60_000, close.copy(), high, low, close, volume)


@pytest.mark.parametrize("kind", ["flat stretches", "ulp moves", "sub-cent prices", "idle bars"])
@pytest.mark.parametrize("family", FAMILIES)
def test_batch_matches_talib_on_guard_cases(family: str, kind: str) -> None:
    for label, ours, ref in FAMILIES[family](_synthetic(kind)):
        assert_matches(f"{kind}: {label}", ours, ref)


def test_roc_of_a_zero_price_is_zero_like_talib() -> None:
    close = np.array([0.0, 1.0, 2.0, 0.0, 4.0, 5.0])
    assert_matches("ROC(1)", batch.roc(close, 1), talib.ROC(close, 1))
    assert batch.roc(close, 1)[1] == 0.0


def test_macd_seeds_the_fast_ema_where_the_slow_one_starts_like_talib() -> None:
    close = 100.0 + np.cumsum(np.random.default_rng(3).normal(0.0, 1.0, 200))
    naive = talib.EMA(close, 12) - talib.EMA(close, 26)
    line = batch.macd(close)[0]

    assert_matches("MACD line", line, talib.MACD(close)[0])
    assert warmup(line) == 33
    assert np.abs(line - naive)[33:].max() > 1e-3, "a fast EMA seeded at bar 11 gives a different line"


# --- streaming == batch, and streaming against TA-Lib -------------------------------------------------------

STREAM_SPEC = FeatureSetSpec(indicators=(
    *DEFAULT_INDICATORS, EmaSpec(period=5), RsiSpec(period=2), BbandsSpec(period=10, nbdev=1.5),
    MacdSpec(fast=5, slow=35, signal=5), StochSpec(fastk=14, slowk=3, slowd=5), WillrSpec(period=50),
    RealizedVolSpec(period=30, periods_per_year=8760.0),
))


def talib_features(b: Bars) -> dict[str, np.ndarray]:
    """The TA-Lib reference for every feature of STREAM_SPEC that TA-Lib has."""
    h, lo, c, v = b.high, b.low, b.close, b.volume
    ref = {"sma_20": talib.SMA(c, 20), "ema_20": talib.EMA(c, 20), "ema_5": talib.EMA(c, 5),
           "rsi_14": talib.RSI(c, 14), "rsi_2": talib.RSI(c, 2), "willr_14": talib.WILLR(h, lo, c, 14),
           "willr_50": talib.WILLR(h, lo, c, 50), "atr_14": talib.ATR(h, lo, c, 14), "mfi_14": talib.MFI(h, lo, c, v),
           "obv": talib.OBV(c, v), "roc_10": talib.ROC(c, 10)}
    for key, args in (("macd_12_26_9", (12, 26, 9)), ("macd_5_35_5", (5, 35, 5))):
        ref.update(zip((f"{key}_line", f"{key}_signal", f"{key}_hist"), talib.MACD(c, *args), strict=True))
    for key, (fk, sk, sd) in (("stoch_5_3_3", (5, 3, 3)), ("stoch_14_3_5", (14, 3, 5))):
        slow = talib.STOCH(h, lo, c, fastk_period=fk, slowk_period=sk, slowd_period=sd)
        ref.update(zip((f"{key}_k", f"{key}_d"), slow, strict=True))
    for key, (p, dev) in (("bb_20_2", (20, 2.0)), ("bb_10_1.5", (10, 1.5))):
        ref.update(zip((f"{key}_upper", f"{key}_middle", f"{key}_lower"), talib.BBANDS(c, p, dev, dev), strict=True))
    return ref


def stream(df: pl.DataFrame, spec: FeatureSetSpec) -> dict[str, np.ndarray]:
    """Feed the frame to a FeatureEngine candle by candle; None becomes NaN."""
    engine = FeatureEngine(spec)
    rows = [engine.update(Candle(*row)) for row in df.select(OHLCV).iter_rows()]
    return {name: np.array([np.nan if r[name] is None else r[name] for r in rows]) for name in spec.feature_names}


def assert_stream_equals_batch(streamed: dict[str, np.ndarray], batched: pl.DataFrame) -> None:
    """Bit for bit, None and null included."""
    for name, values in streamed.items():
        expected = batched[name].fill_null(np.nan).to_numpy()
        differ = ~((values == expected) | (np.isnan(values) & np.isnan(expected)))
        assert not differ.any(), f"{name}: first difference at {int(np.argmax(differ))}"


@pytest.mark.parametrize("name", STREAMED_FILES)
def test_streaming_equals_batch_and_talib_on_real_candles(name: str) -> None:
    df = load(name)
    streamed = stream(df, STREAM_SPEC)

    assert_stream_equals_batch(streamed, compute_features(df, STREAM_SPEC))
    for feature, ref in talib_features(Bars.from_frame(df)).items():
        assert_matches(f"streamed {feature}", streamed[feature], ref)


def test_streaming_matches_talib_on_guard_cases() -> None:
    for kind in ("flat stretches", "ulp moves", "sub-cent prices", "idle bars"):
        b = _synthetic(kind)
        streamed = stream(pl.DataFrame(b._asdict()), STREAM_SPEC)
        for feature, ref in talib_features(b).items():
            assert_matches(f"{kind}: streamed {feature}", streamed[feature], ref)


# --- definitions of the indicators TA-Lib does not have ---------------------------------------------------------


def _frame(close: list[float], volume: list[float] | None = None, step_ms: int = 3_600_000) -> pl.DataFrame:
    c = np.array(close)
    return pl.DataFrame({"ts": np.arange(len(c), dtype=np.int64) * step_ms, "open": c, "high": c + 1.0,
                         "low": c - 1.0, "close": c, "volume": np.ones(len(c)) if volume is None else volume})


def test_bollinger_pctb_and_bandwidth_follow_the_talib_bands() -> None:
    close = 100.0 + np.cumsum(np.random.default_rng(5).normal(0.0, 1.0, 300))
    upper, middle, lower = talib.BBANDS(close, 20, 2.0, 2.0)
    _, _, _, pctb, bandwidth = batch.bollinger(close, 20, 2.0)

    assert_matches("%b", pctb, (close - lower) / (upper - lower))
    assert_matches("bandwidth", bandwidth, (upper - lower) / middle)


def test_keltner_is_the_ema_plus_minus_a_multiple_of_wilder_atr() -> None:
    b = Bars.from_frame(load("binance_ETHUSDT_1h.csv"))
    upper, middle, lower = compute_features(pl.DataFrame(b._asdict()), FeatureSetSpec(
        indicators=(KeltnerSpec(ema_period=20, atr_period=10, multiplier=1.5),), normalize=())).drop("ts")
    ema, atr = talib.EMA(b.close, 20), talib.ATR(b.high, b.low, b.close, 10)

    assert_matches("kc middle", middle.fill_null(np.nan).to_numpy(), ema)
    assert_matches("kc upper", upper.fill_null(np.nan).to_numpy(), ema + 1.5 * atr)
    assert_matches("kc lower", lower.fill_null(np.nan).to_numpy(), ema - 1.5 * atr)


def test_realized_volatility_is_the_sample_std_of_log_returns_annualised_on_request() -> None:
    close = 100.0 * np.exp(np.cumsum(np.random.default_rng(9).normal(0.0, 0.01, 200)))
    returns = np.log(close[1:] / close[:-1])
    expected = np.full(200, np.nan)
    expected[20:] = [np.std(returns[t - 20:t], ddof=1) for t in range(20, 200)]

    assert_matches("rv", batch.realized_volatility(close, 20), expected, rtol=1e-12)
    assert_matches("rv_ann", batch.realized_volatility(close, 20, 8760.0), expected * math.sqrt(8760.0), rtol=1e-12)


def test_ema_slope_is_the_relative_ema_change_per_bar() -> None:
    close = 100.0 + np.cumsum(np.random.default_rng(2).normal(0.0, 1.0, 100))
    ema = talib.EMA(close, 10)
    expected = np.full(100, np.nan)
    expected[13:] = (ema[13:] / ema[9:-4] - 1.0) / 4

    assert_matches("slope", batch.ema_slope(batch.ema(close, 10), 4), expected)


def test_rolling_vwap_weights_the_typical_price_by_volume_and_holds_through_idle_windows() -> None:
    df = _frame([10.0, 11.0, 12.0, 13.0, 14.0, 15.0], volume=[1.0, 3.0, 0.0, 0.0, 0.0, 2.0])
    vwap = compute_features(df, FeatureSetSpec(indicators=(VwapSpec(period=2),), normalize=()))["vwap_2"].to_list()

    assert vwap == [None, (10 * 1 + 11 * 3) / 4, 11.0, 11.0, 11.0, 15.0]


def test_session_vwap_restarts_with_each_utc_day() -> None:
    df = _frame([10.0, 20.0, 30.0, 40.0], volume=[1.0, 1.0, 1.0, 3.0], step_ms=12 * 3_600_000)
    vwap = compute_features(df, FeatureSetSpec(indicators=(SessionVwapSpec(),), normalize=()))

    assert vwap["vwap_session_24h"].to_list() == [10.0, 15.0, 30.0, (30.0 + 120.0) / 4]


def test_close_over_ema_keeps_its_name_for_the_20_bar_ema() -> None:
    assert CloseOverEmaSpec().names() == ("close_over_ema",)
    assert CloseOverEmaSpec(period=50).names() == ("close_over_ema_50",)
    assert {"rsi_14", "ema_20", "close_over_ema"} <= set(FeatureSetSpec().feature_names)


def test_a_fibonacci_swing_counts_only_once_confirm_bars_have_closed_after_it() -> None:
    highs = [5.0, 6.0, 9.0, 7.0, 6.0, 5.0, 4.0, 3.0]
    lows = [1.0, 2.0, 4.0, 3.0, 2.0, 1.5, 0.5, 0.8]
    fib = FibonacciRetracement(confirm=2, levels=(0.5,))
    out = [fib.update(Candle(i * 60_000, h, h, lo, lo, 1.0)) for i, (h, lo) in enumerate(zip(highs, lows,
                                                                                            strict=True))]

    # Bar 2's high (9) is a swing from bar 4 on. Bars 0 and 1 lack two bars before them, so the first swing low
    # is bar 6 (0.5, the lowest of bars 4..8): unknown until bar 8 closes, although it is already the minimum.
    assert out == [None] * 8
    out.append(fib.update(Candle(8 * 60_000, 3.0, 3.0, 0.9, 0.9, 1.0)))
    assert out[8] == pytest.approx((0.5 + 0.5 * (9.0 - 0.5),))  # down leg (high first): measured up from the low


# --- no look-ahead ---------------------------------------------------------------------------------------------

SMALL_SPEC = FeatureSetSpec(
    indicators=(SmaSpec(period=3), EmaSpec(period=4), CloseOverEmaSpec(period=4), MacdSpec(fast=2, slow=5, signal=3),
                RsiSpec(period=3), StochSpec(fastk=3, slowk=2, slowd=2), WillrSpec(period=4), AtrSpec(period=3),
                BbandsSpec(period=4, nbdev=2.0), KeltnerSpec(ema_period=4, atr_period=3), MfiSpec(period=3),
                ObvSpec(), RocSpec(period=2), EmaSlopeSpec(period=3, lookback=2), RealizedVolSpec(period=3),
                VwapSpec(period=3), SessionVwapSpec(session_hours=1), FibSpec(confirm=2)),
    normalize=(NormalizeSpec(feature="obv", window=5), NormalizeSpec(feature="ema_4", method="minmax", window=4)),
)


@st.composite
def candles(draw: st.DrawFn, min_size: int, max_size: int) -> pl.DataFrame:
    size = draw(st.integers(min_size, max_size))
    moves = draw(st.lists(st.sampled_from([0.0, 0.0, -0.02, -0.005, 0.003, 0.01, 0.05]), min_size=size,
                          max_size=size))
    close = 50.0 * np.exp(np.cumsum(moves))
    wicks = np.array(draw(st.lists(st.floats(0.0, 0.02), min_size=size, max_size=size)))
    volume = draw(st.lists(st.sampled_from([0.0, 0.5, 1.0, 7.25]), min_size=size, max_size=size))
    return pl.DataFrame({"ts": np.arange(size, dtype=np.int64) * 900_000, "open": close, "high": close * (1 + wicks),
                         "low": close * (1 - wicks), "close": close, "volume": volume})


def in_batch(df: pl.DataFrame, spec: FeatureSetSpec) -> dict[str, np.ndarray]:
    features = compute_features(df, spec, threads=1)
    return {name: features[name].fill_null(np.nan).to_numpy() for name in spec.feature_names}


def head(columns: dict[str, np.ndarray], rows: int) -> dict[str, list[float]]:
    """The first ``rows`` values of every column, NaN spelled -1e300 so that ``==`` compares it."""
    return {name: np.nan_to_num(values[:rows], nan=-1e300).tolist() for name, values in columns.items()}


@seed(20240601)
@settings(max_examples=40, deadline=None)
@given(series=candles(2, 300), future=candles(1, 140), data=st.data())
def test_values_up_to_t_never_depend_on_later_candles(series: pl.DataFrame, future: pl.DataFrame,
                                                      data: st.DataObject) -> None:
    t = data.draw(st.integers(0, len(series) - 1), label="t")
    prefix = series.head(t + 1)
    appended = pl.concat([series, future.with_columns(pl.col("ts") + len(series) * 900_000)])
    altered = pl.concat([prefix, future.with_columns(pl.col("ts") + (t + 1) * 900_000)])  # rows after t replaced

    for compute in (in_batch, stream):
        from_prefix, from_appended, from_altered = (head(compute(df, SMALL_SPEC), t + 1)
                                                    for df in (prefix, appended, altered))
        assert from_prefix == from_appended == from_altered, compute.__name__
    assert_stream_equals_batch(stream(appended, SMALL_SPEC), compute_features(appended, SMALL_SPEC, threads=1))
