"""Training datasets: the features the service streams, labels h bars ahead, stable hashes, no look-ahead."""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import numpy as np
import polars as pl
import pytest
from pydantic import ValidationError
from quorum.indicators import FeatureEngine, FeatureSetSpec, SmaSpec, compute_features, ohlcv_frame, resample
from quorum.indicators.spec import DEFAULT_INDICATORS
from quorum.learning.dataset import (
    DatasetSpec,
    Gap,
    LeakageError,
    build_dataset,
    frames_from_files,
    leakage_check,
)
from quorum.marketdata.files import candles, infer_series, read_rows
from quorum.marketdata.validation import Rejections

from tests.support import data_file

HOUR = 3_600_000
T0 = datetime(2024, 1, 1, tzinfo=UTC)
T0_MS = int(T0.timestamp()) * 1000
SMA2 = FeatureSetSpec(indicators=(SmaSpec(period=2),), normalize=())
# The services' set without the trend's 480-bar EMA: the same indicators with a warm-up that small frames (and the
# daily bars of two years) get out of.
SHORT = FeatureSetSpec(indicators=tuple(i for i in DEFAULT_INDICATORS if getattr(i, "period", None) != 480))
MECHANICS: dict[str, Any] = {"feature_set": SHORT, "scale_free": False}  # every feature: the cases test mechanics


def bars(closes: list[float] | np.ndarray, start_ms: int = T0_MS, ts: list[int] | None = None) -> pl.DataFrame:
    """Hourly candles around the given closes (high/low 1% off, volume from the index)."""
    closes = np.asarray(closes, dtype=np.float64)
    stamps = ts if ts is not None else [start_ms + i * HOUR for i in range(len(closes))]
    return pl.DataFrame({"ts": pl.Series(stamps, dtype=pl.Int64), "open": closes, "high": closes * 1.01,
                         "low": closes * 0.99, "close": closes, "volume": 1.0 + np.arange(len(closes)) % 7})


def random_walk(n: int, seed: int) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    return bars(100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.01, n))))


def next_close(df: pl.DataFrame) -> pl.DataFrame:
    return df.with_columns(pl.col("close").shift(-1).alias("next_close"))


def centred_mean(df: pl.DataFrame) -> pl.DataFrame:
    return df.with_columns(pl.col("close").rolling_mean(5, center=True).alias("centred_mean"))


def over_series_mean(df: pl.DataFrame) -> pl.DataFrame:
    return df.with_columns((pl.col("close") / pl.col("close").mean()).alias("over_series_mean"))


def previous_return(df: pl.DataFrame) -> pl.DataFrame:
    return df.with_columns((pl.col("close") / pl.col("close").shift(1)).log().alias("previous_return"))


@pytest.fixture(scope="module")
def real_two_years() -> dict[str, pl.DataFrame]:
    return frames_from_files([data_file("ohlcv", "binance_BTCUSDT_1h.csv"), data_file("ohlcv",
                                                                                       "binance_ETHUSDT_1h.csv")])


TWO_YEARS = DatasetSpec(**MECHANICS, start=datetime(2022, 1, 1, tzinfo=UTC), end=datetime(2024, 1, 1, tzinfo=UTC),
                        lags=(1, 3),
                        extra_timeframes=("4h", "1d"), symbol_feature=True)


# --- what the rows hold ----------------------------------------------------------------------------------------


def test_training_features_equal_what_the_streaming_engine_computes_for_the_same_real_candles() -> None:
    path = data_file("ohlcv", "binance_BTCUSDT_1h.csv")
    rows = read_rows(path).head(1000)
    spec = FeatureSetSpec()  # the services' own
    engine = FeatureEngine(spec)
    closed = list(candles(rows, infer_series(path), now=datetime(2030, 1, 1, tzinfo=UTC), rejections=Rejections()))
    streamed = {int(c.ts.timestamp()) * 1000: engine.update(c) for c in closed}

    ds = build_dataset({"BTC/USDT": ohlcv_frame(rows)}, DatasetSpec(symbols=("BTC/USDT",), feature_set=spec,
                                                                    scale_free=False, lags=(1,)))

    assert len(closed) == 1000 and ds.frame.height > 400
    stamps = sorted(streamed)
    for row in ds.frame.iter_rows(named=True):
        expected, before = streamed[row["ts"]], streamed[stamps[stamps.index(row["ts"]) - 1]]
        for name in spec.feature_names:
            assert row[name] == expected[name], (row["ts"], name)
            assert row[f"{name}_lag1"] == before[name], (row["ts"], name)


