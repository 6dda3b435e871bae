"""Market regimes: the rule per regime, labels that never read the future, and the learned regime predictor."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from quorum.indicators import FeatureSetSpec, compute_features, ohlcv_frame
from quorum.indicators.decide import FeaturesConfig
from quorum.learning.dataset import DatasetSpec, build_dataset, frames_from_files
from quorum.learning.regime import (
    REGIME_FEATURES,
    REGIMES,
    Regime,
    RegimeClassifier,
    RegimeRule,
    regime_labels,
    regime_of,
    regime_targets,
)
from quorum.marketdata.files import read_rows

from tests.support import data_file

HOUR_MS = 3_600_000


def row(distance: float = 0.0, slope: float = 0.0, atr_z: float = 0.0, rv: float = 0.005) -> dict[str, float | None]:
    return {"close_over_ema_480": distance, "ema_slope_480_60": slope, "atr_14_z100": atr_z, "rv_20": rv}


# --- the rule -------------------------------------------------------------------------------------------------

def test_the_rule_reads_only_features_the_default_feature_set_publishes() -> None:
    assert set(REGIME_FEATURES) <= set(FeaturesConfig().feature_set.feature_names)


@pytest.mark.parametrize(("values", "expected"), [
    (row(distance=0.05, slope=3e-4), Regime.TRENDING_UP),
    (row(distance=-0.05, slope=-3e-4), Regime.TRENDING_DOWN),
    (row(distance=0.01, slope=3e-4), Regime.RANGING),  # close too near the EMA
    (row(distance=0.05, slope=5e-5), Regime.RANGING),  # EMA too flat
    (row(distance=0.05, slope=-3e-4), Regime.RANGING),  # above a falling EMA: no trend either way
    (row(atr_z=2.5), Regime.HIGH_VOLATILITY),
    (row(rv=0.03), Regime.HIGH_VOLATILITY),
])
def test_each_regime_follows_from_its_thresholds(values: dict[str, float | None], expected: Regime) -> None:
    assert regime_of(values, RegimeRule()) is expected


def test_high_volatility_takes_precedence_over_a_trend() -> None:
    assert regime_of(row(distance=0.1, slope=5e-4, atr_z=3.0)) is Regime.HIGH_VOLATILITY


def test_thresholds_are_the_rules_own() -> None:
    values = row(distance=0.05, slope=3e-4)

    assert regime_of(values, RegimeRule(distance_min=0.1)) is Regime.RANGING
    assert regime_of(values, RegimeRule(slope_min=5e-4)) is Regime.RANGING


@pytest.mark.parametrize("missing", REGIME_FEATURES)
def test_a_feature_warming_up_gives_no_regime(missing: str) -> None:
    for warming in (None, math.nan):
        assert regime_of({**row(distance=0.05, slope=3e-4), missing: warming}) is None
    assert regime_of({k: v for k, v in row().items() if k != missing}) is None


def test_without_a_realized_volatility_limit_the_rule_does_not_need_it() -> None:
    rule = RegimeRule(rv_max=None)

    assert regime_of({**row(distance=0.05, slope=3e-4), "rv_20": None}, rule) is Regime.TRENDING_UP
    assert regime_of(row(rv=0.5), rule) is Regime.RANGING


def test_a_rule_with_a_typo_is_refused() -> None:
    with pytest.raises(ValidationError, match="atr_z"):
        RegimeRule.model_validate({"atr_z": 3.0})


# --- labels ---------------------------------------------------------------------------------------------------

def test_labels_are_the_rule_row_by_row_and_null_while_warming_up() -> None:
    rows = [row(distance=0.05, slope=3e-4), row(atr_z=4.0), {**row(), "atr_14_z100": None}, row()]
    frame = pl.DataFrame(rows, schema={n: pl.Float64 for n in REGIME_FEATURES})

    labels = regime_labels(frame)

    assert labels.name == "regime"
    assert labels.to_list() == ["trending_up", "high_volatility", None, "ranging"]


def test_labels_of_a_frame_without_the_features_are_refused_naming_them() -> None:
    with pytest.raises(ValueError, match="atr_14_z100"):
        regime_labels(pl.DataFrame({"close_over_ema_480": [0.0], "ema_slope_480_60": [0.0], "rv_20": [0.0]}))


def test_targets_are_the_same_symbols_label_one_bar_later_by_time() -> None:
    up, down, flat = row(distance=0.05, slope=3e-4), row(distance=-0.05, slope=-3e-4), row()
    rows = [  # BTC at hours 0, 1, 3 (hour 2 missing), ETH at hours 0, 1
        {"ts": 0, "symbol": "BTC/USDT", **up}, {"ts": 0, "symbol": "ETH/USDT", **down},
        {"ts": HOUR_MS, "symbol": "BTC/USDT", **flat}, {"ts": HOUR_MS, "symbol": "ETH/USDT", **up},
        {"ts": 3 * HOUR_MS, "symbol": "BTC/USDT", **down},
    ]

    targets = regime_targets(pl.DataFrame(rows), horizon=1, timeframe="1h")

    assert targets.to_list() == ["ranging", "trending_up", None, None, None]


# --- labels never read the future (property) ------------------------------------------------------------------

CANDLES = 1_200


@pytest.fixture(scope="module")
def btc_candles() -> pl.DataFrame:
    return ohlcv_frame(read_rows(data_file("ohlcv", "binance_BTCUSDT_1h.csv"))).head(CANDLES)


def _labels(candles: pl.DataFrame) -> list[str | None]:
    return regime_labels(compute_features(candles, FeatureSetSpec(), threads=1)).to_list()


@pytest.fixture(scope="module")
def btc_labels(btc_candles: pl.DataFrame) -> list[str | None]:
    return _labels(btc_candles)


@settings(max_examples=10, deadline=None)
@given(cut=st.integers(min_value=600, max_value=CANDLES - 2), seed=st.integers(min_value=0, max_value=2**32 - 1),
       truncate=st.booleans())
def test_labels_never_use_candles_after_their_own(btc_candles: pl.DataFrame, btc_labels: list[str | None],
                                                  cut: int, seed: int, truncate: bool) -> None:
    rng = np.random.default_rng(seed)
    tail = btc_candles.height - cut - 1
    price = np.concatenate([np.ones(cut + 1), rng.uniform(0.5, 1.5, tail)])  # one factor per candle: a valid bar
    volume = np.concatenate([np.ones(cut + 1), rng.uniform(0.5, 1.5, tail)])
    changed = btc_candles.head(cut + 1) if truncate else btc_candles.with_columns(
        *(pl.col(c) * price for c in ("open", "high", "low", "close")), pl.col("volume") * volume)

    again = _labels(changed)

    assert again[:cut + 1] == btc_labels[:cut + 1]
    assert any(label is not None for label in btc_labels[:cut + 1])  # past the warm-up: there is something to keep


# --- the classifier -------------------------------------------------------------------------------------------

class Split:
    def __init__(self, candles: int = 4_000, train_share: float = 0.7) -> None:
        frames = frames_from_files([data_file("ohlcv", "binance_BTCUSDT_1h.csv")])
        ds = build_dataset({"BTC/USDT": frames["BTC/USDT"].head(candles)}, DatasetSpec(symbols=("BTC/USDT",)))
        frame = ds.frame.with_columns(regime_labels(ds.frame), regime_targets(ds.frame, horizon=1))
        frame = frame.filter(pl.col("regime_target").is_not_null())
        n_train = int(frame.height * train_share)
        self.columns, self.feature_set = ds.feature_columns, ds.spec.feature_set.version
        self.train, self.test = frame.head(n_train), frame.tail(frame.height - n_train)

    def X(self, part: pl.DataFrame) -> np.ndarray:
        return part.select(self.columns).to_numpy()

    def fit(self, seed: int = 7) -> RegimeClassifier:
        return RegimeClassifier.fit(self.X(self.train), self.train.get_column("regime_target").to_list(),
                                    self.columns, self.feature_set, seed, rounds=100)


@pytest.fixture(scope="module")
def split() -> Split:
    return Split()


@pytest.fixture(scope="module")
def classifier(split: Split) -> RegimeClassifier:
    return split.fit()


def test_probabilities_come_in_regime_order_and_sum_to_one(split: Split, classifier: RegimeClassifier) -> None:
    proba = classifier.predict_proba(split.X(split.test))

    assert proba.shape == (split.test.height, len(REGIMES))
    assert np.allclose(proba.sum(axis=1), 1.0)


def test_the_same_seed_gives_identical_probabilities(split: Split, classifier: RegimeClassifier) -> None:
    again = split.fit(seed=7)

    assert np.array_equal(again.predict_proba(split.X(split.test)), classifier.predict_proba(split.X(split.test)))


def test_save_and_load_round_trip_predicts_the_same(split: Split, classifier: RegimeClassifier,
                                                    tmp_path: Path) -> None:
    classifier.save(tmp_path / "regime")

    loaded = RegimeClassifier.load(tmp_path / "regime")

    assert (loaded.feature_columns, loaded.feature_set, loaded.horizon, loaded.rule) == (
        classifier.feature_columns, classifier.feature_set, classifier.horizon, classifier.rule)
    assert loaded.normalizer == classifier.normalizer
    assert np.array_equal(loaded.predict_proba(split.X(split.test)), classifier.predict_proba(split.X(split.test)))


def test_predict_one_agrees_with_predict_proba_and_waits_for_warm_up(split: Split,
                                                                     classifier: RegimeClassifier) -> None:
    values = split.test.row(0, named=True)

    one = classifier.predict_one(values)

    assert one is not None
    assert list(one) == list(REGIMES)
    assert np.allclose(list(one.values()), classifier.predict_proba(split.X(split.test.head(1)))[0])
    assert classifier.predict_one({**values, split.columns[0]: None}) is None
    with pytest.raises(ValueError, match=split.columns[0]):
        classifier.predict_one({k: v for k, v in values.items() if k != split.columns[0]})


def test_it_beats_always_predicting_the_most_frequent_training_regime_on_later_rows(
        split: Split, classifier: RegimeClassifier) -> None:
    truth = np.array(split.test.get_column("regime_target").to_list())
    most_frequent = split.train.get_column("regime_target").mode().sort()[0]

    accuracy = float((np.array([r.value for r in classifier.predict(split.X(split.test))]) == truth).mean())
    baseline = float((truth == most_frequent).mean())

    assert accuracy > baseline + 0.2, (accuracy, baseline)


def test_training_rows_without_a_target_or_with_an_unknown_one_are_refused(split: Split) -> None:
    X = split.X(split.train.head(10))
    labels = split.train.get_column("regime_target").head(10).to_list()

    with pytest.raises(ValueError, match="label 3 is None"):
        RegimeClassifier.fit(X, [*labels[:3], None, *labels[4:]], split.columns, split.feature_set)
    with pytest.raises(ValueError, match="'sideways' is not a regime"):
        RegimeClassifier.fit(X, ["sideways", *labels[1:]], split.columns, split.feature_set)


def test_loading_something_else_is_refused(tmp_path: Path) -> None:
    (tmp_path / "model.json").write_text('{"format_version": 1, "kind": "lightgbm"}')

    with pytest.raises(ValueError, match="not a regime classifier"):
        RegimeClassifier.load(tmp_path)
