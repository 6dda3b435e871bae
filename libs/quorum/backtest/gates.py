"""Validation gates: what a configuration must show out of sample, per asset, before it may trade — enough trades
to mean something, a risk-adjusted return worth having, a drawdown one can live with. The thresholds are
settings (``QUORUM_GATES_*``); a report names every criterion with its figure and threshold, so a failure says
by how much.

Pure: metrics (a walk-forward's out-of-sample ones) in, a ``GateReport`` out.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from quorum.backtest.walkforward import Fold, WalkForwardResult, bars_to_feed, walk_forward

Op = Literal[">=", "<="]


@dataclass(frozen=True)
class Criterion:
    name: str
    metric: str  # a key of the metrics' ``as_dict()``
    op: Op
    threshold: float

    def check(self, figure: float | None) -> bool:
        """A figure that is missing or not a number (a Sharpe ratio of a flat curve) fails."""
        if figure is None or math.isnan(figure):
            return False
        return figure >= self.threshold if self.op == ">=" else figure <= self.threshold


class GateSettings(BaseSettings):
    """The seed's defaults: at least 500 trades, a Sharpe ratio of at least 2, a drawdown of at most 15 %."""

    model_config = SettingsConfigDict(env_prefix="QUORUM_GATES_", extra="ignore", frozen=True)

    min_trades: int = Field(default=500, ge=0, description="trades out of sample, at least")
    trades_metric: Literal["round_trips", "fills"] = Field(
        default="round_trips", description="what a trade is: a closed round trip (entry to flat), or one fill")
    min_sharpe: float = Field(default=2.0, description="annualized Sharpe ratio out of sample, at least")
    max_drawdown: float = Field(default=0.15, ge=0, le=1, description="deepest drawdown out of sample, at most "
                                                                      "(a fraction of the peak: 0.15 = 15 %)")

    def criteria(self) -> tuple[Criterion, ...]:
        return (Criterion("trades", self.trades_metric, ">=", self.min_trades),
                Criterion("sharpe", "sharpe", ">=", self.min_sharpe),
                Criterion("max_drawdown", "max_drawdown", "<=", self.max_drawdown))


@dataclass(frozen=True)
class CriterionResult:
    criterion: Criterion
    figure: float | None
    passed: bool

    def as_dict(self) -> dict[str, Any]:
        c = self.criterion
        return {"name": c.name, "metric": c.metric, "op": c.op, "threshold": c.threshold, "figure": self.figure,
                "passed": self.passed}


@dataclass(frozen=True)
class GateReport:
    asset: str
    config_hash: str
    passed: bool
    criteria: tuple[CriterionResult, ...]
    walk_forward: dict[str, Any] = field(default_factory=dict)  # the walk-forward's summary, when there was one

    def as_dict(self) -> dict[str, Any]:
        return {"asset": self.asset, "config_hash": self.config_hash, "passed": self.passed,
                "criteria": [c.as_dict() for c in self.criteria], "walk_forward": self.walk_forward}

    def row(self, backtest_id: Any = None) -> dict[str, Any]:
        """The ``gate_reports`` columns (``quorum.db.tables.backtests``) but id and created_at."""
        return {"asset": self.asset, "config_hash": self.config_hash, "passed": self.passed,
                "criteria": [c.as_dict() for c in self.criteria], "walk_forward": self.walk_forward,
                "backtest_id": backtest_id}


def _figure(metrics: Mapping[str, Any], name: str) -> float | None:
    value = metrics.get(name)
    if value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def evaluate(metrics: Any, criteria: Iterable[Criterion], *, asset: str, config_hash: str,
             walk_forward: dict[str, Any] | None = None) -> GateReport:
    """Every criterion against ``metrics`` (a mapping, or anything with ``as_dict()``); passed if all pass."""
    figures = metrics.as_dict() if hasattr(metrics, "as_dict") else metrics
    results = tuple(CriterionResult(c, f, c.check(f)) for c in criteria for f in (_figure(figures, c.metric),))
    return GateReport(asset, config_hash, all(r.passed for r in results), results, walk_forward or {})


def gate(result: WalkForwardResult, criteria: Iterable[Criterion], *, asset: str, config_hash: str) -> GateReport:
    """A walk-forward's out-of-sample metrics against the criteria, its summary kept with the report."""
    return evaluate(result.metrics, criteria, asset=asset, config_hash=config_hash, walk_forward=result.summary())


def gate_each_asset(config_for_fold: Callable[[Fold], Any], candles: Sequence[Any], fold_list: Sequence[Fold],
                    criteria: Sequence[Criterion], *, config_hash: str, warmup: timedelta | None = None,
                    progress: Callable[[int, int], None] | None = None,
                    on_result: Callable[[str, WalkForwardResult], None] | None = None,
                    **walk: Any) -> dict[str, GateReport]:
    """One walk-forward per symbol (its own portfolio, the same folds) and its gate report. ``progress(done,
    total)`` counts the bars fed over every symbol; ``on_result(symbol, result)`` sees each walk-forward (for
    its report); ``walk``: ``walk_forward``'s other keyword arguments."""
    by_symbol: dict[str, list[Any]] = {}
    for c in candles:
        by_symbol.setdefault(c.symbol, []).append(c)
    sizes = {s: bars_to_feed(series, fold_list, warmup) for s, series in by_symbol.items()}
    total, before = sum(sizes.values()), 0
    reports = {}
    for symbol, series in sorted(by_symbol.items()):
        def fed(done: int, _: int, offset: int = before) -> None:
            if progress is not None:
                progress(offset + done, total)

        result = walk_forward(config_for_fold, series, fold_list, warmup=warmup, progress=fed, **walk)
        reports[symbol] = gate(result, criteria, asset=symbol, config_hash=config_hash)
        if on_result is not None:
            on_result(symbol, result)
        before += sizes[symbol]
    return reports
