"""Kill switch: a close-only state, portfolio-wide or per symbol. Exits still go (risk lets sells through);
new buys are refused. Engaged by an operator or automatically after a losing streak; released only by hand."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal
from types import MappingProxyType
from typing import TypeVar

GLOBAL = "*"  # the portfolio-wide scope's key in streaks and reasons
V = TypeVar("V")


def _frozen(mapping: Mapping[str, V]) -> Mapping[str, V]:
    return MappingProxyType(dict(mapping))


@dataclass(frozen=True)
class KillState:
    global_engaged: bool = False
    symbols: frozenset[str] = frozenset()
    losing_streaks: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    reasons: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))


def _key(scope: str | None) -> str:
    return GLOBAL if scope is None else scope


def _engaged(state: KillState, key: str) -> bool:
    return state.global_engaged if key == GLOBAL else key in state.symbols


def engage(state: KillState, scope: str | None, reason: str) -> KillState:
    """``scope`` None is global."""
    key = _key(scope)
    return replace(state, global_engaged=state.global_engaged or key == GLOBAL,
                   symbols=state.symbols | ({key} - {GLOBAL}), reasons=_frozen({**state.reasons, key: reason}))


def release(state: KillState, scope: str | None) -> KillState:
    """Also resets the scope's losing streak, so it does not re-engage on the next loss."""
    key = _key(scope)
    return replace(state, global_engaged=state.global_engaged and key != GLOBAL, symbols=state.symbols - {key},
                   losing_streaks=_frozen({k: n for k, n in state.losing_streaks.items() if k != key}),
                   reasons=_frozen({k: r for k, r in state.reasons.items() if k != key}))


def is_close_only(state: KillState, symbol: str) -> bool:
    return state.global_engaged or symbol in state.symbols


def record_closed_trade(state: KillState, symbol: str, pnl: Decimal,
                        after_n: int | None) -> tuple[KillState, tuple[str, ...]]:
    """A loss extends the symbol's and the portfolio's streak, a win or break-even resets both. A streak reaching
    ``after_n`` engages its scope; returns the scopes newly engaged (the symbol and/or ``GLOBAL``)."""
    streaks = dict(state.losing_streaks)
    for key in (symbol, GLOBAL):
        streaks[key] = streaks.get(key, 0) + 1 if pnl < 0 else 0
    state = replace(state, losing_streaks=_frozen({k: n for k, n in streaks.items() if n}))
    tripped = tuple(k for k in (symbol, GLOBAL)
                    if after_n is not None and streaks[k] >= after_n and not _engaged(state, k))
    for key in tripped:
        state = engage(state, None if key == GLOBAL else key, f"{streaks[key]} consecutive losses")
    return state, tripped
