"""Higher-timeframe features reach lower-timeframe rows only once their candle has closed."""

from __future__ import annotations

import polars as pl
import pytest
from quorum.indicators import FeatureSetSpec, compute_features, join_closed, ohlcv_frame, resample
from quorum.marketdata.files import read_rows

from tests.support import data_file

MINUTE, FIVE, HOUR = 60_000, 300_000, 3_600_000


@pytest.fixture(scope="module")
def minutes() -> pl.DataFrame:
    return ohlcv_frame(read_rows(data_file("ohlcv", "binance_BTCUSDT_1m.csv")))


def five_minute_rows_with_hourly_features(minutes: pl.DataFrame) -> pl.DataFrame:
    spec = FeatureSetSpec()
    return join_closed(compute_features(resample(minutes, "5m"), spec), compute_features(resample(minutes, "1h"), spec),
                       "1h")


def test_resample_takes_first_open_extreme_high_and_low_last_close_and_summed_volume() -> None:
    ts = [HOUR + i * MINUTE for i in (0, 1, 59, 60)]
    df = pl.DataFrame({"ts": ts, "open": [1.0, 2.0, 3.0, 4.0], "high": [5.0, 9.0, 6.0, 7.0],
                       "low": [0.5, 0.7, 0.2, 3.0], "close": [2.0, 3.0, 4.0, 5.0], "volume": [1.0, 2.0, 3.0, 4.0]})

    assert resample(df, "1h").rows() == [(HOUR, 1.0, 9.0, 0.2, 4.0, 6.0), (2 * HOUR, 4.0, 7.0, 3.0, 5.0, 4.0)]


def test_the_10_00_hour_is_visible_at_11_00_and_not_at_10_55(minutes: pl.DataFrame) -> None:
    joined = five_minute_rows_with_hourly_features(minutes)
    ten = joined.filter(pl.col("ts") % 86_400_000 == 10 * HOUR)["ts"][0]  # the first 10:00 in the data
    row = {r["ts"]: r for r in joined.filter(pl.col("ts").is_between(ten + 55 * MINUTE, ten + HOUR)).iter_rows(
        named=True)}

    assert row[ten + 55 * MINUTE]["ts_1h"] == ten - HOUR
    assert row[ten + HOUR]["ts_1h"] == ten


def test_every_row_carries_the_features_of_the_last_closed_hour(minutes: pl.DataFrame) -> None:
    joined = five_minute_rows_with_hourly_features(minutes)
    hourly = compute_features(resample(minutes, "1h"), FeatureSetSpec())
    expected_hour = (pl.col("ts") // HOUR) * HOUR - HOUR  # the 1m file has no gaps

    first_hour = hourly["ts"][0]
    assert joined.filter(pl.col("ts") < first_hour + HOUR)["ts_1h"].null_count() == joined.filter(
        pl.col("ts") < first_hour + HOUR).height
    later = joined.filter(pl.col("ts") >= first_hour + HOUR)
    assert (later["ts_1h"] == later.select(expected_hour)["ts"]).all()
    looked_up = later.select("ts_1h").join(hourly, left_on="ts_1h", right_on="ts", how="left")
    for name in ("rsi_14", "macd_12_26_9_hist", "fib_0.618", "obv_z100"):
        assert later[f"{name}_1h"].equals(looked_up[name].rename(f"{name}_1h")), name


def test_changing_minutes_from_t_on_leaves_every_row_closed_before_t_unchanged(minutes: pl.DataFrame) -> None:
    cut = minutes["ts"][20_000] + 37 * MINUTE  # mid-hour, mid-5m-candle
    changed = minutes.with_columns(
        [pl.when(pl.col("ts") >= cut).then(pl.col(c) * 1.5).otherwise(pl.col(c)) for c in ("open", "high", "low",
                                                                                          "close", "volume")])
    before, after = (five_minute_rows_with_hourly_features(df) for df in (minutes, changed))
    closed = pl.col("ts") + FIVE <= cut

    assert before.filter(closed).equals(after.filter(closed))
    assert not before.filter(~closed).head(1).equals(after.filter(~closed).head(1)), "the change shows after t"