def test_labels_are_the_log_return_horizon_bars_ahead_and_its_sign_and_warm_up_rows_are_dropped() -> None:
    closes = [100.0, 110.0, 99.0, 105.0, 98.0, 105.0, 120.0]
    spec = DatasetSpec(symbols=("BTC/USDT",), feature_set=SMA2, scale_free=False, horizon=2)

    frame = build_dataset({"BTC/USDT": bars(closes)}, spec).frame

    # row 0 has no SMA(2) yet; rows 5 and 6 have no close two bars ahead
    assert frame["ts"].to_list() == [T0_MS + i * HOUR for i in (1, 2, 3, 4)]
    assert frame["sma_2"].to_list() == [105.0, 104.5, 102.0, 101.5]
    assert frame["label_return"].to_list() == [math.log(105 / 110), math.log(98 / 99), 0.0, math.log(120 / 98)]
    assert frame["label_up"].to_list() == [0, 0, 0, 1]
    assert frame.schema["label_up"] == pl.Int8 and frame.schema["label_return"] == pl.Float64


def test_a_row_whose_label_candle_falls_in_a_gap_is_dropped_and_the_gap_is_reported() -> None:
    ts = [T0_MS + i * HOUR for i in (0, 1, 2, 5, 6, 7)]  # 03:00 and 04:00 missing
    spec = DatasetSpec(symbols=("BTC/USDT",), feature_set=SMA2, scale_free=False)

    ds = build_dataset({"BTC/USDT": bars([10.0, 11.0, 12.0, 13.0, 14.0, 15.0], ts=ts)}, spec)

    assert ds.frame["ts"].to_list() == [ts[1], ts[3], ts[4]]  # ts[2]'s next hour is missing, ts[5] is the last
    assert ds.frame["label_return"].to_list() == [math.log(12 / 11), math.log(14 / 13), math.log(15 / 14)]
    assert ds.gaps == (Gap("BTC/USDT", T0 + timedelta(hours=2), 2),)


def test_lags_hold_the_feature_k_bars_earlier() -> None:
    spec = DatasetSpec(**MECHANICS, symbols=("BTC/USDT",), lags=(1, 4))

    frame = build_dataset({"BTC/USDT": random_walk(500, seed=1)}, spec).frame

    for k in (1, 4):
        assert frame[f"rsi_14_lag{k}"][k:].to_list() == frame["rsi_14"][:-k].to_list()


