"""Market regimes: one rule that labels a feature row (trending up, trending down, ranging, high volatility), the
labels of a whole frame by that rule, and a learned predictor of the regime a few bars ahead.

Why one rule: the council restricts strategies by the regime it sees (``regime_of`` on the features it receives)
and training labels come from ``regime_labels`` on dataset rows, which applies ``regime_of`` row by row, so the
two can never disagree. The rule reads only features of the row itself, and those features are causal (the
dataset's leakage check holds them to it), so a label never uses a candle after its own.

The rule reads four features of the default feature set (``quorum.indicators.spec.DEFAULT_INDICATORS``):

* ``close_over_ema_480``: ``close / EMA480 - 1``, a fraction (0.02 = 2 % above the 480-bar EMA);
* ``ema_slope_480_60``: ``(EMA_t / EMA_{t-60} - 1) / 60``, a fraction per bar (1e-4 = 0.6 % over 60 bars);
* ``atr_14_z100``: the 14-bar ATR as a z-score over its last 100 values (a volatility spike, scale-free);
* ``rv_20``: the standard deviation of the last 20 hourly log returns (0.02 = 2 % per bar).

In that order of precedence: HIGH_VOLATILITY when the ATR z-score or the realized volatility is at or past its
limit; else TRENDING_UP when the close is more than ``distance_min`` above the EMA and the EMA rises faster than
``slope_min`` per bar; TRENDING_DOWN for the mirror image; else RANGING. With the defaults, BTC/USDT and ETH/USDT
hourly 2021-04..2023-12 spend 7-9 % of their hours in high volatility, 28-30 % trending up, 30-31 % trending
down and 31-35 % ranging.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict, Field

from quorum.indicators.spec import AtrSpec, CloseOverEmaSpec, EmaSlopeSpec, NormalizeSpec, RealizedVolSpec
from quorum.indicators.timeframes import timeframe_ms

if TYPE_CHECKING:
    from quorum.learning.families import Normalizer


class Regime(StrEnum):
    TRENDING_UP = "trending_up"
    TRENDING_DOWN = "trending_down"
    RANGING = "ranging"
    HIGH_VOLATILITY = "high_volatility"


REGIMES: tuple[Regime, ...] = tuple(Regime)
"""The class order of every probability vector (``RegimeClassifier.predict_proba`` columns)."""

DISTANCE = CloseOverEmaSpec(period=480).names()[0]
SLOPE = EmaSlopeSpec(period=480, lookback=60).names()[0]
ATR_Z = NormalizeSpec(feature=AtrSpec(period=14).names()[0], window=100).name
REALIZED_VOL = RealizedVolSpec(period=20).names()[0]
REGIME_FEATURES: tuple[str, ...] = (DISTANCE, SLOPE, ATR_Z, REALIZED_VOL)
"""The features the rule reads, by the names the indicator specs give them."""


class RegimeRule(BaseModel):
    """The thresholds of the rule (defaults measured on BTC/ETH hourly 2021-2023, see the module docstring)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    distance_min: float = Field(default=0.02, ge=0, le=1,
                                description="a trend needs the close this fraction past the 480-bar EMA")
    slope_min: float = Field(default=1e-4, ge=0, le=0.1,
                             description="a trend needs the EMA moving this fraction per bar (60-bar slope)")
    atr_z_max: float = Field(default=2.0, gt=0, le=100,
                             description="high volatility at or above this z-score of the ATR over 100 bars")
    rv_max: float | None = Field(default=0.02, gt=0, le=10,
                                 description="high volatility at or above this per-bar realized volatility (20 "
                                             "bars); None: the ATR z-score alone decides")

    @property
    def features(self) -> tuple[str, ...]:
        """The features this rule reads (the realized volatility only while ``rv_max`` is set)."""
        return REGIME_FEATURES if self.rv_max is not None else REGIME_FEATURES[:3]


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def regime_of(values: Mapping[str, float | None], rule: RegimeRule | None = None) -> Regime | None:
    """The regime of one feature row; None while a feature the rule reads is warming up (None, NaN or absent,
    as a strategy treats it)."""
    rule = rule or RegimeRule()
    read = [_finite(values.get(n)) for n in rule.features]
    known = [v for v in read if v is not None]
    if len(known) < len(read):
        return None
    distance, slope, atr_z, *rv = known
    if atr_z >= rule.atr_z_max or (rule.rv_max is not None and rv[0] >= rule.rv_max):
        return Regime.HIGH_VOLATILITY
    if distance > rule.distance_min and slope > rule.slope_min:
        return Regime.TRENDING_UP
    if distance < -rule.distance_min and slope < -rule.slope_min:
        return Regime.TRENDING_DOWN
    return Regime.RANGING


