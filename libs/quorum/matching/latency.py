"""The delay between an order leaving us and reaching the matching engine, in whole milliseconds.

Drawn from the engine's own seeded ``random.Random`` (never the global one), so a replay, or a restart from the
saved RNG state, sees the same delays."""

from __future__ import annotations

import random
from dataclasses import dataclass
from enum import StrEnum


class LatencyKind(StrEnum):
    FIXED = "fixed"  # always low_ms
    UNIFORM = "uniform"  # any whole ms in [low_ms, high_ms], equally likely
    NORMAL = "normal"  # normal(mean_ms, sd_ms) truncated to [low_ms, high_ms] by redrawing, then rounded


@dataclass(frozen=True)
class LatencyModel:
    kind: LatencyKind = LatencyKind.UNIFORM
    low_ms: int = 50
    high_ms: int = 200
    mean_ms: float = 100.0
    sd_ms: float = 40.0

    def __post_init__(self) -> None:
        if not 0 <= self.low_ms <= self.high_ms or self.sd_ms < 0:
            raise ValueError(f"bad latency model {self}")

    @classmethod
    def fixed(cls, ms: int) -> LatencyModel:
        return cls(LatencyKind.FIXED, ms, ms)

    def draw(self, rng: random.Random) -> int:
        if self.kind == LatencyKind.FIXED:
            return self.low_ms
        if self.kind == LatencyKind.UNIFORM:
            return rng.randint(self.low_ms, self.high_ms)
        for _ in range(100):  # a truncation window far in the tail would redraw for ever: clamp after 100 tries
            ms = round(rng.normalvariate(self.mean_ms, self.sd_ms))
            if self.low_ms <= ms <= self.high_ms:
                return ms
        return min(max(ms, self.low_ms), self.high_ms)
