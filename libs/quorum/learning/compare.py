"""Side by side: every model family on the same dataset and the same purged walk-forward folds, scored the same
way (``quorum compare-models``): the built-in baseline, the tree families, the LSTM and the Transformer, the
meta-learner stacking them, and the Sharpe-trained policy.

What each family is judged on, out of sample only:

* prediction: MSE against the zero-return predictor's, directional accuracy against "always up", Brier score and
  reliability bins (``scoring.prediction_metrics``); the policy predicts no return, so it has none;
* strategy, per asset, after fees: one rule for every predictor, long (fully) while P(up) > 0.5 + ``entry_margin``
  and flat otherwise; the policy holds its own position (flat to fully long). Bar returns, fees on every change of
  position and each test window starting flat come from the policy's reward formula (``policy.bar_returns``), so
  every family is charged the same way; beside buy-and-hold over the same bars with the same entry fee. This is a
  vectorised position rule, not the council: the council's backtest of a registered model is ``quorum train``'s
  and ``quorum evaluate``'s.

The meta-learner needs out-of-fold inputs: on the first fold it averages its bases (``mean``), on every later fold
it is fitted (``logistic``) on the bases' test-window predictions of the folds before it (each made by models that
never saw those rows), then applied to this fold's. Pure: candles in, a ``Comparison`` out.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from quorum.domain.models import MomentumBaseline
from quorum.learning.artifacts import fit_model
from quorum.learning.dataset import SYMBOL_CODE, Dataset, DatasetSpec, build_dataset
from quorum.learning.families import TREE_FAMILIES, ModelSpec, Task
from quorum.learning.meta import EXPECTED_SUFFIX, P_UP_SUFFIX, MetaSpec, fit_meta
from quorum.learning.policy import PolicySpec, bar_returns, fit_policy
from quorum.learning.scoring import prediction_metrics, splits
from quorum.learning.sequence import SequenceSpec, fit_sequence, windows
from quorum.learning.train import FoldPlan
from quorum.times import from_ms, timeframe_step

TREES = tuple(f.value for f in TREE_FAMILIES)
SEQUENCES = ("lstm", "transformer")
FAMILIES = ("baseline", *TREES, *SEQUENCES, "meta", "policy")
"""In report order: every family ``quorum compare-models`` knows."""


class CompareRequest(BaseModel):
    """The data, the folds and the families; the small defaults keep a two-year run within minutes here."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    dataset: DatasetSpec = DatasetSpec(symbol_feature=True)
    folds: FoldPlan = FoldPlan()
    families: tuple[str, ...] = FAMILIES
    task: Task = Task.CLASSIFICATION
    sequence: dict[str, Any] = Field(default_factory=lambda: {"window": 24, "hidden_size": 16, "max_epochs": 8,
                                                              "patience": 2, "batch_size": 512},
                                     description="SequenceSpec fields shared by the LSTM and the Transformer")
    policy: PolicySpec = PolicySpec()
    fee_rate: float = Field(default=0.001, ge=0, lt=1, description="per unit of position change")
    entry_margin: float = Field(default=0.05, ge=0, lt=0.5, description="long while P(up) > 0.5 + this")
    seed: int = Field(default=7, ge=0, le=2**31 - 1)

    @field_validator("families")
    @classmethod
    def _known(cls, families: tuple[str, ...]) -> tuple[str, ...]:
        unknown = sorted(set(families) - set(FAMILIES))
        if unknown or not families:
            raise ValueError(f"unknown families {unknown}; known: {', '.join(FAMILIES)}")
        return tuple(f for f in FAMILIES if f in families)  # report order, each once

    def sequence_spec(self, architecture: str) -> SequenceSpec:
        return SequenceSpec.model_validate({**self.sequence, "architecture": architecture, "task": self.task,
                                            "seed": self.seed})


@dataclass
class FamilyResult:
    family: str
    fit_seconds: float = 0.0
    predicted: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = field(default_factory=list, repr=False)
    # per fold: (test row indices, expected_return, p_up); the policy's p_up holds its position
    metrics: dict[str, Any] | None = None
    strategy: dict[str, dict[str, Any]] = field(default_factory=dict)
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"family": self.family, "fit_seconds": round(self.fit_seconds, 2), "metrics": self.metrics,
                "strategy": self.strategy, "note": self.note}