def test_higher_timeframe_features_come_from_the_last_closed_higher_bar() -> None:
    candles_1h = random_walk(24 * 40, seed=2)
    spec = DatasetSpec(**MECHANICS, symbols=("BTC/USDT",), extra_timeframes=("4h",))
    four_hourly = compute_features(resample(candles_1h, "4h"), spec.feature_set, threads=1)

    frame = build_dataset({"BTC/USDT": candles_1h}, spec).frame
    closed_bar = frame.select((pl.col("ts") // (4 * HOUR) * (4 * HOUR) - 4 * HOUR).alias("ts"))
    expected = closed_bar.join(four_hourly, on="ts", how="left", maintain_order="left")

    assert frame.height > 0
    for name in ("rsi_14", "macd_12_26_9_hist", "obv_z100"):
        assert frame[f"4h_{name}"].to_list() == expected[name].to_list(), name


def test_rows_are_sorted_by_time_then_symbol_with_the_symbol_code_as_a_feature() -> None:
    spec = DatasetSpec(symbols=("ETH/USDT", "BTC/USDT"), feature_set=SMA2, scale_free=False, symbol_feature=True)

    ds = build_dataset({"BTC/USDT": bars([1.0, 2.0, 3.0, 4.0]), "ETH/USDT": bars([5.0, 6.0, 7.0, 8.0])}, spec)

    assert ds.frame.select("ts", "symbol", "symbol_code").rows() == [
        (T0_MS + h * HOUR, s, code) for h in (1, 2) for s, code in (("BTC/USDT", 1.0), ("ETH/USDT", 0.0))]
    assert ds.feature_columns == ("sma_2", "symbol_code")
    assert ds.feature_matrix().shape == (4, 2)


def test_start_keeps_earlier_candles_for_warm_up_and_end_cuts_candles_before_labels_are_made() -> None:
    candles_1h = random_walk(600, seed=3)
    start, end = T0 + timedelta(hours=300), T0 + timedelta(hours=500)
    whole = build_dataset({"BTC/USDT": candles_1h}, DatasetSpec(**MECHANICS, symbols=("BTC/USDT",))).frame

    frame = build_dataset({"BTC/USDT": candles_1h},
                          DatasetSpec(**MECHANICS, symbols=("BTC/USDT",), start=start, end=end)).frame

    window = whole.filter(pl.col("ts").is_between(T0_MS + 300 * HOUR, T0_MS + 498 * HOUR))
    assert frame["ts"].to_list() == [T0_MS + h * HOUR for h in range(300, 499)]  # 499's label opens at end
    assert frame.equals(window)


def test_a_transform_adds_its_columns_after_the_spec_features() -> None:
    spec = DatasetSpec(symbols=("BTC/USDT",), feature_set=SMA2, scale_free=False)

    ds = build_dataset({"BTC/USDT": bars([10.0, 11.0, 12.0, 13.0])}, spec, transforms=[previous_return])

    assert ds.feature_columns == ("sma_2", "previous_return")
    assert ds.frame["previous_return"].to_list() == [math.log(11 / 10), math.log(12 / 11)]


# --- hashes ----------------------------------------------------------------------------------------------------


def test_content_hash_is_stable_across_builds_and_chunking_and_changes_with_one_close() -> None:
    candles_1h = random_walk(500, seed=4)
    spec = DatasetSpec(**MECHANICS, symbols=("BTC/USDT",))
    chunked = pl.concat([candles_1h[:123], candles_1h[123:321], candles_1h[321:]], rechunk=False)
    closes = candles_1h["close"].to_list()
    closes[400] *= 1.0001
    changed = candles_1h.with_columns(pl.Series("close", closes))

    first, again, from_chunks, other = (build_dataset({"BTC/USDT": df}, spec).content_hash
                                        for df in (candles_1h, candles_1h, chunked, changed))

    assert chunked.n_chunks() == 3
    assert first == again == from_chunks
    assert other != first
    assert len(first) == 64 and int(first, 16) >= 0


def test_spec_hash_is_stable_names_the_same_instant_alike_and_changes_with_any_field() -> None:
    base = DatasetSpec(**MECHANICS, start=T0)
    same_instant = DatasetSpec(**MECHANICS, start=T0.astimezone(timezone(timedelta(hours=2))))

    assert base.hash() == DatasetSpec(**MECHANICS, start=T0).hash() == same_instant.hash()
    assert base.hash().startswith("ds1-") and len(base.hash()) == 16
    others = [base.model_copy(update={"horizon": 2}), DatasetSpec(**MECHANICS, start=T0, lags=(1,)),
              DatasetSpec(start=T0, feature_set=SMA2, scale_free=False),
              DatasetSpec(**MECHANICS, start=T0, symbol_feature=True)]
    assert len({base.hash(), *(o.hash() for o in others)}) == 5


# --- leakage ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("transform", [next_close, centred_mean, over_series_mean])
def test_leakage_check_names_a_feature_that_reads_future_candles(transform: Callable[..., Any]) -> None:
    spec = DatasetSpec(**MECHANICS, symbols=("BTC/USDT",), lags=(1,))

    leaking = leakage_check({"BTC/USDT": random_walk(400, seed=5)}, spec, transforms=[transform])

    assert leaking == [transform.__name__]


def test_build_refuses_a_planted_next_close_feature_naming_it_and_the_probe_time() -> None:
    spec = DatasetSpec(**MECHANICS, symbols=("BTC/USDT",))
    candles_1h = random_walk(400, seed=6)

    with pytest.raises(LeakageError, match="next_close") as caught:
        build_dataset({"BTC/USDT": candles_1h}, spec, transforms=[next_close])

    assert caught.value.columns == ("next_close",)
    assert caught.value.symbol == "BTC/USDT"
    assert T0 <= caught.value.probe < T0 + timedelta(hours=400)
    assert caught.value.probe.isoformat() in str(caught.value)


def test_an_honest_transform_passes_the_leakage_check() -> None:
    spec = DatasetSpec(**MECHANICS, symbols=("BTC/USDT",), lags=(2,), extra_timeframes=("4h",))

    assert leakage_check({"BTC/USDT": random_walk(800, seed=7)}, spec, transforms=[previous_return], probes=5) == []


def test_two_years_of_real_btc_and_eth_with_lags_and_higher_timeframes_build_without_leaks(
        real_two_years: dict[str, pl.DataFrame]) -> None:
    ds = build_dataset(real_two_years, TWO_YEARS)
    frame = ds.frame

    assert leakage_check(real_two_years, TWO_YEARS, probes=5, seed=11) == []
    assert frame.height > 34_000 and set(frame["symbol"].unique()) == {"BTC/USDT", "ETH/USDT"}
    assert frame["ts"].min() == int(TWO_YEARS.start.timestamp()) * 1000  # type: ignore[union-attr]
    assert frame["ts"].max() < int(TWO_YEARS.end.timestamp()) * 1000 - HOUR  # type: ignore[union-attr]
    assert frame.select(ds.feature_columns).null_count().sum_horizontal().item() == 0
    assert {"rsi_14_lag3", "4h_rsi_14", "1d_obv_z100", "symbol_code"} <= set(ds.feature_columns)
    assert frame.select(pl.struct("ts", "symbol").is_unique().all()).item()


# --- bad input -------------------------------------------------------------------------------------------------


def _swap_two_rows(df: pl.DataFrame) -> pl.DataFrame:
    return pl.concat([df[:10], df[11:12], df[10:11], df[12:]])


def _close_at(df: pl.DataFrame, value: float) -> pl.DataFrame:
    closes = df["close"].to_list()
    closes[20] = value
    return df.with_columns(pl.Series("close", closes))


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda df: pl.concat([df[:10], df[9:]]), "duplicate"),
    (_swap_two_rows, "unsorted"),
    (lambda df: _close_at(df, 0.0), "close 0.0 at .* not a finite positive"),
    (lambda df: _close_at(df, -3.0), "close -3.0"),
    (lambda df: _close_at(df, float("nan")), "close nan"),
    (lambda df: df.with_columns(pl.col("ts") + 60_000), "does not open on the 1h grid"),
    (lambda df: df.drop("volume"), r"lack columns \['volume'\]"),
    (lambda df: df.head(30), "30 candles are too few for the feature set's warm-up"),
])
def test_bad_candles_are_refused_naming_the_symbol_and_what_is_wrong(mutate: Callable[[pl.DataFrame], pl.DataFrame],
                                                                      message: str) -> None:
    spec = DatasetSpec(**MECHANICS, symbols=("BTC/USDT",))

    with pytest.raises(ValueError, match=f"BTC/USDT: .*{message}"):
        build_dataset({"BTC/USDT": mutate(random_walk(300, seed=8))}, spec)


