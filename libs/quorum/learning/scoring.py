"""Walk-forward scoring of a model family on a dataset: per fold, train on the fold's training rows (purged: no
row whose label reaches the test window), predict its test rows, and score them against the naive zero-return
predictor, "always up" and, retrained on the very same rows, the champion's family. Pure: dataset in, scores out.

The folds are ``quorum.backtest.walkforward.Fold`` time windows, the same ones the strategy backtest of the
model-driven council uses (``quorum.learning.train``), so the model and the strategy are judged on one split.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np

from quorum.backtest.walkforward import Fold
from quorum.learning.artifacts import Model, fit_model, is_policy, window_of
from quorum.learning.dataset import Dataset
from quorum.learning.families import ModelSpec
from quorum.times import timeframe_step, to_ms

RELIABILITY_BINS = 10
MIN_TRAIN_ROWS = 50


@dataclass(frozen=True)
class Split:
    fold: Fold
    train: np.ndarray  # row indices into the dataset's frame
    test: np.ndarray


def splits(ds: Dataset, fold_list: Sequence[Fold]) -> list[Split]:
    """Each fold's training and test rows. Training rows lie in ``[train_start, train_end)`` and their label's
    candle closes by the test start (purged); test rows lie in ``[test_start, test_end)``. Folds without enough
    training rows or without a test row are left out."""
    ts = ds.frame.get_column("ts").to_numpy()
    reach = (ds.spec.horizon + 1) * int(timeframe_step(ds.spec.timeframe).total_seconds() * 1000)
    out = []
    for fold in fold_list:
        lo, hi, test_lo, test_hi = (to_ms(t) for t in (fold.train_start, fold.train_end, fold.test_start,
                                                        fold.test_end))
        train = np.flatnonzero((ts >= lo) & (ts < hi) & (ts + reach <= test_lo))
        test = np.flatnonzero((ts >= test_lo) & (ts < test_hi))
        if len(train) >= MIN_TRAIN_ROWS and len(test):
            out.append(Split(fold, train, test))
    return out


def prediction_metrics(y: np.ndarray, expected: np.ndarray, p_up: np.ndarray) -> dict[str, Any]:
    """How good predictions of log returns ``y`` are: MSE against the naive zero-return predictor's, directional
    accuracy (``p_up > 0.5`` says up; a return of exactly 0 is not up) against "always up", the Brier score of
    ``p_up`` and its reliability bins (predicted vs realised frequency of a rise)."""
    up = y > 0
    said_up = p_up > 0.5
    bins = np.minimum((p_up * RELIABILITY_BINS).astype(int), RELIABILITY_BINS - 1)
    reliability = [{"bin": f"{b / RELIABILITY_BINS:.1f}-{(b + 1) / RELIABILITY_BINS:.1f}", "rows": int(n),
                    "mean_p_up": float(p_up[bins == b].mean()), "up_rate": float(up[bins == b].mean())}
                   for b in range(RELIABILITY_BINS) if (n := int((bins == b).sum()))]
    mse, naive = float(np.mean((expected - y) ** 2)), float(np.mean(y ** 2))
    return {"rows": int(len(y)), "mse": mse, "naive_mse": naive, "mse_vs_naive": mse / naive if naive else None,
            "direction_accuracy": float(np.mean(said_up == up)), "always_up_accuracy": float(np.mean(up)),
            "brier": float(np.mean((p_up - up) ** 2)), "reliability": reliability}


def policy_metrics(y: np.ndarray, positions: np.ndarray) -> dict[str, Any]:
    """What can be said of a position policy's rows without a prediction: the same keys as
    ``prediction_metrics`` (the prediction ones None), the naive MSE and "always up" beside them, its mean position."""
    return {"rows": int(len(y)), "mse": None, "naive_mse": float(np.mean(y ** 2)), "mse_vs_naive": None,
            "direction_accuracy": None, "always_up_accuracy": float(np.mean(y > 0)), "brier": None,
            "reliability": [], "mean_position": float(np.mean(positions)) if len(positions) else None}


def score_rows(model: Model, X: np.ndarray, y: np.ndarray, rows: np.ndarray,
            symbols: int) -> tuple[dict[str, Any], tuple[np.ndarray, np.ndarray | None, np.ndarray]]:
    """The model's metrics on ``rows`` and what pooling needs: (y, expected or None for a policy, p_up or
    positions)."""
    if is_policy(model):
        positions = model.positions(X[rows])  # type: ignore[attr-defined]
        return policy_metrics(y[rows], positions), (y[rows], None, positions)
    expected, p_up = predict_rows(model, X, rows, symbols)
    return prediction_metrics(y[rows], expected, p_up), (y[rows], expected, p_up)


@dataclass(frozen=True)
class FoldScore:
    fold: Fold
    train_rows: int
    metrics: dict[str, Any]
    champion: dict[str, Any] | None  # the champion's family retrained on the same rows, on the same test rows

    def as_dict(self) -> dict[str, Any]:
        return {**self.fold.as_dict(), "train_rows": self.train_rows, "metrics": self.metrics,
                "champion": self.champion}


@dataclass(frozen=True)
class ModelScore:
    """Per fold and pooled over every test row (the out-of-sample aggregate)."""

    folds: tuple[FoldScore, ...]
    metrics: dict[str, Any]
    champion: dict[str, Any] | None
    models: tuple[Model, ...] = field(default=(), repr=False, compare=False)  # one per fold, in order

    def as_dict(self) -> dict[str, Any]:
        return {"folds": [f.as_dict() for f in self.folds], "oos": self.metrics, "champion_oos": self.champion}


def _fit_rows(spec: ModelSpec, ds: Dataset, X: np.ndarray, y: np.ndarray, rows: np.ndarray,
              columns: Sequence[str]) -> Model:
    index = [ds.feature_columns.index(c) for c in columns]
    return fit_model(spec, X[np.ix_(rows, index)], y[rows], columns, ds.spec.feature_set.version)


def predict_rows(model: Model, X: np.ndarray, rows: np.ndarray, symbols: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """The model's outputs for ``rows`` of X (a dataset's matrix, in its time order); a model that reads a window
    of rows also gets the rows before them (``symbols`` series interleaved in X)."""
    window = window_of(model)
    if window == 1:
        return model.predict(X[rows])
    lo = max(0, int(rows.min()) - 2 * window * max(symbols, 1))
    context = np.arange(lo, int(rows.max()) + 1)
    expected, p_up = model.predict(X[context])
    return expected[rows - lo], p_up[rows - lo]


def score(ds: Dataset, spec: ModelSpec, fold_list: Sequence[Fold], *, champion: Model | None = None,
          progress: Callable[[int, int], None] | None = None) -> ModelScore:
    """Walk-forward scores of ``spec`` on ``ds``; with ``champion``, its family is retrained per fold on the same
    rows (its own feature columns, which the dataset must have) so the comparison is out of sample for both."""
    chosen = splits(ds, fold_list)
    if not chosen:
        raise ValueError("no fold has enough training rows and a test row: use a longer range or shorter folds")
    if champion is not None and (lacking := [c for c in champion.feature_columns if c not in ds.feature_columns]):
        raise ValueError(f"the champion needs features the dataset lacks: {lacking}")
    X, y = ds.feature_matrix(), ds.frame.get_column("label_return").to_numpy()
    folds, models, pooled, pooled_champion = [], [], [], []
    for n, sp in enumerate(chosen, 1):
        model = _fit_rows(spec, ds, X, y, sp.train, ds.feature_columns)
        mine, part = score_rows(model, X, y, sp.test, len(ds.spec.symbols))
        pooled.append(part)
        theirs = None
        if champion is not None:
            rival = _fit_rows(champion.spec, ds, X, y, sp.train, champion.feature_columns)
            theirs_columns = [ds.feature_columns.index(c) for c in champion.feature_columns]
            theirs, part = score_rows(rival, X[:, theirs_columns], y, sp.test, len(ds.spec.symbols))
            pooled_champion.append(part)
        folds.append(FoldScore(sp.fold, len(sp.train), mine, theirs))
        models.append(model)
        if progress is not None:
            progress(n, len(chosen))
    return ModelScore(tuple(folds), _pooled(pooled), _pooled(pooled_champion) if pooled_champion else None,
                      tuple(models))


def _pooled(parts: Sequence[tuple[np.ndarray, np.ndarray | None, np.ndarray]]) -> dict[str, Any]:
    y, last = np.concatenate([p[0] for p in parts]), np.concatenate([p[2] for p in parts])
    if parts[0][1] is None:
        return policy_metrics(y, last)
    return prediction_metrics(y, np.concatenate([p[1] for p in parts]), last)  # type: ignore[misc]


def fit_all(ds: Dataset, spec: ModelSpec, *, until: datetime | None = None) -> Model:
    """The model to register: trained on every row of the dataset (before ``until``, when given)."""
    X, y = ds.feature_matrix(), ds.frame.get_column("label_return").to_numpy()
    rows = np.arange(len(y)) if until is None else np.flatnonzero(ds.frame.get_column("ts").to_numpy()
                                                                    < to_ms(until))
    return _fit_rows(spec, ds, X, y, rows, ds.feature_columns)


PRIMARY_METRICS: Mapping[str, bool] = {"mse": False, "mse_vs_naive": False, "brier": False,
                                       "direction_accuracy": True}
"""Metrics a challenger may be compared on, and whether higher is better."""


def is_better(metric: str, challenger: Mapping[str, Any], champion: Mapping[str, Any]) -> bool:
    higher = PRIMARY_METRICS[metric]
    a, b = challenger.get(metric), champion.get(metric)
    if a is None or b is None:
        return False
    return bool(a > b) if higher else bool(a < b)