@dataclass(frozen=True)
class Comparison:
    request: CompareRequest
    dataset_hash: str
    folds: tuple[dict[str, str], ...]
    results: tuple[FamilyResult, ...]
    buy_and_hold: dict[str, dict[str, Any]]

    def as_dict(self) -> dict[str, Any]:
        return {"dataset_hash": self.dataset_hash, "folds": list(self.folds),
                "symbols": list(self.request.dataset.symbols), "fee_rate": self.request.fee_rate,
                "entry_margin": self.request.entry_margin, "buy_and_hold": self.buy_and_hold,
                "families": [r.as_dict() for r in self.results]}

    def table(self) -> str:
        """A markdown table: one row per family."""
        symbols = self.request.dataset.symbols
        bh = " · ".join(f"{_num(self.buy_and_hold[s]['sharpe'])} / {self.buy_and_hold[s]['max_drawdown']:.1%}"
                        for s in symbols)
        head = ("| family | fit s | rows | MSE / naive | direction | always up | Brier | strategy Sharpe / max DD / "
                f"entries, {' · '.join(s.split('/')[0] for s in symbols)} (buy-and-hold {bh}) |")
        lines = [head, "|---|---|---|---|---|---|---|---|"]
        for r in self.results:
            m = r.metrics
            pred = ("| – | – | – | – | –" if m is None else
                    f"| {m['rows']:,} | {m['mse_vs_naive']:.4f} | {m['direction_accuracy']:.2%} | "
                    f"{m['always_up_accuracy']:.2%} | {m['brier']:.4f}")
            strat = " · ".join(f"{_num(r.strategy[s]['sharpe'])} / {r.strategy[s]['max_drawdown']:.1%} / "
                               f"{r.strategy[s]['entries']}" for s in symbols if s in r.strategy)
            lines.append(f"| {r.family} | {r.fit_seconds:.1f} {pred} | {strat or r.note} |")
        return "\n".join(lines)

    def write(self, directory: Path) -> list[Path]:
        """``comparison.json`` and ``comparison.md`` (the table with the run's facts) in ``directory``."""
        directory.mkdir(parents=True, exist_ok=True)
        data, md = directory / "comparison.json", directory / "comparison.md"
        data.write_text(json.dumps(self.as_dict(), indent=1, sort_keys=True, default=_json))
        folds = ", ".join(f"{f['test_start'][:10]}..{f['test_end'][:10]}" for f in self.folds)
        md.write_text(f"# Model families side by side\n\nDataset {self.dataset_hash[:16]} "
                      f"({', '.join(self.request.dataset.symbols)}, {self.request.dataset.timeframe}); test windows "
                      f"{folds}; fee {self.request.fee_rate:.2%} per unit of position change; predictors long while "
                      f"P(up) > {0.5 + self.request.entry_margin:.2f}.\n\n{self.table()}\n")
        return [data, md]


def _num(x: float | None) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{x:.2f}"


def _json(x: Any) -> Any:
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, datetime):
        return x.isoformat()
    raise TypeError(f"{type(x).__name__} is not JSON serialisable")


# --- the families ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Data:
    ds: Dataset
    X: np.ndarray
    y: np.ndarray
    codes: np.ndarray
    ts: np.ndarray


def _baseline(data: _Data, train: np.ndarray, test: np.ndarray, request: CompareRequest) -> tuple[np.ndarray, ...]:
    """The built-in momentum formula on the same rows (its P(up) turned into a return as a classifier's is)."""
    model = MomentumBaseline()
    at = data.ds.feature_columns.index("close_over_ema")
    p_up = np.array([model.predict({"close_over_ema": float(x)}) for x in data.X[test, at]])
    return (2 * p_up - 1) * float(np.abs(data.y[train]).mean()), p_up


def _tree(family: str) -> Callable[..., tuple[np.ndarray, ...]]:
    def run(data: _Data, train: np.ndarray, test: np.ndarray, request: CompareRequest) -> tuple[np.ndarray, ...]:
        spec = ModelSpec(family=family, task=request.task, seed=request.seed)  # type: ignore[arg-type]
        model = fit_model(spec, data.X[train], data.y[train], data.ds.feature_columns,
                          data.ds.spec.feature_set.version)
        return model.predict(data.X[test])

    return run


