"""The order book of one symbol as the engine sees it: the levels of the snapshot in force plus what our own
takers already took from them, so one level is never sold twice within a snapshot. The next snapshot (or
candle) replaces the whole book, consumption included: it is the market's new word on what is there."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Any

from quorum.types import Side

Level = tuple[Decimal, Decimal]  # (price, quantity in base)
Take = tuple[int, Decimal, Decimal]  # (level index, price, quantity taken)
BPS = Decimal(10_000)


def round_to(value: Decimal, step: Decimal | None, up: bool = False) -> Decimal:
    """``value`` on a multiple of ``step`` (down unless ``up``); unchanged without a step."""
    if step is None:
        return value
    return (value / step).to_integral_value(rounding=ROUND_CEILING if up else ROUND_FLOOR) * step


@dataclass
class Book:
    ts: int
    bids: tuple[Level, ...]  # best (highest) first
    asks: tuple[Level, ...]  # best (lowest) first
    synthetic: bool = False
    used: dict[Side, list[Decimal]] = field(default_factory=dict)  # per taker side, per level

    def __post_init__(self) -> None:
        for side in Side:
            self.used.setdefault(side, [Decimal(0)] * len(self._levels(side)))

    @classmethod
    def snapshot(cls, ts: int, bids: Iterable[Sequence[Decimal]], asks: Iterable[Sequence[Decimal]],
                 synthetic: bool = False) -> Book:
        return cls(ts, tuple((p, q) for p, q in bids), tuple((p, q) for p, q in asks), synthetic)

    def _levels(self, taker: Side) -> tuple[Level, ...]:
        return self.asks if taker == Side.BUY else self.bids

    def plan(self, taker: Side, quantity: Decimal, limit: Decimal | None = None) -> list[Take]:
        """Walk the opposite side best first, up to ``limit``, without consuming anything yet (FOK needs to
        know the total before it commits)."""
        takes: list[Take] = []
        left = quantity
        for i, (price, qty) in enumerate(self._levels(taker)):
            if left <= 0 or (limit is not None and (price > limit if taker == Side.BUY else price < limit)):
                break
            take = min(left, qty - self.used[taker][i])
            if take > 0:
                takes.append((i, price, take))
                left -= take
        return takes

    def consume(self, taker: Side, takes: list[Take]) -> None:
        for i, _, qty in takes:
            self.used[taker][i] += qty

    def to_dict(self) -> dict[str, Any]:
        return {"ts": self.ts, "synthetic": self.synthetic,
                "bids": [[str(p), str(q)] for p, q in self.bids], "asks": [[str(p), str(q)] for p, q in self.asks],
                "used": {side.value: [str(q) for q in self.used[side]] for side in Side}}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Book:
        def levels(rows: list[list[str]]) -> tuple[Level, ...]:
            return tuple((Decimal(p), Decimal(q)) for p, q in rows)

        return cls(d["ts"], levels(d["bids"]), levels(d["asks"]), d["synthetic"],
                   {Side(s): [Decimal(q) for q in qs] for s, qs in d["used"].items()})


@dataclass(frozen=True)
class SyntheticBookModel:
    """The book assumed from a candle when the symbol has no order-book snapshots.

    mid = close. Level ``i`` (0 = best, ``levels`` per side) lies ``spread_bps / 2 + i * level_step_bps`` basis
    points from mid: bids at ``mid * (1 - off / 10_000)`` rounded down to the tick, asks at ``mid * (1 + off /
    10_000)`` rounded up (so the quoted spread is ``spread_bps``). Every level holds ``level_volume_fraction`` of
    the candle's base volume, rounded down to the lot step: a busier candle means a deeper book.
    """

    spread_bps: Decimal = Decimal("2")
    levels: int = 10
    level_step_bps: Decimal = Decimal("1")
    level_volume_fraction: Decimal = Decimal("0.005")

    def build(self, ts: int, close: Decimal, volume: Decimal, tick: Decimal | None = None,
              lot: Decimal | None = None) -> Book:
        qty = round_to(volume * self.level_volume_fraction, lot)
        offsets = [(self.spread_bps / 2 + i * self.level_step_bps) / BPS for i in range(self.levels)]
        bids = [(round_to(close * (1 - off), tick), qty) for off in offsets]
        asks = [(round_to(close * (1 + off), tick, up=True), qty) for off in offsets]
        return Book.snapshot(ts, bids, asks, synthetic=True)
