"""Peak-to-current drawdown. A breach latches: recovering equity must not quietly re-enable trading after the
limit was hit, so only an operator's ``clear`` resets it."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, localcontext

from quorum.risk.profiles import DrawdownAction


@dataclass(frozen=True)
class DrawdownState:
    peak: Decimal
    equity: Decimal
    breached: bool = False

    @property
    def drawdown_pct(self) -> Decimal:
        return (self.peak - self.equity) / self.peak * 100 if self.peak > 0 else Decimal(0)


def observe(state: DrawdownState | None, equity: Decimal, max_drawdown_pct: Decimal) -> tuple[DrawdownState, bool]:
    """Track the peak and mark a breach once the drawdown reaches ``max_drawdown_pct``; returns the new state and
    whether this observation is the one that breached."""
    peak = equity if state is None else max(state.peak, equity)
    was = state is not None and state.breached
    with localcontext() as ctx:
        ctx.prec = 200  # compared as an exact product: no division rounding at the boundary
        hit = peak > 0 and (peak - equity) * 100 >= max_drawdown_pct * peak
    return DrawdownState(peak, equity, was or hit), hit and not was


def clear(state: DrawdownState) -> DrawdownState:
    """Manual reset: the current equity becomes the new peak."""
    return DrawdownState(state.equity, state.equity)


@dataclass(frozen=True)
class HaltPlan:
    cancel_orders: bool
    close_positions: bool
    halt: bool = True


_PLANS = {
    DrawdownAction.HALT_ONLY: HaltPlan(cancel_orders=False, close_positions=False),
    DrawdownAction.CANCEL_ORDERS_AND_HALT: HaltPlan(cancel_orders=True, close_positions=False),
    DrawdownAction.MARKET_CLOSE_ALL_AND_HALT: HaltPlan(cancel_orders=True, close_positions=True),
}


def halt_plan(action: DrawdownAction) -> HaltPlan:
    return _PLANS[action]