def _sequence(architecture: str) -> Callable[..., tuple[np.ndarray, ...]]:
    def run(data: _Data, train: np.ndarray, test: np.ndarray, request: CompareRequest) -> tuple[np.ndarray, ...]:
        spec = request.sequence_spec(architecture)
        model = fit_sequence(spec, data.X[train], data.y[train], data.codes[train], data.ds.feature_columns,
                             data.ds.spec.feature_set.version)
        W, ends = windows(data.X, data.codes, spec.window)  # history before the test window is known at its start
        chosen = np.isin(ends, test)
        if chosen.sum() != len(test):
            raise ValueError(f"{architecture}: {len(test) - int(chosen.sum())} test rows lack a full "
                             f"{spec.window}-bar window")
        return model.predict_windows(W[chosen])

    return run


def _by_symbol_then_time(data: _Data, rows: np.ndarray) -> np.ndarray:
    return rows[np.lexsort((data.ts[rows], data.codes[rows]))]


def _policy(data: _Data, train: np.ndarray, test: np.ndarray, request: CompareRequest) -> tuple[np.ndarray, ...]:
    """The policy's positions (in the p_up slot; its expected return is undefined: NaN)."""
    ordered = _by_symbol_then_time(data, train)  # one episode per symbol, its rows contiguous and in time order
    keep = [i for i, c in enumerate(data.ds.feature_columns) if c != SYMBOL_CODE]
    columns = tuple(data.ds.feature_columns[i] for i in keep)
    spec = request.policy.model_copy(update={"fee_rate": request.fee_rate, "seed": request.seed})
    policy = fit_policy(spec, data.X[np.ix_(ordered, keep)], data.y[ordered], data.codes[ordered].astype(np.int64),
                        columns, data.ds.spec.feature_set.version)
    return np.full(len(test), np.nan), policy.positions(data.X[np.ix_(test, keep)])


RUNNERS: dict[str, Callable[..., tuple[np.ndarray, ...]]] = {
    "baseline": _baseline, **{f: _tree(f) for f in TREES}, **{a: _sequence(a) for a in SEQUENCES},
    "policy": _policy,
}


def _meta(results: Mapping[str, FamilyResult], folds: int, y: np.ndarray) -> FamilyResult:
    """Stacks the predicting bases (trees, sequences) fold by fold on out-of-fold inputs only."""
    bases = [r for name, r in results.items() if name in (*TREES, *SEQUENCES)]
    out = FamilyResult("meta")
    if not bases:
        out.note = "no base model in this run"
        return out
    started = time.perf_counter()
    history: list[tuple[dict[str, np.ndarray], np.ndarray]] = []
    for k in range(folds):
        test = bases[0].predicted[k][0]
        inputs = {}
        for b in bases:
            rows, expected, p_up = b.predicted[k]
            assert np.array_equal(rows, test)
            inputs[f"{b.family}{P_UP_SUFFIX}"], inputs[f"{b.family}{EXPECTED_SUFFIX}"] = p_up, expected
        if history:
            stacked = {n: np.concatenate([h[0][n] for h in history]) for n in inputs}
            learner = fit_meta(MetaSpec(combiner="logistic"), stacked, np.concatenate([h[1] for h in history]))
        else:
            learner = fit_meta(MetaSpec(combiner="mean"), inputs, y[test])  # fixed weights: fits nothing
        expected, p_up = learner.combine(inputs)
        out.predicted.append((test, expected, p_up))
        history.append((inputs, y[test]))
    out.fit_seconds = time.perf_counter() - started
    return out


# --- scoring ---------------------------------------------------------------------------------------------------

