"""A hyper-parameter search budget for a training job, tuned without touching the data it is judged on.

The search sees only the rows before the first out-of-sample test window of the job's folds (the first training
window and its embargo): inside them it runs its own walk-forward (inner folds a third and a sixth of that span)
and a seeded Optuna TPE study maximises the primary metric there. The parameters it picks are then scored on the
job's folds like hand-set ones, so the reported out-of-sample figures are not the ones the search chose by.
Same dataset, family and seed: the same trials and the same choice.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from quorum.backtest.walkforward import Fold
from quorum.learning.dataset import Dataset
from quorum.learning.families import Family, ModelSpec
from quorum.learning.scoring import PRIMARY_METRICS, score
from quorum.times import to_ms

# name -> (low, high, integer, log scale): the ranges a search draws from, per family
SPACES: Mapping[Family, Mapping[str, tuple[float, float, bool, bool]]] = {
    Family.XGBOOST: {"n_estimators": (50, 400, True, True), "max_depth": (2, 8, True, False),
                     "learning_rate": (0.01, 0.2, False, True), "min_child_weight": (1, 200, False, True),
                     "subsample": (0.5, 1.0, False, False), "colsample_bytree": (0.3, 1.0, False, False)},
    Family.LIGHTGBM: {"n_estimators": (50, 400, True, True), "num_leaves": (4, 63, True, True),
                      "max_depth": (2, 8, True, False), "learning_rate": (0.01, 0.2, False, True),
                      "min_child_samples": (10, 400, True, True), "colsample_bytree": (0.3, 1.0, False, False)},
    Family.RANDOM_FOREST: {"n_estimators": (50, 300, True, True), "max_depth": (3, 12, True, False),
                           "min_samples_leaf": (5, 400, True, True), "max_features": (0.1, 0.8, False, False)},
}


class SearchBudget(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    trials: int = Field(ge=1, le=200, description="parameter sets tried")
    metric: str = Field(default="direction_accuracy", pattern="^(mse|mse_vs_naive|brier|direction_accuracy)$")


@dataclass(frozen=True)
class SearchResult:
    params: dict[str, Any]
    value: float
    trials: int
    until: datetime  # the search saw rows before this only

    def as_dict(self) -> dict[str, Any]:
        return {"params": self.params, "value": self.value, "trials": self.trials, "until": self.until.isoformat()}


def _inner_folds(ds: Dataset, start: datetime, until: datetime) -> list[Fold]:
    span = until - start
    train, test = span / 3, span / 6
    out, k = [], 0
    while start + train + test * (k + 1) <= until:
        lo = start + test * k
        out.append(Fold(lo, lo + train, lo + train, lo + train + test))
        k += 1
    return out


def search(ds: Dataset, base: ModelSpec, budget: SearchBudget, outer: list[Fold],
           progress: Callable[[int, int], None] | None = None) -> SearchResult:
    """The best parameters for ``base``'s family on the rows before the first outer test window."""
    import optuna

    until = min(f.test_start for f in outer)
    ts = ds.frame.get_column("ts")
    start = min(f.train_start for f in outer)
    if int(ts.filter(ts < to_ms(until)).len()) == 0:
        raise ValueError("no rows before the first test window to search on")
    inner = _inner_folds(ds, start, until)
    if len(inner) < 2:
        raise ValueError("the first training window is too short for a parameter search (two inner folds needed)")
    higher = PRIMARY_METRICS[budget.metric]
    space = SPACES.get(base.family)
    if space is None:
        raise ValueError(f"no search space for {base.family}: give its parameters instead "
                         f"(searchable: {', '.join(sorted(SPACES))})")

    def objective(trial: optuna.Trial) -> float:
        params: dict[str, Any] = dict(base.params)
        for name, (lo, hi, integer, log) in space.items():
            params[name] = (trial.suggest_int(name, int(lo), int(hi), log=log) if integer
                            else trial.suggest_float(name, lo, hi, log=log))
        found = score(ds, base.model_copy(update={"params": params}), inner).metrics[budget.metric]
        return float(found if found is not None else (-1e9 if higher else 1e9))

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize" if higher else "minimize",
                                sampler=optuna.samplers.TPESampler(seed=base.seed))
    study.optimize(objective, n_trials=budget.trials,
                   callbacks=[lambda s, t: progress(len(s.trials), budget.trials)] if progress else None)
    best = {**base.params, **study.best_params}
    return SearchResult(best, float(study.best_value), budget.trials, until)
