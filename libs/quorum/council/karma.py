"""Karma: how right each producer and strategy has been, with the conviction it claimed at the time.

A vote's conviction is recorded when it is cast; its outcome is known only when the position it argued
about closes. A BUY was right when the campaign made money, a SELL (arguing to get out, or not to get in)
when it did not. Calibration compares claimed confidence with the realised hit rate, bin by bin.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from quorum.types import Action

BINS = 5


@dataclass(frozen=True)
class Observation:
    strategy: str
    producer: str
    direction: Action
    confidence: float
    outcome_return: float

    def __post_init__(self) -> None:
        if self.direction is Action.HOLD:
            raise ValueError("abstentions carry no conviction to score")

    @classmethod
    def from_row(cls, row: Any) -> Observation:
        """From a scored ``karma_votes`` row."""
        return cls(row.strategy, row.producer, Action(row.direction), row.confidence, row.outcome_return)

    @property
    def hit(self) -> bool:
        return self.outcome_return > 0 if self.direction is Action.BUY else self.outcome_return <= 0

    @property
    def signed_return(self) -> float:
        """The return as seen by the vote: what a BUY earned, or what a SELL avoided."""
        return self.outcome_return if self.direction is Action.BUY else -self.outcome_return


@dataclass(frozen=True)
class CalibrationBin:
    lower: float
    upper: float
    n: int
    mean_confidence: float | None
    hit_rate: float | None


@dataclass(frozen=True)
class Score:
    n: int
    hits: int
    hit_rate: float | None
    average_return: float | None
    brier: float | None  # mean squared gap between confidence and outcome; 0 is perfect
    calibration: tuple[CalibrationBin, ...]


def score(observations: Iterable[Observation]) -> Score:
    obs = list(observations)
    n = len(obs)
    hits = sum(o.hit for o in obs)
    bins = []
    for i in range(BINS):
        lo, hi = i / BINS, (i + 1) / BINS
        inside = [o for o in obs if lo <= o.confidence < hi or (i == BINS - 1 and o.confidence == 1.0)]
        bins.append(CalibrationBin(lo, hi, len(inside),
                                   _mean(o.confidence for o in inside), _mean(float(o.hit) for o in inside)))
    return Score(n=n, hits=hits, hit_rate=hits / n if n else None,
                 average_return=_mean(o.signed_return for o in obs),
                 brier=_mean((o.confidence - float(o.hit)) ** 2 for o in obs), calibration=tuple(bins))


def scorecard(observations: Iterable[Observation], by: str = "strategy") -> dict[str, Score]:
    """Scores grouped by ``strategy`` or by ``producer``."""
    if by not in ("strategy", "producer"):
        raise ValueError("group by 'strategy' or 'producer'")
    groups: dict[str, list[Observation]] = defaultdict(list)
    for o in observations:
        groups[getattr(o, by)].append(o)
    return {key: score(obs) for key, obs in sorted(groups.items())}


def adaptive_weights(scores: Mapping[str, Score], base: Mapping[str, float], *, min_samples: int = 20,
                     floor: float = 0.25, cap: float = 2.0) -> dict[str, float]:
    """Scale each base weight by twice its hit rate (a coin-flip record keeps the weight), clamped; a
    strategy with fewer than ``min_samples`` scored votes keeps its base weight."""
    out = {}
    for name, weight in base.items():
        s = scores.get(name)
        if s is None or s.n < min_samples or s.hit_rate is None:
            out[name] = weight
        else:
            out[name] = weight * min(cap, max(floor, 2 * s.hit_rate))
    return out


def _mean(values: Iterable[float]) -> float | None:
    vs = list(values)
    return sum(vs) / len(vs) if vs else None