def _strategy(data: _Data, predicted: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]], *, fee: float,
              periods: float, positions_of: Callable[[np.ndarray], np.ndarray]) -> dict[str, dict[str, Any]]:
    from quorum.backtest.metrics import drawdown_series
    from quorum.learning.policy import equity_curve

    out = {}
    for code, symbol in enumerate(data.ds.spec.symbols):
        parts = [(rows[data.codes[rows] == code], positions_of(p)[data.codes[rows] == code], k)
                 for k, (rows, _, p) in enumerate(predicted)]
        rows = np.concatenate([p[0] for p in parts])
        if not len(rows):
            continue
        positions = np.concatenate([p[1] for p in parts])
        episodes = np.concatenate([np.full(len(p[0]), p[2]) for p in parts])  # each test window starts flat
        bars = bar_returns(positions, data.y[rows], fee, episodes)
        equity = equity_curve(positions, data.y[rows], fee, episodes=episodes)
        std = float(bars.std())
        previous = np.where(np.r_[True, episodes[1:] != episodes[:-1]], 0.0, np.r_[0.0, positions[:-1]])
        out[symbol] = {"sharpe": float(bars.mean() / std * math.sqrt(periods)) if std > 0 else None,
                       "total_return": float(equity[-1] - 1.0),
                       "max_drawdown": float(drawdown_series(np.r_[1.0, equity]).max()),
                       "entries": int(((previous == 0) & (positions > 0)).sum()),
                       "turnover": float(np.abs(positions - previous).sum()), "bars": int(len(rows))}
    return out


def compare(request: CompareRequest, frames: Mapping[str, Any], *,
            progress: Callable[[str, int, int], None] | None = None) -> Comparison:
    """Every requested family on ``frames`` (per symbol OHLCV, as ``build_dataset`` takes them)."""
    from quorum.backtest.metrics import periods_per_year

    ds = build_dataset(frames, request.dataset)
    ts = ds.frame.get_column("ts").to_numpy()
    plan = request.folds
    start = request.dataset.start or from_ms(int(ts.min()))
    end = request.dataset.end or from_ms(int(ts.max())) + timeframe_step(request.dataset.timeframe)
    chosen = splits(ds, plan.folds(start, end, request.dataset.timeframe))
    if not chosen:
        raise ValueError("no fold has enough training rows and a test row: use a longer range or shorter folds")
    codes = (ds.frame.get_column(SYMBOL_CODE).to_numpy() if SYMBOL_CODE in ds.feature_columns else
             np.zeros(ds.frame.height))
    data = _Data(ds, ds.feature_matrix(), ds.frame.get_column("label_return").to_numpy(), codes, ts)
    periods, fee = periods_per_year(request.dataset.timeframe), request.fee_rate
    results: dict[str, FamilyResult] = {}
    steps = [f for f in request.families if f != "meta"]
    for n, family in enumerate(steps, 1):
        result = results[family] = FamilyResult(family)
        for sp in chosen:
            started = time.perf_counter()
            expected, p_up = RUNNERS[family](data, sp.train, sp.test, request)
            result.fit_seconds += time.perf_counter() - started
            result.predicted.append((sp.test, np.asarray(expected), np.asarray(p_up)))
        if progress is not None:
            progress(family, n, len(steps) + ("meta" in request.families))
    if "meta" in request.families:
        results["meta"] = _meta(results, len(chosen), data.y)
    for r in results.values():
        if not r.predicted:
            continue
        if r.family == "policy":
            r.strategy = _strategy(data, r.predicted, fee=fee, periods=periods, positions_of=lambda p: p)
            r.note = "a position, not a prediction"
            continue
        y = np.concatenate([data.y[rows] for rows, _, _ in r.predicted])
        r.metrics = prediction_metrics(y, *(np.concatenate([p[i] for p in r.predicted]) for i in (1, 2)))
        margin = 0.5 + request.entry_margin
        r.strategy = _strategy(data, r.predicted, fee=fee, periods=periods,
                               positions_of=lambda p, m=margin: (p > m).astype(np.float64))
    hold = [(rows, np.zeros(len(rows)), np.ones(len(rows))) for rows, _, _ in next(iter(results.values())).predicted]
    buy_and_hold = _strategy(data, hold, fee=fee, periods=periods, positions_of=lambda p: p)
    folds = tuple(sp.fold.as_dict() for sp in chosen)
    return Comparison(request, ds.content_hash, folds, tuple(results[f] for f in request.families), buy_and_hold)
