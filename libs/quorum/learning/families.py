"""Model families the learning loop trains (XGBoost, LightGBM, a scikit-learn random forest) behind one interface:
a validated ``ModelSpec`` in, a ``TrainedModel`` out that turns feature rows into (expected return, P(up)) and
saves to and loads from its own directory format.

Deterministic by construction: one thread, fixed seeds, the libraries' deterministic modes, so the same inputs
give bit-identical predictions. ``predict_one`` is the inference service's hot path (one feature row per closed
candle): it skips pandas and uses each library's cheapest one-row call; the forest, whose scikit-learn predict
costs a Python call per tree, is walked as flat arrays instead.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator
from scipy.special import ndtr

FORMAT_VERSION = 1
"""Of ``model.json``: bump it when the directory layout or a field's meaning changes."""

MIN_RESIDUAL_STD = 1e-12
"""Floor for the residual scale in Phi(yhat / residual_std): a perfect in-sample fit must not divide by zero."""


class Task(StrEnum):
    REGRESSION = "regression"  # predicts the log return; P(up) from the residual spread
    CLASSIFICATION = "classification"  # predicts P(return > 0); expected return from the mean move size


class Family(StrEnum):
    XGBOOST = "xgboost"
    LIGHTGBM = "lightgbm"
    RANDOM_FOREST = "random_forest"
    LSTM = "lstm"  # sequence models (torch): fitted by ``quorum.learning.sequence`` over windows of rows
    TRANSFORMER = "transformer"
    SHARPE_POLICY = "sharpe_policy"  # a position policy (torch) trained on the Sharpe ratio: ``quorum.learning.policy``
    META = "meta"  # base models of other families stacked by a composition: ``quorum.learning.stacking``


TREE_FAMILIES = (Family.XGBOOST, Family.LIGHTGBM, Family.RANDOM_FOREST)
SEQUENCE_FAMILIES = (Family.LSTM, Family.TRANSFORMER)


ParamValue = float | int | str | bool


@dataclass(frozen=True)
class _Param:
    """One tunable parameter: its default (whose type is the parameter's type) and inclusive bounds."""

    default: int | float | bool
    low: float | None = None
    high: float | None = None

    def check(self, family: Family, name: str, value: ParamValue) -> int | float | bool:
        kind = type(self.default)
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if type(value) is not kind:
            raise ValueError(f"{family} param {name!r} must be {kind.__name__}, got {value!r}")
        if (self.low is not None and value < self.low) or (self.high is not None and value > self.high):
            raise ValueError(f"{family} param {name!r}={value!r} is outside [{self.low}, {self.high}]")
        return value


