"""One training job, start to end: the dataset (with its leakage check), walk-forward scores against the naive
predictor and the champion, the model-driven council's walk-forward backtest per asset on the same folds (the
runner, after the venue's fees), the model fitted on every row, logged and registered in MLflow as the
``challenger``, and the promotion verdict. The trainer service and ``quorum train`` both run this.

Decisions recorded here: a global model (several symbols) gets ``symbol_code`` as a feature; the strategy
backtest is the council in Solo mode on the ``model`` strategy with the services' other settings, each asset its
own portfolio, so its gate reports are per asset like any configuration's.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

import polars as pl
from pydantic import BaseModel, ConfigDict, Field, model_validator

from quorum.backtest.config import RunnerConfig
from quorum.backtest.gates import GateReport, GateSettings, gate_each_asset
from quorum.backtest.walkforward import Fold, WindowMode, folds
from quorum.events.market_data import CandleClosed
from quorum.learning.artifacts import Model, is_policy
from quorum.learning.dataset import Dataset, DatasetSpec, build_dataset
from quorum.learning.drift import DRIFT_REFERENCE, reference_of_dataset
from quorum.learning.families import ModelSpec
from quorum.learning.promotion import CHALLENGER, CHAMPION, LearningSettings, Verdict, verdict
from quorum.learning.registry import ModelVersionInfo, Registry, UnknownModelError
from quorum.learning.scoring import ModelScore, fit_all, score
from quorum.learning.search import SearchBudget, SearchResult, search
from quorum.learning.serving import ServedModel, compatibility
from quorum.times import from_ms, timeframe_step, to_ms

MODEL_COUNCIL = {"mode": "SOLO", "solo_strategy": "model"}
POLICY_COUNCIL = {"mode": "SOLO", "solo_strategy": "policy"}


def council_for(model: Model) -> dict[str, Any]:
    """The council a model's backtest runs: Solo on the ``model`` strategy, or on the ``policy`` follower (added to
    the default strategies) for a position policy."""
    if not is_policy(model):
        return MODEL_COUNCIL
    from quorum.council.strategies import PolicyFollower, default_strategies

    return {**POLICY_COUNCIL, "strategies": (*default_strategies(), PolicyFollower(name="policy"))}
NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"


class FoldPlan(BaseModel):
    """Walk-forward folds in days (the embargo in bars); defaults: half a year of training, a quarter of test."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    train_days: float = Field(default=180, gt=0, le=3650)
    test_days: float = Field(default=90, gt=0, le=3650)
    embargo_bars: int = Field(default=24, ge=0, le=10_000)
    mode: WindowMode = WindowMode.ROLLING
    warmup_days: float = Field(default=30, gt=0, le=3650, description="bars fed before each strategy test window")

    def folds(self, start: datetime, end: datetime, timeframe: str) -> list[Fold]:
        return list(folds(start, end, train=timedelta(days=self.train_days), test=timedelta(days=self.test_days),
                          embargo=self.embargo_bars * timeframe_step(timeframe), mode=self.mode))


