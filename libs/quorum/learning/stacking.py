"""The meta-learner as a model like any other (family ``meta``): base models of other families and the
composition stacking them (``quorum.learning.meta``), trained, scored walk-forward, gated, registered, promoted and
served as one version.

How it trains on the rows it is given (a walk-forward fold's training rows, or every row for the version that is
registered): the bases are fitted on the earlier rows, less an embargo; they predict the latest
``holdout_fraction`` of the rows, which they never saw, and the composition is fitted on those out-of-sample
predictions; then every base is refitted on all the rows. The composition's inputs are named ``<family>.p_up``
and ``<family>.expected_return`` and sorted, so it does not depend on the order the bases are listed in.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from quorum.learning.families import FORMAT_VERSION, SEQUENCE_FAMILIES, TREE_FAMILIES, Family, ModelSpec, Task
from quorum.learning.meta import EXPECTED_SUFFIX, P_UP_SUFFIX, MetaLearner, MetaSpec, fit_meta

KIND = "stacked"
BASES = (*TREE_FAMILIES, *SEQUENCE_FAMILIES)
"""The families a meta-learner may stack, each switched on by its ``use_<family>`` parameter."""


def base_families(spec: ModelSpec) -> tuple[Family, ...]:
    params = spec.resolved_params()
    chosen = tuple(f for f in BASES if params[f"use_{f.value}"])
    if not chosen:
        raise ValueError("a meta-learner needs at least one base: set one of "
                         + ", ".join(f"use_{f.value}" for f in BASES))
    return chosen


@dataclass(frozen=True)
class Stacked:
    spec: ModelSpec  # family meta
    feature_columns: tuple[str, ...]
    feature_set: str
    bases: tuple[tuple[Family, Any], ...]  # (family, fitted model) in BASES order
    learner: MetaLearner
    extras: Mapping[str, str] = field(default_factory=dict, compare=False)

    @property
    def window(self) -> int:
        return max(int(getattr(m, "window", 1)) for _, m in self.bases)

    def predict(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Rows in time order (a dataset's): every base predicts them, the composition combines."""
        return self.learner.combine(_inputs({f: m.predict(X) for f, m in self.bases}))

    def predict_one(self, values: Mapping[str, float | None]) -> tuple[float, float] | None:
        return self.predict_recent([values])

    def predict_recent(self, rows: Sequence[Mapping[str, float | None]]) -> tuple[float, float] | None:
        """The series' latest rows, oldest first: each base reads what it needs (a window, or the last row)."""
        outs = {}
        for family, model in self.bases:
            got = model.predict_recent(rows) if getattr(model, "window", 1) > 1 else model.predict_one(rows[-1])
            if got is None:
                return None  # a base is still warming up: no composition without all its inputs
            outs[family] = (np.array([got[0]]), np.array([got[1]]))
        expected, p_up = self.learner.combine(_inputs(outs))
        return float(expected[0]), float(p_up[0])

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.learner.save(directory / "composition")
        for family, model in self.bases:
            model.save(directory / f"base-{family.value}")
        meta = {"format_version": FORMAT_VERSION, "kind": KIND, "spec": self.spec.model_dump(mode="json"),
                "feature_columns": list(self.feature_columns), "feature_set": self.feature_set,
                "bases": [f.value for f, _ in self.bases], "extras": dict(self.extras)}
        (directory / "model.json").write_text(json.dumps(meta, indent=1, sort_keys=True))

    @classmethod
    def load(cls, directory: Path) -> Stacked:
        from quorum.learning.artifacts import load_model

        meta = json.loads((directory / "model.json").read_text())
        if meta.get("kind") != KIND or meta.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"{directory / 'model.json'}: not a stacked model of format {FORMAT_VERSION}")
        bases = tuple((Family(f), load_model(directory / f"base-{f}")) for f in meta["bases"])
        return cls(spec=ModelSpec.model_validate(meta["spec"]), feature_columns=tuple(meta["feature_columns"]),
                   feature_set=meta["feature_set"], bases=bases, learner=MetaLearner.load(directory / "composition"),
                   extras={str(k): str(v) for k, v in meta.get("extras", {}).items()})


def _inputs(outs: Mapping[Family, tuple[np.ndarray, np.ndarray]]) -> dict[str, np.ndarray]:
    named = {}
    for family, (expected, p_up) in outs.items():
        named[f"{family.value}{P_UP_SUFFIX}"] = np.asarray(p_up, dtype=np.float64)
        named[f"{family.value}{EXPECTED_SUFFIX}"] = np.asarray(expected, dtype=np.float64)
    return named


def fit_stacked(spec: ModelSpec, X: np.ndarray, y: np.ndarray, feature_columns: Sequence[str],
                feature_set: str) -> Stacked:
    """Train the bases and the composition on these rows (time ordered), as the module docstring says."""
    from quorum.learning.artifacts import fit_model

    params = spec.resolved_params()
    families = base_families(spec)
    X, y = np.asarray(X, dtype=np.float64), np.asarray(y, dtype=np.float64)
    n = len(X)
    cut = int(n * (1 - float(params["holdout_fraction"])))
    fit_end = cut - int(params["embargo_rows"])
    if fit_end < 50 or n - cut < 50:
        raise ValueError(f"a meta-learner needs at least 50 rows to fit its bases and 50 to fit the composition "
                         f"on, after a {params['embargo_rows']}-row embargo; it got {n} rows")
    columns = tuple(feature_columns)

    def base(family: Family) -> ModelSpec:
        return ModelSpec(family=family, task=spec.task, seed=spec.seed)

    held_out = {}
    for family in families:
        early = fit_model(base(family), X[:fit_end], y[:fit_end], columns, feature_set)
        expected, p_up = early.predict(X)  # all rows: a windowed base reads the rows before the held-out ones
        held_out[family] = (expected[cut:], p_up[cut:])
    combiner = "logistic" if params["fitted"] and spec.task is Task.CLASSIFICATION else (
        "linear" if params["fitted"] else "mean")
    learner = fit_meta(MetaSpec(combiner=combiner, seed=spec.seed), _inputs(held_out), y[cut:])
    bases = tuple((family, fit_model(base(family), X, y, columns, feature_set)) for family in families)
    return Stacked(spec=spec, feature_columns=columns, feature_set=feature_set, bases=bases, learner=learner)
