"""The meta-learner: stacks the base models' out-of-fold predictions (tree, sequence, regime models) into one
(expected return, P(up)) with a deterministic composition, so it can be registered and promoted through the same
gate as any base model.

Inputs are named columns, ``"<model>.<column>"``: ``*.p_up`` (a probability of a rise), ``*.expected_return`` (a
predicted log return) and any other named column (e.g. ``"regime.p_trending_up"``), which only the fitted
combiners use. Names are sorted before anything is computed, so the same mapping in any order gives bit-identical
fits, outputs and ``model.json``.

LEAKAGE: ``fit_meta`` must be given OUT-OF-FOLD base predictions (each row predicted by a base model that never
trained on it, e.g. the walk-forward test rows pooled with ``stack_folds``). Fitting on in-sample base predictions
teaches the combiner to trust whichever base model overfits most, and its scores would be fiction.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from scipy.special import expit, logit, ndtr

from quorum.learning.families import MIN_RESIDUAL_STD, Normalizer

META_KIND = "meta"
"""``model.json``'s "kind": tells a meta-learner's directory from a base model's."""

META_FORMAT_VERSION = 1
"""Of a meta-learner's ``model.json``: bump it when a field's meaning changes."""

P_UP_SUFFIX = ".p_up"
EXPECTED_SUFFIX = ".expected_return"

P_CLIP = 1e-6
"""Probabilities are clipped to [P_CLIP, 1 - P_CLIP] before a logit and after a linear fit: no infinite logits,
no certain predictions."""

Combiner = Literal["mean", "weights", "logistic", "linear"]
Transform = Literal["identity", "logit"]
Link = Literal["identity", "sigmoid", "clip"]


