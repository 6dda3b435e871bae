"""Pre-trade risk: fixed-fraction sizing, one position per symbol, long-only spot, halt.

Pure: given the decision and a view of the portfolio, return a verdict. A refusal is a value with a reason
code, never an exception.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import ROUND_DOWN, Decimal, localcontext

from quorum.types import Action, Intent, Side


class Reason:
    HALTED = "HALTED"
    ORDER_PENDING = "ORDER_PENDING"
    POSITION_ALREADY_OPEN = "POSITION_ALREADY_OPEN"
    NO_POSITION_TO_CLOSE = "NO_POSITION_TO_CLOSE"
    BELOW_MIN_NOTIONAL = "BELOW_MIN_NOTIONAL"
    INSUFFICIENT_CASH = "INSUFFICIENT_CASH"
    NOT_ACTIONABLE = "NOT_ACTIONABLE"


@dataclass(frozen=True)
class RiskLimits:
    fraction: Decimal = Decimal("0.10")  # of equity per new position
    lot_step: Decimal = Decimal("0.00001")
    min_notional: Decimal = Decimal("10")
    fee_rate: Decimal = Decimal("0.001")  # reserved on top of the notional so the fill can pay its fee

    def __post_init__(self) -> None:
        if not (Decimal(0) < self.fraction <= Decimal(1)):
            raise ValueError("fraction must be in (0, 1]")
        if self.lot_step <= 0 or self.min_notional < 0 or self.fee_rate < 0:
            raise ValueError("lot_step must be > 0; min_notional and fee_rate >= 0")


@dataclass(frozen=True)
class SymbolView:
    position: Decimal
    pending: bool


@dataclass(frozen=True)
class Verdict:
    side: Side
    quantity: Decimal | None
    reason_code: str | None
    checks: dict[str, str] = field(default_factory=dict)

    @property
    def approved(self) -> bool:
        return self.reason_code is None


def floor_to_step(qty: Decimal, step: Decimal) -> Decimal:
    return (qty / step).to_integral_value(rounding=ROUND_DOWN) * step


def _affordable(cash: Decimal, price: Decimal, limits: RiskLimits) -> Decimal:
    """Most whole lots whose notional plus fee fits in ``cash``.

    The division runs at 28 digits and can round up onto the next lot boundary when cash sits just below it;
    the candidate is therefore checked with an exact product and stepped back.
    """
    qty = floor_to_step(cash / (price * (1 + limits.fee_rate)), limits.lot_step)
    with localcontext() as ctx:
        ctx.prec = 200  # wide enough for the product of three 28+-digit operands to be exact
        while qty > 0 and qty * price * (1 + limits.fee_rate) > cash:
            qty -= limits.lot_step
    return qty


def assess(
    action: Action,
    price: Decimal,
    symbol: SymbolView,
    *,
    cash: Decimal,
    equity: Decimal,
    halted: bool,
    limits: RiskLimits,
    intent: Intent = Intent.ENTRY,
    fraction: Decimal = Decimal(1),
) -> Verdict:
    """``intent``/``fraction`` come from the council: a REENTRY tops up ``fraction`` of a full entry on an
    open position; a SELL sells ``fraction`` of the position (1 = all of it)."""
    if action is Action.HOLD:
        return Verdict(Side.BUY, None, Reason.NOT_ACTIONABLE)
    side = Side.BUY if action is Action.BUY else Side.SELL
    checks: dict[str, str] = {}

    def refuse(reason: str) -> Verdict:
        checks[reason.lower()] = "FAIL"
        return Verdict(side, None, reason, checks)

    if halted:
        return refuse(Reason.HALTED)
    checks["halted"] = "PASS"
    if symbol.pending:
        return refuse(Reason.ORDER_PENDING)
    checks["order_pending"] = "PASS"
    if side is Side.SELL:
        if symbol.position <= 0:
            return refuse(Reason.NO_POSITION_TO_CLOSE)  # spot long-only: never sell what we do not hold
        checks["long_only"] = "PASS"
        qty = symbol.position if fraction >= 1 else floor_to_step(symbol.position * fraction, limits.lot_step)
        if qty <= 0 or (qty < symbol.position and qty * price < limits.min_notional):
            return refuse(Reason.BELOW_MIN_NOTIONAL)  # a partial sell must be a valid order; a full exit always goes
        checks["sizing"] = f"sell fraction={fraction} qty={qty}"
        return Verdict(side, qty, None, checks)
    if symbol.position > 0 and intent is not Intent.REENTRY:
        return refuse(Reason.POSITION_ALREADY_OPEN)
    checks["one_position_per_symbol"] = "PASS" if symbol.position == 0 else "REENTRY"
    scale = min(Decimal(1), fraction) if intent is Intent.REENTRY else Decimal(1)
    target = floor_to_step(equity * limits.fraction * scale / price, limits.lot_step)
    affordable = _affordable(cash, price, limits)
    qty = min(target, affordable)
    if qty <= 0 or qty * price < limits.min_notional:  # with min_notional 0, a zero size must still refuse
        return refuse(Reason.INSUFFICIENT_CASH if affordable < target else Reason.BELOW_MIN_NOTIONAL)
    checks["sizing"] = f"fraction={limits.fraction} qty={qty}"
    checks["cash"] = "PASS"
    return Verdict(side, qty, None, checks)
