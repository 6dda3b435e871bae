"""Streaming indicators agree with TA-Lib value for value (warm-up included) and never look ahead."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import talib
from hypothesis import given, seed, settings
from hypothesis import strategies as st
from quorum.indicators.streaming import EMA, RSI

REPO_ROOT = Path(__file__).resolve().parents[2]
DATA_DIR = Path(os.environ.get("QUORUM_DATA_DIR", REPO_ROOT.parent / "shared" / "data"))
PERIODS = (2, 5, 9, 14, 20, 50)
RTOL = 1e-9

Indicator = Callable[[int], EMA | RSI]
PAIRS: dict[str, tuple[Indicator, Callable[..., np.ndarray]]] = {
    "EMA": (EMA, talib.EMA),
    "RSI": (RSI, talib.RSI),
}


def stream(make: Indicator, period: int, xs: np.ndarray) -> np.ndarray:
    """Feed the series one value at a time; warm-up ``None`` becomes NaN as in TA-Lib."""
    ind = make(period)
    return np.array([np.nan if (v := ind.update(float(x))) is None else v for x in xs], dtype=np.float64)


def warmup(values: np.ndarray) -> int:
    return int(np.argmax(~np.isnan(values))) if (~np.isnan(values)).any() else len(values)


def assert_matches_talib(name: str, period: int, xs: np.ndarray) -> None:
    make, reference = PAIRS[name]
    ours, ref = stream(make, period, xs), reference(xs, timeperiod=period)

    assert warmup(ours) == warmup(ref), f"{name}({period}) warm-up length"
    assert warmup(ref) < len(xs), "the series is too short to compare any value"
    np.testing.assert_allclose(ours, ref, rtol=RTOL, atol=0, equal_nan=True, err_msg=f"{name}({period})")


@pytest.fixture(scope="module")
def random_walk() -> np.ndarray:
    rng = np.random.default_rng(20240101)
    return 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.01, 2000)))


@pytest.mark.parametrize("period", PERIODS)
@pytest.mark.parametrize("name", PAIRS)
def test_indicator_matches_talib_on_a_seeded_random_walk(name: str, period: int, random_walk: np.ndarray) -> None:
    assert_matches_talib(name, period, random_walk)


@pytest.mark.parametrize("period", PERIODS)
@pytest.mark.parametrize("name", PAIRS)
def test_indicator_matches_talib_on_a_walk_with_flat_stretches(name: str, period: int) -> None:
    rng = np.random.default_rng(period)
    steps = np.where(rng.random(600) < 0.3, 0.0, rng.normal(0.0, 0.5, 600))
    assert_matches_talib(name, period, 50.0 + np.cumsum(steps))


@pytest.fixture(scope="module", params=["binance_BTCUSDT_1h.csv", "binance_ETHUSDT_1m.csv"])
def real_closes(request: pytest.FixtureRequest) -> np.ndarray:
    path = DATA_DIR / "ohlcv" / request.param
    if not path.is_file():
        pytest.skip(f"market data {path} not found: set QUORUM_DATA_DIR to the shared data folder")
    closes = pl.read_csv(path, columns=["close"], schema_overrides={"close": pl.Float64})["close"].to_numpy()
    assert len(closes) > 1000 and np.isfinite(closes).all()
    return closes


@pytest.mark.parametrize("period", PERIODS)
@pytest.mark.parametrize("name", PAIRS)
def test_indicator_matches_talib_on_real_closes(name: str, period: int, real_closes: np.ndarray) -> None:
    assert_matches_talib(name, period, real_closes)


@pytest.mark.parametrize("period", (1, 5, 14))
def test_ema_warm_up_is_period_minus_one_then_seeds_with_the_sma(period: int) -> None:
    xs = [float(i) for i in range(1, 40)]
    ema = EMA(period)
    out = [ema.update(x) for x in xs]

    assert out[: period - 1] == [None] * (period - 1)
    assert out[period - 1] == pytest.approx(sum(xs[:period]) / period, rel=1e-15)


@pytest.mark.parametrize("period", (0, -3))
def test_ema_refuses_a_non_positive_period(period: int) -> None:
    with pytest.raises(ValueError, match="period"):
        EMA(period)


def test_rsi_of_a_flat_series_is_zero_like_talib() -> None:
    xs = np.full(40, 123.45)
    ours = stream(RSI, 14, xs)

    assert warmup(ours) == 14
    assert (ours[14:] == 0.0).all()
    assert (talib.RSI(xs, timeperiod=14)[14:] == 0.0).all()


def test_rsi_of_a_rising_series_is_100_and_of_a_falling_series_is_0() -> None:
    up = stream(RSI, 14, np.arange(1.0, 40.0))
    down = stream(RSI, 14, np.arange(40.0, 1.0, -1.0))

    assert (up[14:] == 100.0).all()
    assert (down[14:] == 0.0).all()


# --- no look-ahead ------------------------------------------------------------------------------------

prices = st.floats(min_value=0.01, max_value=1e6, allow_nan=False, allow_infinity=False)


@seed(1234)
@settings(max_examples=200, deadline=None)
@given(series=st.lists(prices, min_size=1, max_size=80), future=st.lists(prices, min_size=1, max_size=40),
       period=st.integers(min_value=1, max_value=20), data=st.data())
def test_values_up_to_t_do_not_depend_on_later_points(series: list[float], future: list[float], period: int,
                                                      data: st.DataObject) -> None:
    t = data.draw(st.integers(min_value=0, max_value=len(series) - 1), label="t")
    prefix = series[: t + 1]
    altered = prefix + future  # everything after t replaced

    for make in (EMA, RSI):
        a, b, c = make(period), make(period), make(period)
        from_prefix = [a.update(x) for x in prefix]
        from_full = [b.update(x) for x in series][: t + 1]
        from_altered = [c.update(x) for x in altered][: t + 1]
        assert from_prefix == from_full == from_altered, make.__name__