_XGBOOST_PARAMS = {
    "n_estimators": _Param(200, 1, 100_000),
    "max_depth": _Param(4, 1, 64),
    "learning_rate": _Param(0.05, 1e-6, 1.0),
    "subsample": _Param(1.0, 1e-3, 1.0),
    "colsample_bytree": _Param(1.0, 1e-3, 1.0),
    "min_child_weight": _Param(1.0, 0.0),
    "reg_lambda": _Param(1.0, 0.0),
    "reg_alpha": _Param(0.0, 0.0),
    "gamma": _Param(0.0, 0.0),
    "max_bin": _Param(256, 2, 65_536),
}
_LIGHTGBM_PARAMS = {
    "n_estimators": _Param(200, 1, 100_000),
    "max_depth": _Param(4, 1, 64),
    "num_leaves": _Param(15, 2, 131_072),
    "learning_rate": _Param(0.05, 1e-6, 1.0),
    "min_child_samples": _Param(20, 1),
    "subsample": _Param(1.0, 1e-3, 1.0),
    "subsample_freq": _Param(0, 0),
    "colsample_bytree": _Param(1.0, 1e-3, 1.0),
    "reg_lambda": _Param(0.0, 0.0),
    "reg_alpha": _Param(0.0, 0.0),
    "min_split_gain": _Param(0.0, 0.0),
    "max_bin": _Param(255, 2, 65_536),
}
_RANDOM_FOREST_PARAMS = {
    "n_estimators": _Param(200, 1, 10_000),
    "max_depth": _Param(6, 1, 64),
    "min_samples_leaf": _Param(20, 1),
    "min_samples_split": _Param(2, 2),
    "max_features": _Param(0.3, 1e-3, 1.0),  # fraction of the columns tried per split
    "max_samples": _Param(0.5, 1e-3, 1.0),  # fraction of the rows bootstrapped per tree (unused without bootstrap)
    "bootstrap": _Param(True),
}
_SEQUENCE_PARAMS = {  # ``quorum.learning.sequence.SequenceSpec``'s fields; its validation applies too
    "window": _Param(48, 2, 2048),
    "hidden_size": _Param(32, 1, 1024),
    "layers": _Param(1, 1, 8),
    "heads": _Param(2, 1, 64),
    "dropout": _Param(0.0, 0.0, 0.99),
    "learning_rate": _Param(1e-3, 1e-6, 1.0),
    "batch_size": _Param(256, 1, 65_536),
    "max_epochs": _Param(15, 1, 10_000),
    "patience": _Param(3, 1, 10_000),
    "validation_fraction": _Param(0.2, 0.01, 0.99),
    "weight_decay": _Param(0.0, 0.0, 1.0),
}
_POLICY_PARAMS = {  # ``quorum.learning.policy.PolicySpec``'s: hidden = (hidden_size,) * layers
    "hidden_size": _Param(32, 1, 1024),
    "layers": _Param(1, 0, 4),
    "learning_rate": _Param(0.01, 1e-6, 1.0),
    "epochs": _Param(300, 1, 100_000),
    "patience": _Param(30, 1, 100_000),
    "validation_fraction": _Param(0.2, 0.0, 0.5),
    "fee_rate": _Param(0.001, 0.0, 0.5),
    "weight_decay": _Param(0.0, 0.0, 1.0),
}
_META_PARAMS = {  # ``quorum.learning.stacking``: which bases (each with its family's defaults), how to compose
    "use_xgboost": _Param(False),
    "use_lightgbm": _Param(True),
    "use_random_forest": _Param(True),
    "use_lstm": _Param(False),
    "use_transformer": _Param(False),
    "fitted": _Param(True),  # a logistic (classification) or ridge (regression) combiner; false: the mean
    "holdout_fraction": _Param(0.3, 0.05, 0.9),  # the latest rows the composition is fitted on
    "embargo_rows": _Param(48, 0, 100_000),  # rows between the bases' fit and the held-out rows
}
PARAMS: dict[Family, dict[str, _Param]] = {
    Family.META: _META_PARAMS,
    Family.SHARPE_POLICY: _POLICY_PARAMS,
    Family.LSTM: _SEQUENCE_PARAMS,
    Family.TRANSFORMER: _SEQUENCE_PARAMS,
    Family.XGBOOST: _XGBOOST_PARAMS,
    Family.LIGHTGBM: _LIGHTGBM_PARAMS,
    Family.RANDOM_FOREST: _RANDOM_FOREST_PARAMS,
}
"""The allow-list: every parameter a spec may set per family, with its default."""


