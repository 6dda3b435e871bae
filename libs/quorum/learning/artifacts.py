"""Every kind of model the learning loop trains, behind one fit and one load: the scorer, the registry and
inference call these and never ask which kind they hold. A model directory's ``model.json`` names its kind (none:
a single ``TrainedModel``, the first kind, whose files predate the field)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from quorum.learning.families import ModelSpec, TrainedModel, fit
from quorum.learning.specialists import KIND as SPECIALISTS
from quorum.learning.specialists import Specialists, fit_specialists


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
    if spec.per_symbol:
        return fit_specialists(spec, X, y, feature_columns, feature_set)
    return fit(spec, X, y, feature_columns, feature_set)


def load_model(directory: Path) -> Model:
    path = directory / "model.json"
    if not path.is_file():
        raise ValueError(f"no model.json in {directory}")
    kind = json.loads(path.read_text()).get("kind")
    if kind is None:
        return TrainedModel.load(directory)
    if kind == SPECIALISTS:
        return Specialists.load(directory)
    raise ValueError(f"{path}: unknown model kind {kind!r} (this code serves single models and {SPECIALISTS!r}; "
                     f"{', '.join(repr(k) for k in UNSERVED)} models are trained and compared, not served yet)")


UNSERVED = ("sequence", "sharpe_policy", "meta")
"""Kinds ``quorum compare-models`` trains that the registry and inference do not take yet."""
