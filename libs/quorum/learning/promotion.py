"""The promotion gate: a challenger becomes champion only if, out of sample, it beats the naive zero-return
predictor's MSE, beats the champion on the primary metric, and the model-driven council's backtest passes the
validation gates for every asset. Otherwise it stays challenger, the failed checks recorded with its version.
Pure: scores in, verdict out."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from quorum.backtest.gates import GateReport
from quorum.learning.scoring import PRIMARY_METRICS, ModelScore, is_better

CHALLENGER, CHAMPION = "challenger", "champion"
PrimaryMetric = Literal["mse", "mse_vs_naive", "brier", "direction_accuracy"]


class LearningSettings(BaseSettings):
    """What the trainer and ``quorum train`` promote by (``QUORUM_LEARNING_*``)."""

    model_config = SettingsConfigDict(env_prefix="QUORUM_LEARNING_", extra="ignore", frozen=True)

    primary_metric: PrimaryMetric = Field(default="direction_accuracy",
                                          description="what a challenger must beat the champion on")
    auto_promote: bool = Field(default=False, description="a challenger that passes every check becomes champion "
                                                          "at once (audited as SYSTEM); off: an operator promotes")
    require_gates: bool = Field(default=True, description="the model-driven council's walk-forward must pass the "
                                                          "validation gates (QUORUM_GATES_*) for every asset")


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "passed": self.passed, "detail": self.detail}


@dataclass(frozen=True)
class Verdict:
    checks: tuple[Check, ...]

    @property
    def promote(self) -> bool:
        return all(c.passed for c in self.checks)

    @property
    def failed(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.checks if not c.passed)

    def as_dict(self) -> dict[str, Any]:
        return {"promote": self.promote, "failed": list(self.failed), "checks": [c.as_dict() for c in self.checks]}


def _fmt(x: Any) -> str:
    return "n/a" if x is None else f"{x:.6g}"


def verdict(score: ModelScore, gates: Mapping[str, GateReport] | None, settings: LearningSettings,
            *, has_champion: bool) -> Verdict:
    m = score.metrics
    if m["mse"] is None:  # a position policy: no prediction to compare
        checks = [Check("beats_naive_mse", False, "a position policy predicts no return: it is judged by its "
                                                  "strategy backtest and promoted by an operator")]
    else:
        checks = [Check("beats_naive_mse", m["mse"] < m["naive_mse"],
                        f"out-of-sample MSE {_fmt(m['mse'])} vs the zero-return predictor's {_fmt(m['naive_mse'])}")]
    metric = settings.primary_metric
    if not has_champion:
        checks.append(Check("beats_champion", True, "no champion yet"))
    elif score.champion is None:
        checks.append(Check("beats_champion", False, "the champion could not be scored on this dataset"))
    else:
        word = "higher" if PRIMARY_METRICS[metric] else "lower"
        checks.append(Check("beats_champion", is_better(metric, m, score.champion),
                            f"{metric} {_fmt(m.get(metric))} vs the champion's {_fmt(score.champion.get(metric))} "
                            f"({word} is better)"))
    if settings.require_gates:
        if not gates:
            checks.append(Check("validation_gates", False, "no strategy backtest was run"))
        else:
            failing = sorted(a for a, r in gates.items() if not r.passed)
            checks.append(Check("validation_gates", not failing,
                                "passed for " + ", ".join(sorted(gates)) if not failing else
                                "failed for " + ", ".join(
                                    f"{a} ({', '.join(c.criterion.name for c in gates[a].criteria if not c.passed)})"
                                    for a in failing)))
    return Verdict(tuple(checks))
