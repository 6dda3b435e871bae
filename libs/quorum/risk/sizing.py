"""Pre-trade checks and stop-distance sizing.

Pure: a decision and a view of the portfolio in, a verdict out. A refusal is a value with a reason code, never
an exception, and every check evaluated is recorded in order so the audit trail shows why an order has its size.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from decimal import ROUND_DOWN, Context, Decimal, localcontext
from typing import Literal

from quorum.risk.profiles import MissingStop, ProfileLimits, RiskConfig
from quorum.types import Action, Intent, Side

Outcome = Literal["PASS", "FAIL", "CAPPED", "INFO"]

# Sums and products of money amounts are exact at 200 digits; only quotients round, and ``_lots_within`` checks
# their floors with an exact product, so rounding never buys a lot across a boundary (the default 28 digits would).
_EXACT = Context(prec=200)


class Reason:
    HALTED = "HALTED"
    ORDER_PENDING = "ORDER_PENDING"
    NO_POSITION_TO_CLOSE = "NO_POSITION_TO_CLOSE"
    KILL_SWITCH_CLOSE_ONLY = "KILL_SWITCH_CLOSE_ONLY"
    LOW_CONFIDENCE = "LOW_CONFIDENCE"
    POSITION_ALREADY_OPEN = "POSITION_ALREADY_OPEN"
    MAX_POSITIONS = "MAX_POSITIONS"
    DAILY_LOSS_LIMIT = "DAILY_LOSS_LIMIT"
    NO_STOP = "NO_STOP"
    INVALID_STOP = "INVALID_STOP"
    STOP_TOO_WIDE = "STOP_TOO_WIDE"
    EXPOSURE_LIMIT = "EXPOSURE_LIMIT"
    CLUSTER_LIMIT = "CLUSTER_LIMIT"
    INSUFFICIENT_CASH = "INSUFFICIENT_CASH"
    BELOW_MIN_NOTIONAL = "BELOW_MIN_NOTIONAL"
    NOT_ACTIONABLE = "NOT_ACTIONABLE"


@dataclass(frozen=True)
class MarketRules:
    lot_step: Decimal
    min_notional: Decimal
    price_tick: Decimal | None = None  # an ATR-derived stop is floored onto it

    def __post_init__(self) -> None:
        if self.lot_step <= 0 or self.min_notional < 0 or (self.price_tick is not None and self.price_tick <= 0):
            raise ValueError("lot_step and price_tick must be > 0, min_notional >= 0")


@dataclass(frozen=True)
class Holding:
    symbol: str
    quantity: Decimal
    mark_price: Decimal | None
    reserved: Decimal = Decimal(0)  # cash set aside for a pending buy
    pending: bool = False  # an order for this symbol is in flight

    def __post_init__(self) -> None:
        if self.quantity < 0 or self.reserved < 0:
            raise ValueError("spot is long-only: quantity and reserved must be >= 0")

    @property
    def exposure(self) -> Decimal:
        """Unmarked quantity counts as 0: the caller supplies marks (``assess`` marks the symbol it trades)."""
        return self.quantity * (self.mark_price or 0) + self.reserved


@dataclass(frozen=True)
class PortfolioView:
    cash: Decimal  # available: reservations are already deducted
    holdings: Mapping[str, Holding]
    day_start_equity: Decimal
    halted: bool = False
    kill_global: bool = False
    killed_symbols: frozenset[str] = frozenset()

    @property
    def equity(self) -> Decimal:
        return self.cash + sum((h.exposure for h in self.holdings.values()), Decimal(0))

    @property
    def open_positions(self) -> int:
        """Pending entries count: otherwise two in-flight buys could both slip under the limit."""
        return sum(1 for h in self.holdings.values() if h.quantity > 0 or h.pending)

    def exposure_of(self, cluster: str, config: RiskConfig) -> Decimal:
        return sum((h.exposure for s, h in self.holdings.items() if config.cluster_of(s) == cluster), Decimal(0))


@dataclass(frozen=True, kw_only=True)
class TradeIntent:
    symbol: str
    action: Action
    intent: Intent
    fraction: Decimal = Decimal(1)  # REENTRY: of a full entry; SELL: of the position (>= 1 = all of it)
    price: Decimal  # reference price the order is sized at
    confidence: float
    stop_loss: Decimal | None = None
    take_profit: Decimal | None = None
    atr: Decimal | None = None

    def __post_init__(self) -> None:
        if not (self.price.is_finite() and self.price > 0 and self.fraction.is_finite() and self.fraction > 0
                and 0.0 <= self.confidence <= 1.0):
            raise ValueError("price and fraction must be finite and > 0, confidence in [0, 1]")


@dataclass(frozen=True)
class Check:
    name: str
    outcome: Outcome
    detail: str = ""


@dataclass(frozen=True)
class RiskVerdict:
    side: Side
    quantity: Decimal | None
    reason_code: str | None
    checks: tuple[Check, ...] = ()
    stop_loss: Decimal | None = None
    take_profit: Decimal | None = None

    @property
    def approved(self) -> bool:
        return self.reason_code is None

    def checks_dict(self) -> dict[str, str]:
        return {c.name: f"{c.outcome} {c.detail}".rstrip() for c in self.checks}


def floor_to_step(qty: Decimal, step: Decimal) -> Decimal:
    return (qty / step).to_integral_value(rounding=ROUND_DOWN) * step


def _lots_within(budget: Decimal, unit_cost: Decimal, step: Decimal) -> Decimal:
    """Most whole lots whose cost fits in ``budget`` (0 when none). A quotient just below a lot boundary can round
    onto it, so the candidate is checked with the exact product and stepped back."""
    if budget <= 0:
        return Decimal(0)
    qty = floor_to_step(budget / unit_cost, step)
    while qty > 0 and qty * unit_cost > budget:
        qty -= step
    return qty


class _Trail:
    """The ordered checks of one assessment and the verdicts built from them."""

    def __init__(self, side: Side) -> None:
        self.side = side
        self.checks: list[Check] = []

    def note(self, name: str, outcome: Outcome, detail: str = "") -> None:
        self.checks.append(Check(name, outcome, detail))

    def refuse(self, name: str, reason: str, detail: str) -> RiskVerdict:
        self.note(name, "FAIL", detail)
        return RiskVerdict(self.side, None, reason, tuple(self.checks))

    def approve(self, qty: Decimal, stop: Decimal | None = None, take_profit: Decimal | None = None) -> RiskVerdict:
        return RiskVerdict(self.side, qty, None, tuple(self.checks), stop, take_profit)


def assess(intent: TradeIntent, portfolio: PortfolioView, profile: ProfileLimits, rules: MarketRules,
           config: RiskConfig) -> RiskVerdict:
    """Checks in a fixed order, first failure wins; an approved buy is sized so that hitting the stop loses
    ``risk_per_trade_pct`` of equity, then capped by exposure, cluster exposure and cash, in whole lots."""
    if intent.action is Action.HOLD:
        return _Trail(Side.BUY).refuse("action", Reason.NOT_ACTIONABLE, "HOLD")
    t = _Trail(Side.BUY if intent.action is Action.BUY else Side.SELL)
    if portfolio.halted:
        return t.refuse("halted", Reason.HALTED, "trading halted")
    t.note("halted", "PASS")
    held = portfolio.holdings.get(intent.symbol)
    if held is not None and held.pending:
        return t.refuse("order_pending", Reason.ORDER_PENDING, f"an order for {intent.symbol} is in flight")
    t.note("order_pending", "PASS")
    if held is not None and held.mark_price is None:  # the traded symbol is at least marked at the reference price
        held = replace(held, mark_price=intent.price)
        portfolio = replace(portfolio, holdings={**portfolio.holdings, intent.symbol: held})
    position = held.quantity if held is not None else Decimal(0)
    with localcontext(_EXACT):
        if t.side is Side.SELL:
            return _sell(intent, position, rules, t)
        return _buy(intent, position, portfolio, profile, rules, config, t)


def _sell(intent: TradeIntent, position: Decimal, rules: MarketRules, t: _Trail) -> RiskVerdict:
    t.note("kill_switch", "PASS", "exit allowed")  # a kill switch is close-only: exits always go
    if position <= 0:
        return t.refuse("long_only", Reason.NO_POSITION_TO_CLOSE, "nothing held to sell")
    t.note("long_only", "PASS", f"holding {position}")
    qty = position if intent.fraction >= 1 else floor_to_step(position * intent.fraction, rules.lot_step)
    if qty < position and (qty <= 0 or qty * intent.price < rules.min_notional):  # a full exit always goes
        return t.refuse("order_size", Reason.BELOW_MIN_NOTIONAL,
                        f"partial sell {qty} x {intent.price} < min notional {rules.min_notional}")
    t.note("order_size", "PASS", f"sell {qty} of {position}")
    return t.approve(qty)


def _buy(intent: TradeIntent, position: Decimal, pf: PortfolioView, profile: ProfileLimits, rules: MarketRules,
         config: RiskConfig, t: _Trail) -> RiskVerdict:
    if pf.kill_global or intent.symbol in pf.killed_symbols:
        return t.refuse("kill_switch", Reason.KILL_SWITCH_CLOSE_ONLY,
                        "global close-only" if pf.kill_global else f"{intent.symbol} close-only")
    t.note("kill_switch", "PASS")
    if intent.confidence < profile.min_confidence:
        return t.refuse("confidence", Reason.LOW_CONFIDENCE, f"{intent.confidence} < {profile.min_confidence}")
    t.note("confidence", "PASS", f"{intent.confidence} >= {profile.min_confidence}")
    reentry = intent.intent is Intent.REENTRY  # any other buy is an entry
    if position > 0 and not reentry:
        return t.refuse("position", Reason.POSITION_ALREADY_OPEN, f"holding {position}")
    t.note("position", "PASS", "re-entry" if position > 0 else "flat")
    if position == 0:  # a buy on a flat symbol opens a position, whatever its label
        open_, cap = pf.open_positions, profile.max_concurrent_positions
        if open_ >= cap:
            return t.refuse("max_positions", Reason.MAX_POSITIONS, f"{open_} open, max {cap}")
        t.note("max_positions", "PASS", f"{open_} open, max {cap}")
    equity = pf.equity
    day_pnl, floor = equity - pf.day_start_equity, -profile.daily_loss_limit.amount(pf.day_start_equity)
    if day_pnl < 0 and day_pnl <= floor:  # only an actual loss trips it, not a flat day on a zero start
        return t.refuse("daily_loss", Reason.DAILY_LOSS_LIMIT, f"day pnl {day_pnl} <= {floor}")
    t.note("daily_loss", "PASS", f"day pnl {day_pnl} > {floor}")

    price, stop = intent.price, intent.stop_loss
    if stop is not None:
        t.note("stop", "PASS", f"given {stop}")
    elif config.missing_stop is MissingStop.ATR and intent.atr is not None:
        stop = price - config.default_stop_atr_mult * intent.atr
        if rules.price_tick is not None:
            stop = floor_to_step(stop, rules.price_tick)
        t.note("stop", "INFO", f"from ATR: {price} - {config.default_stop_atr_mult} x {intent.atr} = {stop}")
    else:
        return t.refuse("stop", Reason.NO_STOP, f"no stop given (missing_stop={config.missing_stop.value})")
    if not 0 < stop < price:
        return t.refuse("stop_valid", Reason.INVALID_STOP, f"stop {stop} not in (0, {price}) for a long")
    t.note("stop_valid", "PASS")
    distance = (price - stop) * 100 / price  # for the record; the comparison below is exact
    if (price - stop) * 100 > profile.max_stop_distance_pct * price:
        return t.refuse("stop_distance", Reason.STOP_TOO_WIDE,
                        f"{distance:.4f}% > {profile.max_stop_distance_pct}%")
    t.note("stop_distance", "PASS", f"{distance:.4f}% <= {profile.max_stop_distance_pct}%")

    # Lose risk_per_trade_pct of equity if the stop is hit; a re-entry tops up a fraction of that.
    budget = equity * profile.risk_per_trade_pct / 100 * (min(Decimal(1), intent.fraction) if reentry else 1)
    qty = risk_qty = _lots_within(budget, price - stop, rules.lot_step)
    t.note("risk_size", "INFO", f"{budget} / ({price} - {stop}) -> {risk_qty}")
    cluster = config.cluster_of(intent.symbol)
    total = sum((h.exposure for h in pf.holdings.values()), Decimal(0))
    caps = (
        ("total_exposure", Reason.EXPOSURE_LIMIT, profile.max_total_exposure.amount(equity) - total, price),
        ("cluster_exposure", Reason.CLUSTER_LIMIT,
         profile.max_cluster_exposure.amount(equity) - pf.exposure_of(cluster, config), price),
        ("cash", Reason.INSUFFICIENT_CASH, pf.cash, price * (1 + config.fee_rate)),  # no leverage, fee reserved
    )
    binding = None
    for name, reason, room, unit_cost in caps:
        cap = _lots_within(room, unit_cost, rules.lot_step)
        if cap < qty:
            t.note(name, "CAPPED", f"room {room} allows {cap} < {qty}")
            qty, binding = cap, reason
        else:
            t.note(name, "PASS", f"room {room} allows {cap}")

    def too_small(q: Decimal) -> bool:
        return q <= 0 or q * price < rules.min_notional

    if too_small(qty):
        reason = Reason.BELOW_MIN_NOTIONAL if too_small(risk_qty) or binding is None else binding
        return t.refuse("order_size", reason, f"{qty} x {price} below min notional {rules.min_notional}")
    t.note("order_size", "PASS", f"{qty} x {price} = {qty * price}")
    return t.approve(qty, stop, intent.take_profit)
