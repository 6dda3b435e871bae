"""Every kind of model the learning loop trains, behind one fit and one load: the scorer, the registry and
inference call these and never ask which kind they hold. A model directory's ``model.json`` names its kind (none:
a single ``TrainedModel``, the first kind, whose files predate the field).

Sequence models (LSTM, Transformer) read a window of a symbol's rows, not one row: ``Windowed`` gives them the
one-row interface, taking the rows of X in time order (a dataset's order) and grouping them by ``symbol_code``;
``window`` says how many rows a prediction needs (1 for every other kind), and serving passes the earlier ones
(``ServedModel.predict_features``). torch is imported only when a sequence model is fitted or loaded.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from quorum.learning.dataset import SYMBOL_CODE
from quorum.learning.families import SEQUENCE_FAMILIES, Family, ModelSpec, TrainedModel, fit
from quorum.learning.specialists import KIND as SPECIALISTS
from quorum.learning.specialists import Specialists, fit_specialists

SEQUENCE, POLICY, STACKED = "sequence", "sharpe_policy", "stacked"


class Model(Protocol):
    """What every trained kind offers: its spec and columns, batch and one-row predictions, a directory format."""

    spec: Any
    feature_columns: tuple[str, ...]
    feature_set: str
    extras: Mapping[str, str]

    def predict(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...

    def predict_one(self, values: Mapping[str, float | None]) -> tuple[float, float] | None: ...

    def save(self, directory: Path) -> None: ...


def fit_model(spec: ModelSpec, X: np.ndarray, y: np.ndarray, feature_columns: Sequence[str],
              feature_set: str) -> Model:
    """``spec`` trained on these rows: per-coin specialists when it says so, else one model."""
    if spec.family in SEQUENCE_FAMILIES:
        if spec.per_symbol:
            raise ValueError(f"{spec.family} is one model over every symbol's windows: per_symbol is for trees")
        from quorum.learning.sequence import SequenceSpec, fit_sequence

        net_spec = SequenceSpec(architecture=spec.family.value, task=spec.task, seed=spec.seed,  # type: ignore[arg-type]
                                **spec.resolved_params())
        columns = tuple(feature_columns)
        return Windowed(fit_sequence(net_spec, X, y, _groups(np.asarray(X), columns), columns, feature_set))
    if spec.family is Family.META:
        from quorum.learning.stacking import fit_stacked

        if spec.per_symbol:
            raise ValueError("a meta-learner stacks its bases over every symbol: per_symbol is for trees")
        return fit_stacked(spec, X, y, feature_columns, feature_set)
    if spec.family is Family.SHARPE_POLICY:
        return _fit_policy(spec, np.asarray(X, dtype=np.float64), np.asarray(y, dtype=np.float64),
                           tuple(feature_columns), feature_set)
    if spec.per_symbol:
        return fit_specialists(spec, X, y, feature_columns, feature_set)
    return fit(spec, X, y, feature_columns, feature_set)


def _fit_policy(spec: ModelSpec, X: np.ndarray, y: np.ndarray, columns: tuple[str, ...],
                feature_set: str) -> Positioned:
    """One episode per symbol (its rows contiguous, in time order); ``symbol_code`` groups, it is not an input."""
    from quorum.learning.policy import PolicySpec, fit_policy

    if spec.per_symbol:
        raise ValueError("a position policy is one model over every symbol's episodes: per_symbol is for trees")
    p = spec.resolved_params()
    policy_spec = PolicySpec(hidden=(int(p.pop("hidden_size")),) * int(p.pop("layers")), seed=spec.seed, **p)
    groups = _groups(X, columns).astype(np.int64)
    order = np.lexsort((np.arange(len(X)), groups))
    keep = [i for i, c in enumerate(columns) if c != SYMBOL_CODE]
    policy = fit_policy(policy_spec, X[np.ix_(order, keep)], y[order], groups[order],
                        tuple(columns[i] for i in keep), feature_set)
    return Positioned(policy, columns)


def is_policy(model: Any) -> bool:
    """A model that gives a target position instead of predicting returns."""
    return isinstance(model, Positioned)


@dataclass(frozen=True)
class Positioned:
    """A position policy (``quorum.learning.policy.SharpePolicy``) behind the model interface: ``positions`` for
    rows, ``position_one`` for one; it predicts no return, so ``predict`` refuses."""

    policy: Any  # SharpePolicy
    feature_columns: tuple[str, ...]  # the policy's inputs, and symbol_code when its rows had one (not an input)
    extras: Mapping[str, str] = field(default_factory=dict, compare=False)

    @property
    def spec(self) -> ModelSpec:
        s = self.policy.spec
        params = {"hidden_size": s.hidden[0] if s.hidden else 1, "layers": len(s.hidden),
                  "learning_rate": s.learning_rate, "epochs": s.epochs, "patience": s.patience,
                  "validation_fraction": s.validation_fraction, "fee_rate": s.fee_rate,
                  "weight_decay": s.weight_decay}
        return ModelSpec(family=Family.SHARPE_POLICY, seed=s.seed, params=params)

    @property
    def feature_set(self) -> str:
        return str(self.policy.feature_set)

    def positions(self, X: np.ndarray) -> np.ndarray:
        keep = [i for i, c in enumerate(self.feature_columns) if c != SYMBOL_CODE]
        return self.policy.positions(np.asarray(X, dtype=np.float64)[:, keep])  # type: ignore[no-any-return]

    def position_one(self, values: Mapping[str, float | None]) -> float | None:
        return self.policy.position_one(values)  # type: ignore[no-any-return]

    def predict(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        raise ValueError("a position policy predicts no return: use positions")

    def predict_one(self, values: Mapping[str, float | None]) -> tuple[float, float] | None:
        raise ValueError("a position policy predicts no return: use position_one")

    def save(self, directory: Path) -> None:
        replace(self.policy, extras={**self.extras, "columns": json.dumps(list(self.feature_columns))}).save(directory)


def _groups(X: np.ndarray, columns: Sequence[str]) -> np.ndarray:
    """The rows' symbol codes (one series when the rows have none)."""
    return X[:, list(columns).index(SYMBOL_CODE)] if SYMBOL_CODE in columns else np.zeros(len(X))


