"""The optimizer: an Optuna study over the council's settings — its consensus threshold, each strategy's weight, a
few strategy parameters and the campaign parameters — scored out of sample for one target risk profile.

A trial is a configuration: the council's overrides (``RunnerConfig.from_env(council=...)``) with the target
profile for the council and risk. Its backtest score is a walk-forward's out-of-sample metric (Sharpe by default;
an undefined one, a curve that never moved, scores 0). A candidate whose out-of-sample drawdown is deeper than
the profile's ``optimizer_max_strategy_drawdown`` is rejected: the trial is PRUNED with the reason in its
``rejected`` attribute, so it can never be the best. The final score blends in how the configuration did live::

    final = (1 - w) * backtest score + w * live score

where the live score is the annualized Sharpe ratio of the returns of the campaigns (closed positions, from
``karma_votes``) opened while that very configuration (its ``config_hash``) was ACTIVE within the recent window,
and ``w`` is ``QUORUM_OPTIMIZER_LIVE_WEIGHT`` only with at least ``min_live_campaigns`` of them (else 0).

Only parameters that read the features the running feature set already computes are searched (thresholds,
levels, weights; never an indicator period), so an approved configuration needs no other service to change.

Deterministic: the TPE sampler is seeded, so the same candles, settings and seed give the same trials in a fresh
study. A study in the RDB storage (the ``optuna`` schema of the project's database) can be shared by several
workers or machines: give each its own seed.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from quorum.backtest.config import RunnerConfig
from quorum.backtest.walkforward import Fold, folds, span, walk_forward
from quorum.council.settings import CouncilConfig
from quorum.events.market_data import CandleClosed
from quorum.times import timeframe_step
from quorum.types import RiskProfile

if TYPE_CHECKING:
    import optuna

PROFILE_ALIAS = "QUORUM_RISK_PROFILE"  # the shared variable the council and risk read their profile from
OPTUNA_SCHEMA = "optuna"
YEAR_S = 365 * 86400
Metric = Literal["sharpe", "sortino", "calmar"]


class OptimizerSettings(BaseSettings):
    """``QUORUM_OPTIMIZER_*``: what a study searches for and how its best candidate is adopted."""

    model_config = SettingsConfigDict(env_prefix="QUORUM_OPTIMIZER_", extra="ignore", frozen=True)

    trials: int = Field(default=50, ge=1, le=100_000, description="trials per run (per worker)")
    seed: int = Field(default=0, ge=0, description="the TPE sampler's seed; give each worker of a study its own")
    startup_trials: int = Field(default=10, ge=1, description="random trials before TPE models the results")
    profile: RiskProfile = Field(default=RiskProfile.MEDIUM, description="the target risk profile")
    metric: Metric = Field(default="sharpe", description="the out-of-sample metric the backtest score is")
    live_weight: float = Field(default=0.2, ge=0.0, le=1.0,
                               description="w in final = (1 - w) backtest + w live; 0 disables the live score")
    min_live_campaigns: int = Field(default=10, ge=1, description="fewer closed live campaigns: no live weight")
    live_window_days: float = Field(default=30.0, gt=0, description="how recent a live campaign must be")
    require_approval: bool = Field(default=True, description="the best candidate is PROPOSED (else: ACTIVE)")
    storage_url: str | None = Field(default=None, description="Optuna's RDB storage (default: the project's "
                                                              "database, schema optuna)")
    train_bars: int = Field(default=500, ge=1, description="walk-forward training window, in bars")
    test_bars: int = Field(default=250, ge=1, description="walk-forward test window, in bars")
    embargo_bars: int = Field(default=0, ge=0)
    warmup_bars: int | None = Field(default=None, ge=1, description="feed each fold this many bars before its "
                                                                    "test window (default: from its train start)")


# --- the search space ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Param:
    """One searched setting. ``name``: ``threshold``, ``campaign.<field>`` or ``strategy.<instance>.<field>``."""

    name: str
    low: float
    high: float
    integer: bool = False

    def suggest(self, trial: optuna.Trial) -> float | int:
        if self.integer:
            return trial.suggest_int(self.name, int(self.low), int(self.high))
        return trial.suggest_float(self.name, self.low, self.high)

    def read(self, config: CouncilConfig) -> float | int:
        """The value ``config`` has (what a configuration is, in this parameter's terms)."""
        kind, *rest = self.name.split(".")
        if kind == "threshold":
            return config.threshold
        if kind == "campaign":
            return _number(getattr(config.campaign, rest[0]))
        instance, name = rest
        return _number(getattr(next(s for s in config.strategies if s.name == instance), name))


def _number(value: Any) -> float | int:
    return value if isinstance(value, int) and not isinstance(value, bool) else float(value)


# Parameters per strategy type: (field, low, high). Levels and thresholds only: the features stay the same.
STRATEGY_PARAMS: Mapping[str, tuple[tuple[str, float, float], ...]] = {
    "rsi": (("oversold", 15.0, 40.0), ("overbought", 60.0, 85.0)),
    "macd": (("full_strength_atr", 0.05, 1.0),),
    "bollinger": (("entry_position", -0.5, 0.3),),
    "composite": (("entry_level", 0.1, 0.6), ("exit_level", 0.1, 0.6)),
}
CAMPAIGN_PARAMS = (Param("campaign.take_profit_step", 0.01, 0.12),
                   Param("campaign.final_exit_streak", 1, 8, integer=True),
                   Param("campaign.deep_adverse_return", -0.2, -0.02))


def search_space(base: CouncilConfig) -> tuple[Param, ...]:
    """The threshold, every enabled strategy's weight, its type's parameters, and the campaign's."""
    out = [Param("threshold", 0.2, 0.8)]
    for s in base.strategies:
        if not s.enabled:
            continue
        out.append(Param(f"strategy.{s.name}.weight", 0.1, 3.0))
        kind = getattr(s, "type", "")
        out += [Param(f"strategy.{s.name}.{f}", lo, hi) for f, lo, hi in STRATEGY_PARAMS.get(kind, ())]
    return (*out, *CAMPAIGN_PARAMS)


def council_overrides(base: CouncilConfig, values: Mapping[str, float | int]) -> dict[str, Any]:
    """The council section of a configuration: ``base``'s threshold, strategies and campaign with ``values``
    applied, JSON-ready (what the ``configurations`` row and the activation command carry)."""
    strategies = [s.model_dump(mode="json") for s in base.strategies]
    campaign = base.campaign.model_dump(mode="json")
    threshold = base.threshold
    for name, value in values.items():
        kind, *rest = name.split(".")
        if kind == "threshold":
            threshold = float(value)
        elif kind == "campaign":
            campaign[rest[0]] = value
        elif kind == "strategy":
            instance, key = rest
            next(s for s in strategies if s["name"] == instance)[key] = value
        else:
            raise ValueError(f"unknown parameter {name!r}")
    return {"threshold": threshold, "strategies": strategies, "campaign": campaign}


def runner_config(council: Mapping[str, Any], profile: RiskProfile) -> RunnerConfig:
    """The services' settings with the council's ``council`` overrides, deciding for ``profile``."""
    return RunnerConfig.from_env(council={**council, PROFILE_ALIAS: profile.value},
                                 risk={PROFILE_ALIAS: profile.value})


# --- the live score -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ActivePeriod:
    config_hash: str
    start: datetime
    end: datetime | None  # None: still active


@dataclass(frozen=True)
class LiveCampaign:
    opened: datetime
    ret: float  # the campaign's return on its cost


@dataclass(frozen=True)
class LiveData:
    """What ran: the periods each configuration was ACTIVE and the campaigns that closed (paper or live)."""

    periods: tuple[ActivePeriod, ...] = ()
    campaigns: tuple[LiveCampaign, ...] = ()
    now: datetime | None = None


@dataclass(frozen=True)
class LiveScore:
    score: float | None
    campaigns: int


def campaigns_of(config_hash: str, live: LiveData, since: datetime) -> list[LiveCampaign]:
    """The campaigns opened while ``config_hash`` was ACTIVE, from ``since`` on."""
    periods = [p for p in live.periods if p.config_hash == config_hash]
    return [c for c in live.campaigns if c.opened >= since
            and any(p.start <= c.opened and (p.end is None or c.opened < p.end) for p in periods)]


def active_seconds(config_hash: str, live: LiveData, since: datetime) -> float:
    """How long ``config_hash`` was ACTIVE between ``since`` and ``live.now``."""
    now = live.now or since
    total = 0.0
    for p in live.periods:
        if p.config_hash == config_hash:
            lo, hi = max(p.start, since), min(p.end or now, now)
            total += max(0.0, (hi - lo).total_seconds())
    return total


def sharpe_of_campaigns(returns: Sequence[float], seconds: float) -> float | None:
    """Annualized Sharpe ratio of per-campaign returns: mean over standard deviation, times the square root of
    campaigns per year over the ``seconds`` they were run in. None when undefined (fewer than two, no spread)."""
    if len(returns) < 2 or seconds <= 0:
        return None
    sd = statistics.stdev(returns)
    if not sd > 0:
        return None
    value = statistics.fmean(returns) / sd * math.sqrt(len(returns) * YEAR_S / seconds)
    return value if math.isfinite(value) else None


def live_score(config_hash: str, live: LiveData, window: timedelta) -> LiveScore:
    if live.now is None:
        return LiveScore(None, 0)
    since = live.now - window
    found = campaigns_of(config_hash, live, since)
    return LiveScore(sharpe_of_campaigns([c.ret for c in found], active_seconds(config_hash, live, since)),
                     len(found))


def blend(backtest: float, live: LiveScore, *, weight: float, min_campaigns: int) -> tuple[float, float]:
    """(final score, the live weight used): too little live data, or none, gives the live score no weight."""
    w = weight if live.score is not None and live.campaigns >= min_campaigns else 0.0
    return (1.0 - w) * backtest + w * (live.score or 0.0), w


# --- one candidate --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Evaluation:
    """A configuration's scores on the study's walk-forward, and whether the profile allows it."""

    config_hash: str
    backtest_score: float
    final_score: float
    live: LiveScore
    live_weight: float
    max_drawdown: float  # out of sample, a fraction of the peak
    drawdown_limit: float  # the profile's, a fraction
    metrics: dict[str, Any]  # out-of-sample, JSON-ready

    @property
    def feasible(self) -> bool:
        return self.max_drawdown <= self.drawdown_limit

    @property
    def rejection(self) -> str | None:
        if self.feasible:
            return None
        return (f"out-of-sample drawdown {self.max_drawdown:.2%} exceeds the profile's "
                f"optimizer_max_strategy_drawdown {self.drawdown_limit:.2%}")

    def as_dict(self) -> dict[str, Any]:
        return {"config_hash": self.config_hash, "score": self.final_score, "backtest_score": self.backtest_score,
                "live_score": self.live.score, "live_campaigns": self.live.campaigns, "live_weight": self.live_weight,
                "max_drawdown": self.max_drawdown, "drawdown_limit": self.drawdown_limit, "feasible": self.feasible,
                "rejected": self.rejection, "oos": self.metrics}


def score_of(metrics: Mapping[str, Any], metric: Metric) -> float:
    """The metric, 0 where undefined (a flat curve has no risk-adjusted return, good or bad)."""
    value = metrics.get(metric)
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else 0.0


def drawdown_limit(config: RunnerConfig, profile: RiskProfile) -> float:
    return float(config.risk.config.profiles[profile].strategy_drawdown_limit_pct) / 100


@dataclass(frozen=True)
class Problem:
    """What every trial of a study is evaluated on: the candles, the folds, the profile and what ran live."""

    candles: Sequence[CandleClosed]
    plan: tuple[Fold, ...]
    settings: OptimizerSettings
    live: LiveData = field(default_factory=LiveData)

    @property
    def warmup(self) -> timedelta | None:
        w = self.settings.warmup_bars
        return None if w is None else w * timeframe_step(self.candles[0].timeframe)

    def evaluate(self, council: Mapping[str, Any]) -> Evaluation:
        s = self.settings
        config = runner_config(council, s.profile)
        result = walk_forward(lambda _: config, self.candles, self.plan, warmup=self.warmup)
        metrics = result.metrics.as_dict()
        backtest = score_of(metrics, s.metric)
        live = live_score(config.config_hash, self.live, timedelta(days=s.live_window_days))
        final, weight = blend(backtest, live, weight=s.live_weight, min_campaigns=s.min_live_campaigns)
        return Evaluation(config.config_hash, backtest, final, live, weight, float(metrics["max_drawdown"]),
                          drawdown_limit(config, s.profile), metrics)


def plan_folds(candles: Sequence[CandleClosed], settings: OptimizerSettings) -> tuple[Fold, ...]:
    """The walk-forward's folds over the candles, in bars of their timeframe."""
    bar = timeframe_step(candles[0].timeframe)
    start, end = span(candles)
    plan = tuple(folds(start, end, train=settings.train_bars * bar, test=settings.test_bars * bar,
                       embargo=settings.embargo_bars * bar))
    if not plan:
        raise ValueError(f"the candles ({start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M}) are shorter than one fold "
                         f"({settings.train_bars} + {settings.embargo_bars} + {settings.test_bars} bars)")
    return plan


# --- the study ------------------------------------------------------------------------------------------------
def storage_url(database_url: str) -> str:
    """The project's URL (``postgresql+asyncpg://``, or a plain one) for Optuna's synchronous engine (psycopg 3)."""
    for prefix in ("postgresql+asyncpg://", "postgresql+psycopg2://", "postgresql://", "postgres://"):
        if database_url.startswith(prefix):
            return "postgresql+psycopg://" + database_url[len(prefix):]
    return database_url


def open_study(name: str, settings: OptimizerSettings, storage: str | None) -> optuna.Study:
    """A new study, or the one of that name in ``storage`` (None: in memory) to join. Optuna's tables live in the
    ``optuna`` schema (migration 0010), apart from the project's."""
    import optuna

    rdb = None
    if storage is not None:
        rdb = optuna.storages.RDBStorage(storage_url(storage), engine_kwargs={
            "connect_args": {"options": f"-c search_path={OPTUNA_SCHEMA}"}, "pool_pre_ping": True})
    sampler = optuna.samplers.TPESampler(seed=settings.seed, n_startup_trials=settings.startup_trials)
    return optuna.create_study(study_name=name, storage=rdb, sampler=sampler, direction="maximize",
                               load_if_exists=True)


@dataclass(frozen=True)
class TrialOutcome:
    number: int
    state: str  # COMPLETE, PRUNED (rejected by the constraint) or FAIL
    params: dict[str, Any]
    evaluation: dict[str, Any]  # Evaluation.as_dict()
    overrides: dict[str, Any]

    @property
    def score(self) -> float | None:
        return self.evaluation.get("score")

    @property
    def rejected(self) -> str | None:
        return self.evaluation.get("rejected")


def outcome_of(trial: optuna.trial.FrozenTrial) -> TrialOutcome:
    attrs = trial.user_attrs
    return TrialOutcome(trial.number, trial.state.name, dict(trial.params), dict(attrs.get("evaluation", {})),
                        dict(attrs.get("overrides", {})))


def objective(problem: Problem, base: CouncilConfig, space: Sequence[Param]) -> Callable[[optuna.Trial], float]:
    """Suggest a configuration, score it; one the profile does not allow is pruned with the reason."""
    import optuna

    def run(trial: optuna.Trial) -> float:
        overrides = council_overrides(base, {p.name: p.suggest(trial) for p in space})
        ev = problem.evaluate(overrides)
        trial.set_user_attr("evaluation", ev.as_dict())
        trial.set_user_attr("overrides", overrides)
        if not ev.feasible:
            raise optuna.TrialPruned(ev.rejection)
        return ev.final_score

    return run


@dataclass(frozen=True)
class StudyResult:
    study: str
    trials: tuple[TrialOutcome, ...]  # this run's, in order
    best: TrialOutcome | None  # the study's best allowed candidate (every worker's trials)
    seconds: float

    @property
    def per_minute(self) -> float:
        return len(self.trials) * 60 / self.seconds if self.seconds > 0 else 0.0


def run_study(study: optuna.Study, problem: Problem, base: CouncilConfig, *, trials: int,
              on_trial: Callable[[TrialOutcome], None] | None = None,
              clock: Callable[[], float] | None = None) -> StudyResult:
    import time

    import optuna

    tick = clock or time.perf_counter
    space = search_space(base)
    before = len(study.trials)

    def told(_: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if on_trial is not None:
            on_trial(outcome_of(trial))

    started = tick()
    study.optimize(objective(problem, base, space), n_trials=trials, callbacks=[told])
    seconds = tick() - started
    mine = tuple(outcome_of(t) for t in study.trials[before:])
    complete = [t for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))]
    best = outcome_of(max(complete, key=lambda t: (t.value, -t.number))) if complete else None
    return StudyResult(study.study_name, mine, best, seconds)


def params_of(config: CouncilConfig, names: Iterable[str]) -> dict[str, float | int]:
    """A configuration's values of the searched parameters (the active one's, shown beside a candidate's)."""
    space = {p.name: p for p in search_space(config)}
    return {n: space[n].read(config) for n in names if n in space}