class ModelSpec(BaseModel):
    """What to train: the family, the task, parameter overrides (checked against the family's allow-list) and the
    seed. Threads and deterministic switches are fixed, not parameters: they must not vary between runs."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    family: Family
    task: Task = Task.REGRESSION
    params: dict[str, ParamValue] = Field(default_factory=dict)
    seed: int = Field(default=7, ge=0, le=2**31 - 1)
    per_symbol: bool = Field(default=False, description="per-coin specialists: one model of the family per symbol, "
                                                        "each on its own symbol's rows, routed by symbol_code "
                                                        "(``quorum.learning.specialists``)")

    @model_validator(mode="after")
    def _known_params(self) -> ModelSpec:
        self.resolved_params()
        return self

    def resolved_params(self) -> dict[str, int | float | bool]:
        """The defaults with the overrides applied, each checked for name, type and range."""
        allowed = PARAMS[self.family]
        unknown = sorted(set(self.params) - set(allowed))
        if unknown:
            raise ValueError(f"unknown {self.family} params {unknown}; allowed: {sorted(allowed)}")
        resolved = {name: p.default for name, p in allowed.items()}
        resolved.update({name: allowed[name].check(self.family, name, v) for name, v in self.params.items()})
        return resolved


class Normalizer:
    """Per-column z-scores with the training rows' mean and std (a constant column's std counts as 1), so rows
    scored later are scaled by what the model saw in training, never by the rows being scored."""

    def __init__(self, mean: np.ndarray, std: np.ndarray) -> None:
        mean, std = np.asarray(mean, dtype=np.float64), np.asarray(std, dtype=np.float64)
        if mean.ndim != 1 or mean.shape != std.shape:
            raise ValueError(f"normalizer mean and std must be 1-d of one length, got {mean.shape} and {std.shape}")
        if not (np.isfinite(mean).all() and np.isfinite(std).all() and (std > 0).all()):
            raise ValueError("normalizer mean must be finite and std finite and positive")
        self.mean, self.std = mean, std

    @classmethod
    def fit(cls, X: np.ndarray) -> Normalizer:
        X = _finite_matrix(X, "X")
        std = X.std(axis=0)
        return cls(X.mean(axis=0), np.where(std > 0, std, 1.0))

    def transform(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.mean.shape[0]:
            raise ValueError(f"X must have shape (rows, {self.mean.shape[0]}), got {X.shape}")
        return (X - self.mean) / self.std

    def to_dict(self) -> dict[str, list[float]]:
        return {"mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Sequence[float]]) -> Normalizer:
        return cls(np.asarray(data["mean"]), np.asarray(data["std"]))

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, Normalizer) and np.array_equal(self.mean, other.mean)
                and np.array_equal(self.std, other.std))

    __hash__ = None  # type: ignore[assignment]  # mutable arrays inside


def _finite_matrix(X: np.ndarray, what: str) -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[0] == 0:
        raise ValueError(f"{what} must be a non-empty 2-d array, got shape {X.shape}")
    if not np.isfinite(X).all():
        raise ValueError(f"{what} has NaN or infinite values (warm-up rows must be dropped before training)")
    return X


def feature_row(values: Mapping[str, float | None], columns: Sequence[str], what: str) -> np.ndarray | None:
    """One feature row by name, in ``columns`` order, as every model kind reads it when served; None while any of
    them is still warming up (None or NaN). Extra names are ignored; a missing one is an error naming ``what``
    reads it."""
    try:
        row = [values[name] for name in columns]
    except KeyError as missing:
        raise ValueError(f"feature row lacks {missing.args[0]!r} ({what})") from None
    if None in row:
        return None
    x = np.array(row, dtype=np.float64)
    if np.isnan(x).any():
        return None
    if not np.isfinite(x).all():
        raise ValueError("feature row has infinite values")
    return x


# --- the families ----------------------------------------------------------------------------------------------

class _Adapter:
    """One library: train on normalised rows, raw output (the return for regression, P(up) for classification)
    for many rows and for one, and the estimator's native file."""

    filename: str

    def train(self, params: dict[str, Any], task: Task, seed: int, Z: np.ndarray, y: np.ndarray) -> Any:
        raise NotImplementedError

    def raw(self, estimator: Any, task: Task, Z: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def row_predictor(self, estimator: Any, task: Task) -> Callable[[np.ndarray], np.ndarray]:
        """A function of one normalised row (shape (1, k)) with the same output as ``raw`` on it."""
        return lambda z: self.raw(estimator, task, z)

    def save(self, estimator: Any, path: Path) -> None:
        raise NotImplementedError

    def load(self, path: Path) -> Any:
        raise NotImplementedError


class _XGBoost(_Adapter):
    filename = "estimator.ubj"

    def train(self, params: dict[str, Any], task: Task, seed: int, Z: np.ndarray, y: np.ndarray) -> Any:
        import xgboost as xgb

        rounds = params.pop("n_estimators")
        objective = "reg:squarederror" if task is Task.REGRESSION else "binary:logistic"
        native = {**params, "objective": objective, "tree_method": "hist", "nthread": 1, "seed": seed,
                  "verbosity": 0}
        return xgb.train(native, xgb.DMatrix(Z, label=y, nthread=1), num_boost_round=rounds)

    def raw(self, estimator: Any, task: Task, Z: np.ndarray) -> np.ndarray:
        return np.asarray(estimator.inplace_predict(Z), dtype=np.float64)

    def save(self, estimator: Any, path: Path) -> None:
        estimator.save_model(str(path))

    def load(self, path: Path) -> Any:
        import xgboost as xgb

        booster = xgb.Booster(model_file=str(path))
        booster.set_param({"nthread": 1})
        return booster


class _LightGBM(_Adapter):
    filename = "estimator.txt"

    def train(self, params: dict[str, Any], task: Task, seed: int, Z: np.ndarray, y: np.ndarray) -> Any:
        import lightgbm as lgb

        rounds = params.pop("n_estimators")
        native = {**params, "objective": "regression" if task is Task.REGRESSION else "binary", "num_threads": 1,
                  "deterministic": True, "force_row_wise": True, "seed": seed, "verbosity": -1}
        return lgb.train(native, lgb.Dataset(Z, label=y, params=native), num_boost_round=rounds)

    def raw(self, estimator: Any, task: Task, Z: np.ndarray) -> np.ndarray:
        return np.asarray(estimator.predict(Z, num_threads=1), dtype=np.float64)

    def save(self, estimator: Any, path: Path) -> None:
        estimator.save_model(str(path))

    def load(self, path: Path) -> Any:
        import lightgbm as lgb

        return lgb.Booster(model_file=str(path))


class _RandomForest(_Adapter):
    filename = "estimator.joblib"

    def train(self, params: dict[str, Any], task: Task, seed: int, Z: np.ndarray, y: np.ndarray) -> Any:
        from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor

        if not params["bootstrap"]:
            params.pop("max_samples")  # scikit-learn refuses a row fraction without bootstrap
        kind = RandomForestRegressor if task is Task.REGRESSION else RandomForestClassifier
        return kind(**params, n_jobs=1, random_state=seed).fit(Z, y)

    def raw(self, estimator: Any, task: Task, Z: np.ndarray) -> np.ndarray:
        return estimator.predict(Z) if task is Task.REGRESSION else estimator.predict_proba(Z)[:, 1]

    def row_predictor(self, estimator: Any, task: Task) -> Callable[[np.ndarray], np.ndarray]:
        return _FlatForest(estimator, task).predict_row

    def save(self, estimator: Any, path: Path) -> None:
        import joblib

        joblib.dump(estimator, path)

    def load(self, path: Path) -> Any:
        import joblib

        return joblib.load(path)  # pickle: only load models this system saved


class _FlatForest:
    """Every tree of a fitted forest in flat arrays, walked one level per step for all trees at once: a row costs
    depth numpy steps, where scikit-learn's predict costs a call per tree (~15 ms for 200 trees). Bit-identical to
    it: features compared as float32 like scikit-learn's trees, leaf values summed in tree order, then divided."""

    def __init__(self, forest: Any, task: Task) -> None:
        column = 0 if task is Task.REGRESSION else list(forest.classes_).index(1)
        left, right, feature, threshold, value, roots = [], [], [], [], [], []
        offset, self.depth = 0, 0
        for tree in (estimator.tree_ for estimator in forest.estimators_):
            nodes = np.arange(tree.node_count) + offset
            leaf = tree.children_left < 0
            left.append(np.where(leaf, nodes, tree.children_left + offset))  # a leaf points at itself
            right.append(np.where(leaf, nodes, tree.children_right + offset))
            feature.append(np.where(leaf, 0, tree.feature))
            threshold.append(tree.threshold)
            value.append(tree.value[:, 0, column])
            roots.append(offset)
            offset += tree.node_count
            self.depth = max(self.depth, tree.max_depth)
        self.left, self.right = np.concatenate(left), np.concatenate(right)
        self.feature, self.threshold = np.concatenate(feature), np.concatenate(threshold)
        self.value, self.roots = np.concatenate(value), np.asarray(roots)

    def predict_row(self, z: np.ndarray) -> np.ndarray:
        x = z[0].astype(np.float32).astype(np.float64)
        node = self.roots
        for _ in range(self.depth):
            node = np.where(x[self.feature[node]] <= self.threshold[node], self.left[node], self.right[node])
        return np.cumsum(self.value[node])[-1:] / len(self.roots)


_ADAPTERS: dict[Family, _Adapter] = {
    Family.XGBOOST: _XGBoost(),
    Family.LIGHTGBM: _LightGBM(),
    Family.RANDOM_FOREST: _RandomForest(),
}


# --- the trained model -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TrainedModel:
    """A fitted estimator with everything needed to score a feature row: the column order, the feature set it was
    trained on, the training normaliser, and the training rows' residual spread and mean absolute return that turn
    the raw output into the other half of (expected_return, p_up)."""

    spec: ModelSpec
    feature_columns: tuple[str, ...]
    feature_set: str
    normalizer: Normalizer
    estimator: Any
    residual_std: float
    mean_abs_return: float
    extras: Mapping[str, str] = field(default_factory=dict, compare=False)  # travels in model.json, e.g. the
    # training distribution drift is measured against (``quorum.learning.drift``)
    _row: Callable[[np.ndarray], np.ndarray] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(self.feature_columns) != self.normalizer.mean.shape[0]:
            raise ValueError(f"{len(self.feature_columns)} feature columns but the normalizer has "
                             f"{self.normalizer.mean.shape[0]}")
        object.__setattr__(self, "_row", _ADAPTERS[self.spec.family].row_predictor(self.estimator, self.spec.task))

    def predict(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(expected_return, p_up) for every row of X (columns in ``feature_columns`` order)."""
        Z = self.normalizer.transform(_finite_matrix(X, "X"))
        return self._outputs(_ADAPTERS[self.spec.family].raw(self.estimator, self.spec.task, Z))

    def predict_one(self, values: Mapping[str, float | None]) -> tuple[float, float] | None:
        """(expected_return, p_up) for one feature row by name; None while any needed feature is still warming up
        (None or NaN). Extra names in ``values`` are ignored."""
        x = feature_row(values, self.feature_columns, f"model {self.spec.family}, feature set {self.feature_set}")
        if x is None:
            return None
        expected, p_up = self._outputs(self._row(self.normalizer.transform(x[None, :])))
        return float(expected[0]), float(p_up[0])

    def _outputs(self, raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.spec.task is Task.REGRESSION:
            return raw, ndtr(raw / self.residual_std)
        return (2.0 * raw - 1.0) * self.mean_abs_return, raw

    def save(self, directory: Path) -> None:
        """``model.json`` (everything but the estimator) and the estimator in its library's own format."""
        directory.mkdir(parents=True, exist_ok=True)
        adapter = _ADAPTERS[self.spec.family]
        adapter.save(self.estimator, directory / adapter.filename)
        meta = {
            "format_version": FORMAT_VERSION, "spec": self.spec.model_dump(mode="json"),
            "feature_columns": list(self.feature_columns), "feature_set": self.feature_set,
            "normalizer": self.normalizer.to_dict(), "residual_std": self.residual_std,
            "mean_abs_return": self.mean_abs_return, "estimator_file": adapter.filename, "extras": dict(self.extras),
        }
        (directory / "model.json").write_text(json.dumps(meta, indent=1, sort_keys=True))

    @classmethod
    def load(cls, directory: Path) -> TrainedModel:
        path = directory / "model.json"
        if not path.is_file():
            raise ValueError(f"no model.json in {directory}")
        meta = json.loads(path.read_text())
        if meta.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"{path}: format version {meta.get('format_version')!r}, this code reads "
                             f"{FORMAT_VERSION}")
        spec = ModelSpec.model_validate(meta["spec"])
        return cls(spec=spec, feature_columns=tuple(meta["feature_columns"]), feature_set=meta["feature_set"],
                   normalizer=Normalizer.from_dict(meta["normalizer"]),
                   estimator=_ADAPTERS[spec.family].load(directory / meta["estimator_file"]),
                   residual_std=float(meta["residual_std"]), mean_abs_return=float(meta["mean_abs_return"]),
                   extras={str(k): str(v) for k, v in meta.get("extras", {}).items()})


def fit(spec: ModelSpec, X: np.ndarray, y: np.ndarray, feature_columns: Sequence[str],
        feature_set: str) -> TrainedModel:
    """Train on the training rows only: X (rows x features, ``feature_columns`` order) and y, the rows' forward log
    returns (the classifier learns y > 0). The normaliser and both statistics come from these rows too."""
    if spec.family not in _ADAPTERS:
        raise ValueError(f"{spec.family} is a sequence family: quorum.learning.artifacts.fit_model trains it")
    X = _finite_matrix(X, "X")
    y = np.asarray(y, dtype=np.float64)
    columns = tuple(feature_columns)
    if y.shape != (X.shape[0],):
        raise ValueError(f"y must have shape ({X.shape[0]},) to match X, got {y.shape}")
    if not np.isfinite(y).all():
        raise ValueError("y has NaN or infinite values")
    if len(columns) != X.shape[1] or len(set(columns)) != len(columns):
        raise ValueError(f"feature_columns must name X's {X.shape[1]} columns once each, got {len(columns)} names "
                         f"({len(set(columns))} distinct)")
    if X.shape[0] < 2:
        raise ValueError("need at least 2 training rows")
    target = y if spec.task is Task.REGRESSION else (y > 0).astype(np.float64)
    if spec.task is Task.CLASSIFICATION and target.min() == target.max():
        raise ValueError("classification needs both up (y > 0) and down (y <= 0) rows in training")
    normalizer = Normalizer.fit(X)
    Z = normalizer.transform(X)
    adapter = _ADAPTERS[spec.family]
    estimator = adapter.train(spec.resolved_params(), spec.task, spec.seed, Z, target)
    raw = adapter.raw(estimator, spec.task, Z)
    mean_abs_return = float(np.abs(y).mean())
    expected = raw if spec.task is Task.REGRESSION else (2.0 * raw - 1.0) * mean_abs_return
    residual_std = max(float(np.std(y - expected)), MIN_RESIDUAL_STD)
    if not math.isfinite(residual_std):
        raise ValueError("training residuals are not finite")
    return TrainedModel(spec=spec, feature_columns=columns, feature_set=feature_set, normalizer=normalizer,
                        estimator=estimator, residual_std=residual_std, mean_abs_return=mean_abs_return)