class MetaSpec(BaseModel):
    """How to combine: "mean" (equal weights), "weights" (fixed weights by input name, each group normalised to
    sum 1), "logistic" (P(up) from a logistic regression on the inputs' logits and the other columns; expected
    return from a ridge on the expected-return inputs) or "linear" (ridge for both). ``C`` is the logistic
    regression's inverse L2 strength, ``alpha`` the ridge's; both act on standardised inputs."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    combiner: Combiner
    weights: dict[str, float] | None = None
    C: float = Field(default=1.0, gt=0)
    alpha: float = Field(default=1.0, gt=0)
    seed: int = Field(default=7, ge=0, le=2**31 - 1)

    @field_validator("weights")
    @classmethod
    def _sorted_nonnegative(cls, weights: dict[str, float] | None) -> dict[str, float] | None:
        if weights is None:
            return None
        if not weights:
            raise ValueError("weights must name at least one input")
        for name, w in weights.items():
            if not math.isfinite(w) or w < 0:
                raise ValueError(f"weight of {name!r} must be finite and >= 0, got {w!r}")
        return dict(sorted(weights.items()))

    @model_validator(mode="after")
    def _weights_iff_weights_combiner(self) -> MetaSpec:
        if (self.combiner == "weights") != (self.weights is not None):
            raise ValueError("weights are required by, and only by, the 'weights' combiner")
        return self


@dataclass(frozen=True)
class Head:
    """One output as ``link(intercept + sum_i coef_i * z_i)`` with ``z_i = (transform_i(x_i) - mean_i) / std_i``:
    one shape for the fixed and the fitted combiners, stored as plain floats. Coefficients are on the standardised
    inputs (the fixed combiners use mean 0, std 1), so their sizes compare across inputs."""

    columns: tuple[str, ...]
    transforms: tuple[Transform, ...]
    normalizer: Normalizer
    coef: tuple[float, ...]
    intercept: float
    link: Link

    def weights(self) -> dict[str, float]:
        """Coefficient by input name."""
        return dict(zip(self.columns, self.coef, strict=True))

    def features(self, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
        """The transformed (not yet standardised) inputs as rows x columns, in ``columns`` order."""
        return np.column_stack([_transform(inputs[c], t) for c, t in zip(self.columns, self.transforms,
                                                                          strict=True)])

    def apply(self, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
        Z = self.normalizer.transform(self.features(inputs))
        total = np.full(Z.shape[0], self.intercept)
        for j, c in enumerate(self.coef):  # column by column, not BLAS: a row's bits do not depend on the row count
            total = total + c * Z[:, j]
        if self.link == "sigmoid":
            return expit(total)
        if self.link == "clip":
            return np.clip(total, P_CLIP, 1.0 - P_CLIP)
        return total

    def to_dict(self) -> dict[str, Any]:
        return {"columns": list(self.columns), "transforms": list(self.transforms),
                "normalizer": self.normalizer.to_dict(), "coef": list(self.coef), "intercept": self.intercept,
                "link": self.link}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Head:
        return cls(columns=tuple(data["columns"]), transforms=tuple(data["transforms"]),
                   normalizer=Normalizer.from_dict(data["normalizer"]), coef=tuple(float(c) for c in data["coef"]),
                   intercept=float(data["intercept"]), link=data["link"])


def _transform(x: np.ndarray, transform: Transform) -> np.ndarray:
    return logit(np.clip(x, P_CLIP, 1.0 - P_CLIP)) if transform == "logit" else x


@dataclass(frozen=True)
class MetaLearner:
    """A fitted composition. Missing heads fall back like a base model's other half: no P(up) head gives
    ``Phi(expected / residual_std)``, no expected-return head gives ``(2 p_up - 1) * mean_abs_return``, both
    statistics of the fit rows."""

    spec: MetaSpec
    input_names: tuple[str, ...]  # sorted
    p_up_head: Head | None
    expected_head: Head | None
    residual_std: float
    mean_abs_return: float

    def combine(self, inputs: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """(expected_return, p_up) per row; ``inputs`` must hold exactly ``input_names``, in any order."""
        columns = _checked_inputs(inputs, expected_names=self.input_names)
        return self._outputs(columns)

    def combine_one(self, values: Mapping[str, float]) -> tuple[float, float]:
        """One row by name; bit-identical to that row of ``combine``."""
        expected, p_up = self.combine({name: np.array([v], dtype=np.float64) for name, v in values.items()})
        return float(expected[0]), float(p_up[0])

    def _outputs(self, columns: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        expected = None if self.expected_head is None else self.expected_head.apply(columns)
        p_up = None if self.p_up_head is None else self.p_up_head.apply(columns)
        if p_up is None:
            p_up = ndtr(expected / self.residual_std)
        if expected is None:
            expected = (2.0 * p_up - 1.0) * self.mean_abs_return
        return expected, p_up

    def save(self, directory: Path) -> None:
        """``model.json`` only: every coefficient is a plain float, nothing is pickled."""
        directory.mkdir(parents=True, exist_ok=True)
        meta = {
            "kind": META_KIND, "format_version": META_FORMAT_VERSION, "spec": self.spec.model_dump(mode="json"),
            "input_names": list(self.input_names),
            "p_up_head": None if self.p_up_head is None else self.p_up_head.to_dict(),
            "expected_head": None if self.expected_head is None else self.expected_head.to_dict(),
            "residual_std": self.residual_std, "mean_abs_return": self.mean_abs_return,
        }
        (directory / "model.json").write_text(json.dumps(meta, indent=1, sort_keys=True))

    @classmethod
    def load(cls, directory: Path) -> MetaLearner:
        path = directory / "model.json"
        if not path.is_file():
            raise ValueError(f"no model.json in {directory}")
        meta = json.loads(path.read_text())
        if meta.get("kind") != META_KIND:
            raise ValueError(f"{path}: kind {meta.get('kind')!r} is not a meta-learner ({META_KIND!r})")
        if meta.get("format_version") != META_FORMAT_VERSION:
            raise ValueError(f"{path}: format version {meta.get('format_version')!r}, this code reads "
                             f"{META_FORMAT_VERSION}")
        heads = {k: None if meta[k] is None else Head.from_dict(meta[k]) for k in ("p_up_head", "expected_head")}
        return cls(spec=MetaSpec.model_validate(meta["spec"]), input_names=tuple(meta["input_names"]), **heads,
                   residual_std=float(meta["residual_std"]), mean_abs_return=float(meta["mean_abs_return"]))


# --- fitting ---------------------------------------------------------------------------------------------------

def fit_meta(spec: MetaSpec, inputs: Mapping[str, np.ndarray], y: np.ndarray) -> MetaLearner:
    """Fit the composition to ``y``, the rows' forward log returns. ``inputs`` MUST be out-of-fold base
    predictions of those rows (see the module docstring: in-sample ones leak)."""
    y = np.asarray(y, dtype=np.float64)
    if y.ndim != 1 or len(y) < 2:
        raise ValueError(f"y must be 1-d with at least 2 rows, got shape {y.shape}")
    if not np.isfinite(y).all():
        raise ValueError("y has NaN or infinite values")
    columns = _checked_inputs(inputs, rows=len(y))
    names = tuple(columns)
    p_names = tuple(n for n in names if n.endswith(P_UP_SUFFIX))
    e_names = tuple(n for n in names if n.endswith(EXPECTED_SUFFIX))
    others = tuple(n for n in names if n not in p_names and n not in e_names)
    if spec.combiner in ("mean", "weights"):
        if others:
            raise ValueError(f"the {spec.combiner!r} combiner averages only '*{P_UP_SUFFIX}' and "
                             f"'*{EXPECTED_SUFFIX}' inputs; {others[0]!r} is neither (use 'logistic' or 'linear')")
        weights = _fixed_weights(spec, names)
        p_head = _average_head(p_names, weights, "p_up")
        e_head = _average_head(e_names, weights, "expected_return")
    else:
        up = (y > 0).astype(np.float64)
        if up.min() == up.max():
            raise ValueError(f"the {spec.combiner!r} combiner needs both up (y > 0) and down (y <= 0) rows")
        p_features = p_names + others
        p_head = e_head = None
        if p_features:
            transforms = tuple("logit" if n in p_names and spec.combiner == "logistic" else "identity"
                               for n in p_features)
            p_head = _fitted_head(spec, p_features, transforms, columns, up,
                                  "sigmoid" if spec.combiner == "logistic" else "clip")
        if e_names:
            e_head = _fitted_head(spec, e_names, ("identity",) * len(e_names), columns, y, "identity")
    mean_abs_return = float(np.abs(y).mean())
    draft = MetaLearner(spec, names, p_head, e_head, residual_std=1.0, mean_abs_return=mean_abs_return)
    expected, _ = draft._outputs(columns)
    residual_std = max(float(np.std(y - expected)), MIN_RESIDUAL_STD)
    return MetaLearner(spec, names, p_head, e_head, residual_std=residual_std, mean_abs_return=mean_abs_return)


def _fixed_weights(spec: MetaSpec, names: tuple[str, ...]) -> dict[str, float]:
    if spec.weights is None:
        return dict.fromkeys(names, 1.0)
    missing = [n for n in names if n not in spec.weights]
    if missing:
        raise ValueError(f"weights lack input {missing[0]!r} (weights must name exactly the inputs)")
    extra = [n for n in spec.weights if n not in names]
    if extra:
        raise ValueError(f"weights name {extra[0]!r}, which is not an input (weights must name exactly the inputs)")
    return spec.weights


def _average_head(names: tuple[str, ...], weights: Mapping[str, float], what: str) -> Head | None:
    """A weighted average (weights normalised to sum 1): P(up) stays a probability, the expected return keeps the
    base models' scale."""
    if not names:
        return None
    total = math.fsum(weights[n] for n in names)
    if total <= 0:
        raise ValueError(f"the weights of the {what} inputs {list(names)} sum to 0")
    k = len(names)
    return Head(columns=names, transforms=("identity",) * k, normalizer=Normalizer(np.zeros(k), np.ones(k)),
                coef=tuple(weights[n] / total for n in names), intercept=0.0, link="identity")