def regime_labels(frame: pl.DataFrame, rule: RegimeRule | None = None) -> pl.Series:
    """``regime_of`` of every row of ``frame`` (e.g. a ``build_dataset`` frame, or ``compute_features`` output):
    a String series named ``regime``, null while warming up. Row by row through the very rule the council uses."""
    rule = rule or RegimeRule()
    missing = [n for n in rule.features if n not in frame.columns]
    if missing:
        raise ValueError(f"regime_labels needs the feature columns {missing}; the frame has {frame.columns[:8]}...")
    names = rule.features
    labels = [regime_of(dict(zip(names, row, strict=True)), rule) for row in frame.select(names).iter_rows()]
    return pl.Series("regime", [None if r is None else r.value for r in labels], dtype=pl.String)


def regime_targets(frame: pl.DataFrame, rule: RegimeRule | None = None, *, horizon: int = 1,
                   timeframe: str = "1h") -> pl.Series:
    """The training target of each row: the regime label of the same symbol's row ``horizon`` timeframes later
    (by time, as the dataset's return label; null when that row is absent). A target may look ahead; the features
    a classifier reads never do."""
    if horizon < 1:
        raise ValueError(f"horizon must be >= 1, got {horizon}")
    if "ts" not in frame.columns:
        raise ValueError("regime_targets needs the frame's ts column (epoch ms open times)")
    keys = ["symbol"] if "symbol" in frame.columns else []
    labelled = frame.select("ts", *keys).with_columns(regime_labels(frame, rule))
    ahead = labelled.select((pl.col("ts") - horizon * timeframe_ms(timeframe)).alias("ts"), *keys,
                            pl.col("regime").alias("__target"))
    joined = labelled.join(ahead, on=["ts", *keys], how="left", maintain_order="left")
    return joined.get_column("__target").alias("regime_target")


# --- the learned predictor ------------------------------------------------------------------------------------

FORMAT_VERSION = 1
"""Of the classifier's ``model.json``: bump it when the directory layout or a field's meaning changes."""
ESTIMATOR_FILE = "estimator.txt"


def _class_index(labels: Sequence[Regime | str | None]) -> np.ndarray:
    index = {r.value: i for i, r in enumerate(REGIMES)}
    out = np.empty(len(labels), dtype=np.float64)
    for i, label in enumerate(labels):
        if label is None:
            raise ValueError(f"label {i} is None: drop the rows without a target (warm-up, the last bars) first")
        try:
            out[i] = index[str(label)]
        except KeyError:
            raise ValueError(f"label {i} {label!r} is not a regime; expected one of {list(index)}") from None
    return out


def _lgb_params(seed: int, num_leaves: int, learning_rate: float, min_child_samples: int) -> dict[str, Any]:
    """Threads, seeds and the deterministic switches are fixed: they must not vary between runs."""
    return {"objective": "multiclass", "num_class": len(REGIMES), "num_leaves": num_leaves,
            "learning_rate": learning_rate, "min_child_samples": min_child_samples, "num_threads": 1,
            "deterministic": True, "force_row_wise": True, "seed": seed, "verbosity": -1}


