"""Per-coin specialists: one model of a family per symbol, each trained on its own symbol's rows only, behind the
same interface as one model (``TrainedModel``): the rows' ``symbol_code`` column routes each row to its symbol's
model and is not a feature of any of them.

Why a bundle and not one registered model per coin: a specialist set is scored, gated, registered, promoted,
served and rolled back as one version, so "global or specialists" is decided by the same promotion gate on the same
folds (a specialist bundle can challenge a global champion under the same registered name), and inference swaps all
coins at once: no coin is ever predicted by a mix of two versions.

A symbol the bundle has no member for (too few training rows in a fold: a coin listed later) gets the naive
predictor's output in batch scoring (expected return 0, P(up) 0.5), so it scores as "no skill" rather than failing
the job; served on a stream, it gets no prediction (``predict_one`` returns None), as a global model does for a
symbol it was not trained on.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from quorum.learning.dataset import SYMBOL_CODE
from quorum.learning.families import FORMAT_VERSION, ModelSpec, Task, TrainedModel, fit

KIND = "specialists"
MIN_MEMBER_ROWS = 50
"""Fewer training rows of a symbol than this and it gets no specialist (walk-forward's minimum for a fold)."""


@dataclass(frozen=True)
class Specialists:
    spec: ModelSpec  # per_symbol: true; the members' specs are the same with per_symbol false
    feature_columns: tuple[str, ...]  # the members' columns and ``symbol_code`` (routing only)
    feature_set: str
    members: Mapping[int, TrainedModel]  # symbol code -> its specialist
    extras: Mapping[str, str] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if SYMBOL_CODE not in self.feature_columns:
            raise ValueError(f"specialists route by {SYMBOL_CODE!r}, which is not among the feature columns")
        if not self.members:
            raise ValueError("specialists need at least one member")
        member_columns = self.member_columns
        for code, member in self.members.items():
            if member.feature_columns != member_columns or member.feature_set != self.feature_set:
                raise ValueError(f"specialist {code} reads {member.feature_columns} of {member.feature_set}, "
                                 f"the bundle {member_columns} of {self.feature_set}")

    @property
    def member_columns(self) -> tuple[str, ...]:
        return tuple(c for c in self.feature_columns if c != SYMBOL_CODE)

    def predict(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(expected_return, p_up) for every row of X (columns in ``feature_columns`` order), each row by its
        symbol's specialist; rows of a symbol without one get the naive predictor's (0, 0.5)."""
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != len(self.feature_columns):
            raise ValueError(f"X must have shape (rows, {len(self.feature_columns)}), got {X.shape}")
        code_at = self.feature_columns.index(SYMBOL_CODE)
        keep = [i for i, c in enumerate(self.feature_columns) if c != SYMBOL_CODE]
        codes = X[:, code_at]
        expected, p_up = np.zeros(len(X)), np.full(len(X), 0.5)
        for code, member in self.members.items():
            rows = np.flatnonzero(codes == code)
            if len(rows):
                expected[rows], p_up[rows] = member.predict(X[np.ix_(rows, keep)])
        return expected, p_up

    def predict_one(self, values: Mapping[str, float | None]) -> tuple[float, float] | None:
        code = values.get(SYMBOL_CODE)
        if code is None:
            raise ValueError(f"feature row lacks {SYMBOL_CODE!r}: specialists route by it")
        member = self.members.get(int(code))
        return None if member is None else member.predict_one(values)

    def save(self, directory: Path) -> None:
        """``model.json`` naming each member's folder, and every member in its own (``TrainedModel.save``)."""
        directory.mkdir(parents=True, exist_ok=True)
        folders = {str(code): f"member-{code}" for code in sorted(self.members)}
        for code, member in self.members.items():
            member.save(directory / folders[str(code)])
        meta = {"format_version": FORMAT_VERSION, "kind": KIND, "spec": self.spec.model_dump(mode="json"),
                "feature_columns": list(self.feature_columns), "feature_set": self.feature_set,
                "members": folders, "extras": dict(self.extras)}
        (directory / "model.json").write_text(json.dumps(meta, indent=1, sort_keys=True))

    @classmethod
    def load(cls, directory: Path) -> Specialists:
        meta = json.loads((directory / "model.json").read_text())
        if meta.get("format_version") != FORMAT_VERSION or meta.get("kind") != KIND:
            raise ValueError(f"{directory / 'model.json'}: not a specialist bundle of format {FORMAT_VERSION}")
        members = {int(code): TrainedModel.load(directory / folder) for code, folder in meta["members"].items()}
        return cls(spec=ModelSpec.model_validate(meta["spec"]), feature_columns=tuple(meta["feature_columns"]),
                   feature_set=meta["feature_set"], members=members,
                   extras={str(k): str(v) for k, v in meta.get("extras", {}).items()})


def fit_specialists(spec: ModelSpec, X: np.ndarray, y: np.ndarray, feature_columns: Sequence[str],
                    feature_set: str) -> Specialists:
    """One model of ``spec``'s family per symbol code in X's ``symbol_code`` column, on that symbol's rows."""
    columns = tuple(feature_columns)
    if SYMBOL_CODE not in columns:
        raise ValueError(f"per-symbol training needs the {SYMBOL_CODE!r} column (dataset.symbol_feature: true)")
    X, y = np.asarray(X, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if X.ndim != 2 or X.shape[1] != len(columns) or y.shape != (X.shape[0],):
        raise ValueError(f"X must be (rows, {len(columns)}) and y (rows,), got {X.shape} and {y.shape}")
    code_at = columns.index(SYMBOL_CODE)
    keep = [i for i, c in enumerate(columns) if c != SYMBOL_CODE]
    member_spec = spec.model_copy(update={"per_symbol": False})
    member_columns = tuple(columns[i] for i in keep)
    members: dict[int, TrainedModel] = {}
    codes = X[:, code_at]
    for code in np.unique(codes):
        rows = np.flatnonzero(codes == code)
        if len(rows) < MIN_MEMBER_ROWS:
            continue
        if spec.task is Task.CLASSIFICATION and len(np.unique(y[rows] > 0)) < 2:
            continue  # one-sided rows cannot train a classifier: the symbol gets no specialist
        members[int(code)] = fit(member_spec, X[np.ix_(rows, keep)], y[rows], member_columns, feature_set)
    if not members:
        raise ValueError(f"no symbol has {MIN_MEMBER_ROWS} training rows (with both up and down moves for a "
                         f"classifier): no specialist could be trained")
    return Specialists(spec=spec, feature_columns=columns, feature_set=feature_set, members=members)