def _fitted_head(spec: MetaSpec, names: tuple[str, ...], transforms: tuple[Transform, ...],
                 columns: Mapping[str, np.ndarray], target: np.ndarray, link: Link) -> Head:
    from sklearn.linear_model import LogisticRegression, Ridge

    draft = Head(names, transforms, Normalizer(np.zeros(len(names)), np.ones(len(names))), (), 0.0, link)
    F = draft.features(columns)
    normalizer = Normalizer.fit(F)
    Z = normalizer.transform(F)
    if link == "sigmoid":
        model = LogisticRegression(C=spec.C, solver="lbfgs", max_iter=1000, random_state=spec.seed).fit(Z, target)
        coef, intercept = model.coef_[0], model.intercept_[0]
    else:
        model = Ridge(alpha=spec.alpha, solver="cholesky").fit(Z, target)
        coef, intercept = model.coef_, model.intercept_
    return Head(names, transforms, normalizer, tuple(float(c) for c in coef), float(intercept), link)


def _checked_inputs(inputs: Mapping[str, np.ndarray], *, rows: int | None = None,
                    expected_names: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """The inputs as float arrays in sorted name order, checked: exactly ``expected_names`` (when given), 1-d, one
    length (``rows`` when given), finite, and every ``*.p_up`` within [0, 1]."""
    if not inputs:
        raise ValueError("no inputs: the meta-learner needs at least one base model column")
    if expected_names is not None:
        missing = sorted(set(expected_names) - set(inputs))
        if missing:
            raise ValueError(f"inputs lack {missing[0]!r} (the meta-learner needs {list(expected_names)})")
        extra = sorted(set(inputs) - set(expected_names))
        if extra:
            raise ValueError(f"input {extra[0]!r} is not one the meta-learner was fitted on {list(expected_names)}")
    out: dict[str, np.ndarray] = {}
    for name in sorted(inputs):
        if not isinstance(name, str) or not name:
            raise ValueError(f"input names must be non-empty strings, got {name!r}")
        x = np.asarray(inputs[name], dtype=np.float64)
        rows = len(x) if rows is None and x.ndim == 1 else rows
        if x.ndim != 1 or len(x) != rows:
            raise ValueError(f"input {name!r} must be 1-d with {rows} rows, got shape {x.shape}")
        if not np.isfinite(x).all():
            raise ValueError(f"input {name!r} has NaN or infinite values")
        if name.endswith(P_UP_SUFFIX) and ((x < 0).any() or (x > 1).any()):
            raise ValueError(f"input {name!r} is a probability but has values outside [0, 1]")
        out[name] = x
    return out


def stack_folds(fold_inputs: Sequence[Mapping[str, np.ndarray]],
                fold_y: Sequence[np.ndarray]) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Each fold's out-of-fold predictions and labels, concatenated in fold order into ``fit_meta``'s inputs: every
    fold must name the same inputs, and each input must have as many rows as that fold's labels."""
    if not fold_inputs or len(fold_inputs) != len(fold_y):
        raise ValueError(f"need one label array per fold and at least one fold, got {len(fold_inputs)} input sets "
                         f"and {len(fold_y)} label arrays")
    names = sorted(fold_inputs[0])
    parts: list[dict[str, np.ndarray]] = []
    labels: list[np.ndarray] = []
    for i, (inputs, y) in enumerate(zip(fold_inputs, fold_y, strict=True)):
        if sorted(inputs) != names:
            differ = sorted(set(inputs) ^ set(names))
            raise ValueError(f"fold {i} names inputs {sorted(inputs)}, fold 0 names {names} (differ: {differ})")
        y = np.asarray(y, dtype=np.float64)
        if y.ndim != 1:
            raise ValueError(f"fold {i} labels must be 1-d, got shape {y.shape}")
        try:
            parts.append(_checked_inputs(inputs, rows=len(y)))
        except ValueError as bad:
            raise ValueError(f"fold {i}: {bad}") from None
        labels.append(y)
    return {n: np.concatenate([p[n] for p in parts]) for n in names}, np.concatenate(labels)