def window_of(model: Any) -> int:
    """Rows of one symbol a prediction reads: the current one and ``window - 1`` before it."""
    return int(getattr(model, "window", 1))


@dataclass(frozen=True)
class Windowed:
    """A sequence network (``quorum.learning.sequence.SequenceModel``) behind the one-row interface."""

    net: Any  # SequenceModel
    extras: Mapping[str, str] = field(default_factory=dict, compare=False)

    @property
    def spec(self) -> ModelSpec:
        s = self.net.spec
        params = s.model_dump(exclude={"architecture", "task", "seed", "pooling"})
        return ModelSpec(family=s.architecture, task=s.task, seed=s.seed, params=params)

    @property
    def feature_columns(self) -> tuple[str, ...]:
        return tuple(self.net.feature_columns)

    @property
    def feature_set(self) -> str:
        return str(self.net.feature_set)

    @property
    def window(self) -> int:
        return int(self.net.window)

    def predict(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Every row of X with ``window - 1`` earlier rows of its symbol in X gets the network's prediction; the
        first rows of each symbol get the naive predictor's (0, 0.5): give X the rows before the ones wanted."""
        from quorum.learning.sequence import windows

        X = np.asarray(X, dtype=np.float64)
        expected, p_up = np.zeros(len(X)), np.full(len(X), 0.5)
        W, ends = windows(X, _groups(X, self.feature_columns), self.window)
        if len(ends):
            expected[ends], p_up[ends] = self.net.predict_windows(W)
        return expected, p_up

    def predict_one(self, values: Mapping[str, float | None]) -> tuple[float, float] | None:
        raise ValueError(f"a {self.net.spec.architecture} model reads {self.window} rows: use predict_recent")

    def predict_recent(self, rows: Sequence[Mapping[str, float | None]]) -> tuple[float, float] | None:
        return self.net.predict_recent(rows)  # type: ignore[no-any-return]

    def save(self, directory: Path) -> None:
        replace(self.net, extras=dict(self.extras)).save(directory)


def load_model(directory: Path) -> Model:
    path = directory / "model.json"
    if not path.is_file():
        raise ValueError(f"no model.json in {directory}")
    kind = json.loads(path.read_text()).get("kind")
    if kind is None:
        return TrainedModel.load(directory)
    if kind == SPECIALISTS:
        return Specialists.load(directory)
    if kind == STACKED:
        from quorum.learning.stacking import Stacked

        return Stacked.load(directory)
    if kind == POLICY:
        from quorum.learning.policy import SharpePolicy

        policy = SharpePolicy.load(directory)
        extras = dict(policy.extras)
        columns = tuple(json.loads(extras.pop("columns", "null")) or policy.feature_columns)
        return Positioned(policy, columns, extras)
    if kind == SEQUENCE:
        from quorum.learning.sequence import SequenceModel

        net = SequenceModel.load(directory)
        return Windowed(net, dict(net.extras))
    raise ValueError(f"{path}: unknown model kind {kind!r} (this code reads single models, {SPECIALISTS!r}, "
                     f"{SEQUENCE!r}, {POLICY!r} and {STACKED!r})")