def test_a_symbol_without_candles_is_refused() -> None:
    with pytest.raises(ValueError, match=r"no candles for ETH/USDT; got candles for \['BTC/USDT'\]"):
        build_dataset({"BTC/USDT": random_walk(300, seed=9)}, DatasetSpec(**MECHANICS))


def test_a_transform_that_drops_rows_is_refused() -> None:
    with pytest.raises(ValueError, match="must return the frame it got"):
        build_dataset({"BTC/USDT": random_walk(300, seed=9)}, DatasetSpec(**MECHANICS, symbols=("BTC/USDT",)),
                      transforms=[lambda df: df.head(10)])


def test_a_window_without_rows_is_refused() -> None:
    spec = DatasetSpec(**MECHANICS, symbols=("BTC/USDT",), start=T0 + timedelta(days=365))

    with pytest.raises(ValueError, match="no complete rows at or after start"):
        build_dataset({"BTC/USDT": random_walk(300, seed=9)}, spec)


@pytest.mark.parametrize(("fields", "message"), [
    ({"symbols": ()}, "at least 1 item"),
    ({"symbols": ("BTC/USDT", "BTC/USDT")}, "duplicate symbols"),
    ({"timeframe": "1x"}, "not a timeframe"),
    ({"lags": (0,)}, "lags must be >= 1"),
    ({"horizon": 0}, "greater than or equal to 1"),
    ({"start": datetime(2024, 1, 1)}, "no time zone"),
    ({"start": T0, "end": T0}, "must be before end"),
    ({"extra_timeframes": ("90m",)}, "must be a multiple of the timeframe"),
    ({"extra_timeframes": ("30m",)}, "must be a multiple of the timeframe"),
    ({"extra_timeframes": ("1w",)}, "weekly bars are not supported"),
    ({"extra_timeframes": ("4h", "4h")}, "duplicate extra timeframes"),
    ({"horizons": 2}, "Extra inputs are not permitted"),
])
def test_a_bad_spec_is_refused_with_a_message_naming_the_field(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        DatasetSpec(**MECHANICS, **fields)


# --- files -----------------------------------------------------------------------------------------------------


def test_frames_from_files_key_each_file_by_the_symbol_its_name_says(real_two_years: dict[str, pl.DataFrame]) -> None:
    assert sorted(real_two_years) == ["BTC/USDT", "ETH/USDT"]
    assert real_two_years["BTC/USDT"].schema == pl.Schema({"ts": pl.Int64, **{c: pl.Float64 for c in (
        "open", "high", "low", "close", "volume")}})
    assert real_two_years["BTC/USDT"].height == 24_016


def test_frames_from_files_refuse_an_unnamed_file_and_two_files_of_one_symbol(tmp_path: Any) -> None:
    unnamed = tmp_path / "candles.csv"
    unnamed.write_text("ts,open,high,low,close,volume\n")

    with pytest.raises(ValueError, match="the name does not say the symbol"):
        frames_from_files([unnamed])
    with pytest.raises(ValueError, match="both hold BTC/USDT"):
        frames_from_files([data_file("ohlcv", "binance_BTCUSDT_1h.csv"), data_file("ohlcv", "binance_BTCUSDT_1m.csv")])


def test_by_default_the_dataset_leaves_out_features_that_scale_with_the_price_level() -> None:
    spec = DatasetSpec(symbols=("BTC/USDT",), lags=(1,), extra_timeframes=("4h",))

    columns = spec.base_columns()

    assert {"rsi_14", "bb_20_2_pctb", "obv_z100", "atr_14_z100", "close_over_ema_480", "rsi_14_lag1",
            "4h_rsi_14"} <= set(columns)
    assert not {"sma_20", "ema_20", "bb_20_2_upper", "atr_14", "obv", "vwap_20", "fib_0.5", "macd_12_26_9_line",
                "sma_20_lag1", "4h_obv"} & set(columns)
    assert set(spec.model_copy(update={"scale_free": False}).base_features) == set(FeatureSetSpec().feature_names)