class TrainingRequest(BaseModel):
    """What to train: the registered model's name, the data, the family and its parameters, the folds."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model_name: str = Field(default="quorum-global", pattern=NAME_PATTERN)
    dataset: DatasetSpec = DatasetSpec(symbol_feature=True)
    model: ModelSpec = ModelSpec(family="lightgbm", task="classification")  # type: ignore[arg-type]
    folds: FoldPlan = FoldPlan()
    strategy_backtest: bool = Field(default=True, description="backtest the model-driven council on the folds")
    search: SearchBudget | None = Field(default=None, description="tune the family's parameters first, on the "
                                                                  "rows before the first test window")

    @model_validator(mode="after")
    def _global_models_know_the_symbol(self) -> TrainingRequest:
        if len(self.dataset.symbols) > 1 and not self.dataset.symbol_feature:
            raise ValueError("a global model (several symbols) needs dataset.symbol_feature: true")
        if self.model.per_symbol and not self.dataset.symbol_feature:
            raise ValueError("per-coin specialists (model.per_symbol) route by symbol: they need "
                             "dataset.symbol_feature: true")
        return self


@dataclass(frozen=True)
class Progress:
    stage: str  # dataset, folds, backtest, fit, register
    percent: float
    fold: int | None = None
    folds: int | None = None
    elapsed_s: float = 0.0


@dataclass(frozen=True)
class TrainingResult:
    version: ModelVersionInfo
    dataset: Dataset
    score: ModelScore
    strategy: dict[str, GateReport]  # per asset (empty: not run)
    strategy_skipped: str | None  # why there is no strategy backtest
    verdict: Verdict
    promoted: bool
    search: SearchResult | None = None

    def summary(self) -> dict[str, Any]:
        m = self.score.metrics
        return {"model": self.version.name, "version": self.version.version, "run_id": self.version.run_id,
                "aliases": list(self.version.aliases), "dataset_hash": self.dataset.content_hash,
                "rows": self.dataset.frame.height, "features": len(self.dataset.feature_columns),
                "folds": len(self.score.folds),
                "oos": {k: m[k] for k in ("rows", "mse", "naive_mse", "mse_vs_naive", "direction_accuracy",
                                          "always_up_accuracy", "brier")},
                "champion_oos": None if self.score.champion is None else {
                    k: self.score.champion[k] for k in ("mse", "direction_accuracy", "brier")},
                "strategy": {a: r.walk_forward.get("oos", {}).get("metrics", {}) for a, r in self.strategy.items()},
                "strategy_skipped": self.strategy_skipped, "verdict": self.verdict.as_dict(),
                "promoted": self.promoted, "search": None if self.search is None else self.search.as_dict()}


def frames_of(candles: Sequence[CandleClosed]) -> dict[str, pl.DataFrame]:
    """Per symbol, the OHLCV frame ``build_dataset`` takes, from the candles the runner takes (one source)."""
    rows: dict[str, list[tuple[int, float, float, float, float, float]]] = {}
    for c in candles:
        rows.setdefault(c.symbol, []).append((to_ms(c.ts), float(c.open), float(c.high), float(c.low),
                                              float(c.close), float(c.volume)))
    return {s: pl.DataFrame(r, schema=["ts", "open", "high", "low", "close", "volume"], orient="row")
            for s, r in rows.items()}


def _flat(metrics: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """The numeric metrics as MLflow takes them (lists such as the reliability bins stay in the summary)."""
    return {f"{prefix}{k}": float(v) for k, v in metrics.items()
            if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)}


def _champion(registry: Registry, name: str) -> Model | None:
    try:
        return registry.load(f"{name}@{CHAMPION}")[0]
    except UnknownModelError:
        return None


def _strategy(request: TrainingRequest, ds: Dataset, sc: ModelScore, fold_list: Sequence[Fold],
              candles: Sequence[CandleClosed], base: RunnerConfig,
              progress: Callable[[int, int], None]) -> dict[str, GateReport]:
    by_fold = {f.fold: m for f, m in zip(sc.folds, sc.models, strict=True)}
    config = replace(RunnerConfig.from_env(council=council_for(sc.models[0])), venue=base.venue, ledger=base.ledger)

    def config_for(fold: Fold) -> RunnerConfig:
        model = by_fold.get(fold)
        if model is None:  # a fold the model could not be trained for: the council gets no predictions
            return replace(config, predictor=None)
        return replace(config, predictor=ServedModel(model, request.model_name, "oos", None, ds.spec.horizon,
                                                     ds.spec.symbols))

    scored = [f.fold for f in sc.folds]
    return gate_each_asset(config_for, [c for c in candles if c.symbol in ds.spec.symbols], scored,
                           GateSettings().criteria(), config_hash=config.config_hash,
                           warmup=timedelta(days=request.folds.warmup_days), progress=progress)


def train(request: TrainingRequest, candles: Sequence[CandleClosed], registry: Registry, *, code_version: str,
          settings: LearningSettings | None = None, progress: Callable[[Progress], None] | None = None,
          base: RunnerConfig | None = None) -> TrainingResult:
    """Run one job over ``candles`` (any symbols; the dataset's are used). Raises ``LeakageError`` when a feature
    reads the future, ``ValueError`` for data that cannot make a dataset or a fold."""
    settings = settings or LearningSettings()
    started = time.monotonic()

    def say(stage: str, percent: float, fold: int | None = None, total: int | None = None) -> None:
        if progress is not None:
            progress(Progress(stage, round(percent, 1), fold, total, round(time.monotonic() - started, 2)))

    say("dataset", 0)
    ds = build_dataset(frames_of(candles), request.dataset)
    ts = ds.frame.get_column("ts")
    start = request.dataset.start or from_ms(int(ts.min()))  # type: ignore[arg-type]
    end = request.dataset.end or from_ms(int(ts.max())) + timeframe_step(request.dataset.timeframe)  # type: ignore[arg-type]
    fold_list = request.folds.folds(start, end, request.dataset.timeframe)
    if not fold_list:
        raise ValueError(f"the range {start.isoformat()} to {end.isoformat()} is shorter than one fold "
                         f"({request.folds.train_days} + {request.folds.test_days} days)")
    champion = _champion(registry, request.model_name)
    spec, searched = request.model, None
    if request.search is not None:
        say("search", 5)
        searched = search(ds, spec, request.search, fold_list,
                          progress=lambda n, total: say("search", 5 + 20 * n / total, n, total))
        spec = spec.model_copy(update={"params": searched.params})
    say("folds", 25 if searched else 5)
    sc = score(ds, spec, fold_list, champion=champion,
               progress=lambda n, total: say("folds", (25 if searched else 5) + (25 if searched else 45) * n / total,
                                             n, total))
    strategy: dict[str, GateReport] = {}
    skipped = None if request.strategy_backtest else "not asked for"
    if request.strategy_backtest:
        base = base or RunnerConfig.from_env()
        skipped = compatibility(sc.models[0], base.feature_set)
        if skipped is None:
            strategy = _strategy(request, ds, sc, fold_list, candles, base,
                                 lambda n, total: say("backtest", 50 + 35 * n / max(total, 1)))
    say("fit", 85)
    final = replace(fit_all(ds, spec), extras={DRIFT_REFERENCE: reference_of_dataset(ds).to_json()})
    has_champion = champion is not None
    found = verdict(sc, strategy, settings, has_champion=has_champion)
    say("register", 95)
    metrics = {**_flat(sc.metrics, "oos_"), **({} if sc.champion is None else _flat(sc.champion, "champion_oos_"))}
    for asset, report in strategy.items():
        slug = asset.replace("/", "_")
        metrics.update(_flat(report.walk_forward.get("oos", {}).get("metrics", {}), f"strategy_{slug}_"))
    tags = {"dataset_hash": ds.content_hash, "dataset_spec_hash": ds.spec.hash(),
            "dataset_spec": ds.spec.model_dump_json(), "code_version": code_version,
            "symbols": ",".join(ds.spec.symbols), "timeframe": ds.spec.timeframe, "horizon": str(ds.spec.horizon),
            "promotion": "passed" if found.promote else "failed: " + ", ".join(found.failed),
            "range": f"{start.isoformat()}/{end.isoformat()}"}
    params = {"folds": request.folds.model_dump_json()}
    if searched is not None:
        tags["search"] = json.dumps(searched.as_dict(), sort_keys=True)
    info = registry.log_model(request.model_name, final, params=params, metrics=metrics,
                              fold_metrics=[_flat(f.metrics) for f in sc.folds], tags=tags,
                              example=ds.feature_matrix()[:5])
    registry.set_alias(request.model_name, CHALLENGER, info.version)
    promoted = found.promote and settings.auto_promote
    if promoted:
        registry.set_alias(request.model_name, CHAMPION, info.version)
    info = next(v for v in registry.versions(request.model_name) if v.version == info.version)
    say("done", 100)
    return TrainingResult(info, ds, sc, strategy, skipped, found, promoted, searched)


def dataset_spec_of(info: ModelVersionInfo) -> DatasetSpec:
    """The dataset a registered version was trained on (its ``dataset_spec`` tag)."""
    text = info.tags.get("dataset_spec")
    if not text:
        raise ValueError(f"model {info.name}:{info.version} has no dataset_spec tag: it was not trained by Quorum")
    return DatasetSpec.model_validate_json(text)


def served(model: Model, info: ModelVersionInfo) -> ServedModel:
    """A registered version as inference and the runner serve it."""
    spec = dataset_spec_of(info)
    return ServedModel(model, info.name, info.version, info.run_id, spec.horizon, spec.symbols)