@dataclass(frozen=True)
class RegimeClassifier:
    """LightGBM multiclass over one normalised feature row: the probability of each regime ``horizon`` bars
    ahead, in ``REGIMES`` order. The normaliser is the training rows' (``quorum.learning.families.Normalizer``)."""

    feature_columns: tuple[str, ...]
    feature_set: str
    horizon: int
    seed: int
    rule: RegimeRule
    normalizer: Normalizer
    booster: Any

    @classmethod
    def fit(cls, X: np.ndarray, labels: Sequence[Regime | str | None], columns: Sequence[str], feature_set: str,
            seed: int = 7, *, horizon: int = 1, rule: RegimeRule | None = None, rounds: int = 200,
            num_leaves: int = 15, learning_rate: float = 0.05, min_child_samples: int = 20) -> RegimeClassifier:
        """Train on the training rows only: X (rows x ``columns``) and each row's target regime (``regime_targets``
        with the same ``horizon`` and ``rule``, which travel with the model)."""
        import lightgbm as lgb

        from quorum.learning.families import Normalizer

        X = np.asarray(X, dtype=np.float64)
        columns = tuple(columns)
        if X.ndim != 2 or X.shape[0] < 2:
            raise ValueError(f"X must be a 2-d array of at least 2 rows, got shape {X.shape}")
        if len(columns) != X.shape[1] or len(set(columns)) != len(columns):
            raise ValueError(f"columns must name X's {X.shape[1]} columns once each, got {len(columns)} names")
        if len(labels) != X.shape[0]:
            raise ValueError(f"{len(labels)} labels for {X.shape[0]} rows")
        if rounds < 1:
            raise ValueError(f"rounds must be >= 1, got {rounds}")
        y = _class_index(labels)
        normalizer = Normalizer.fit(X)  # refuses NaN: warm-up rows must be dropped first
        params = _lgb_params(seed, num_leaves, learning_rate, min_child_samples)
        booster = lgb.train(params, lgb.Dataset(normalizer.transform(X), label=y, params=params),
                            num_boost_round=rounds)
        return cls(columns, feature_set, horizon, seed, rule or RegimeRule(), normalizer, booster)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """(rows, 4): each row's regime probabilities in ``REGIMES`` order."""
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or not np.isfinite(X).all():
            raise ValueError(f"X must be a 2-d array of finite values, got shape {X.shape}")
        Z = self.normalizer.transform(X)
        return np.asarray(self.booster.predict(Z, num_threads=1), dtype=np.float64).reshape(-1, len(REGIMES))

    def predict(self, X: np.ndarray) -> list[Regime]:
        """The most probable regime of each row."""
        return [REGIMES[i] for i in self.predict_proba(X).argmax(axis=1)]

    def predict_one(self, values: Mapping[str, float | None]) -> dict[Regime, float] | None:
        """The regime probabilities of one feature row by name; None while a column is warming up (None or NaN)."""
        try:
            row = [values[name] for name in self.feature_columns]
        except KeyError as missing:
            raise ValueError(f"feature row lacks {missing.args[0]!r} (regime classifier, feature set "
                             f"{self.feature_set})") from None
        if any(v is None or math.isnan(v) for v in row):
            return None
        p = self.predict_proba(np.asarray([row], dtype=np.float64))[0]
        return {r: float(p[i]) for i, r in enumerate(REGIMES)}

    def save(self, directory: Path) -> None:
        """``model.json`` (everything but the booster) and the booster in LightGBM's text format."""
        directory.mkdir(parents=True, exist_ok=True)
        self.booster.save_model(str(directory / ESTIMATOR_FILE))
        meta = {"format_version": FORMAT_VERSION, "kind": "regime_classifier", "classes": [r.value for r in REGIMES],
                "feature_columns": list(self.feature_columns), "feature_set": self.feature_set,
                "horizon": self.horizon, "seed": self.seed, "rule": self.rule.model_dump(mode="json"),
                "normalizer": self.normalizer.to_dict(), "estimator_file": ESTIMATOR_FILE}
        (directory / "model.json").write_text(json.dumps(meta, indent=1, sort_keys=True))

    @classmethod
    def load(cls, directory: Path) -> RegimeClassifier:
        import lightgbm as lgb

        from quorum.learning.families import Normalizer

        path = directory / "model.json"
        if not path.is_file():
            raise ValueError(f"no model.json in {directory}")
        meta = json.loads(path.read_text())
        if meta.get("kind") != "regime_classifier" or meta.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"{path}: not a regime classifier of format {FORMAT_VERSION} (kind "
                             f"{meta.get('kind')!r}, format {meta.get('format_version')!r})")
        if meta.get("classes") != [r.value for r in REGIMES]:
            raise ValueError(f"{path}: classes {meta.get('classes')} are not this code's {[r.value for r in REGIMES]}")
        return cls(tuple(meta["feature_columns"]), meta["feature_set"], int(meta["horizon"]), int(meta["seed"]),
                   RegimeRule.model_validate(meta["rule"]), Normalizer.from_dict(meta["normalizer"]),
                   lgb.Booster(model_file=str(directory / meta["estimator_file"])))


__all__ = [
    "REGIMES", "REGIME_FEATURES", "Regime", "RegimeClassifier", "RegimeRule", "regime_labels", "regime_of",
    "regime_targets",
]
