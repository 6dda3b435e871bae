"""Campaign management of an open long: when to take some profit, when to buy back, when to leave.

A position is a campaign, not a single bet. Exits come from the outlook, never from a timer and never from a
loss threshold alone: a deeply adverse position is held, partly de-risked or closed depending on whether a
rebound or a continuation is predicted. State is a fold over the council's own fills and decisions, so the
same history always yields the same campaign.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from decimal import Decimal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from quorum.types import Action, Intent, Side

ZERO = Decimal(0)
ONE = Decimal(1)


class CampaignParams(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    take_profit_step: float = Field(default=0.04, gt=0, le=10,
                                    description="take the k-th partial profit at k x this unrealized return")
    partial_fraction: Decimal = Field(default=Decimal("0.33"), gt=0, lt=1)
    max_partials: int = Field(default=2, ge=0, le=10)
    weaken_level: float = Field(default=0.25, ge=-1, le=1,
                                description="profit is taken only while the outlook is below this (edge fading)")
    negative_level: float = Field(default=0.2, gt=0, le=1,
                                  description="an outlook at or below minus this counts as negative")
    final_exit_streak: int = Field(default=3, ge=1, le=100,
                                   description="consecutive negative outlooks that end the campaign")
    deep_adverse_return: float = Field(default=-0.08, lt=0, gt=-1)
    rebound_hold_p: float = Field(default=0.55, gt=0, lt=1)
    continuation_exit_p: float = Field(default=0.40, gt=0, lt=1)
    derisk_fraction: Decimal = Field(default=Decimal("0.5"), gt=0, lt=1)
    entry_gate_p: float | None = Field(default=None, gt=0, lt=1,
                                       description="hold an entry or re-entry while a model's P(up) is below this "
                                                   "(near-term downside likely); None: no gate")

    @model_validator(mode="after")
    def _ordered(self) -> CampaignParams:
        if self.continuation_exit_p >= self.rebound_hold_p:
            raise ValueError("continuation_exit_p must be below rebound_hold_p")
        return self


@dataclass(frozen=True)
class Campaign:
    """One symbol's long position as the council manages it. Quantities are exact."""

    quantity: Decimal = ZERO
    average_cost: Decimal = ZERO  # quote per unit, buy fees included
    peak_quantity: Decimal = ZERO  # largest size of this campaign: re-entry restores up to it
    cost: Decimal = ZERO  # quote spent on buys, fees included
    proceeds: Decimal = ZERO  # quote received on sells, fees deducted
    partials_taken: int = 0
    negative_streak: int = 0
    derisked: bool = False
    position_id: str | None = None  # the entry decision's id

    @property
    def is_open(self) -> bool:
        return self.quantity > 0

    def unrealized_return(self, price: Decimal) -> float:
        return float(price / self.average_cost - 1) if self.is_open and self.average_cost > 0 else 0.0


@dataclass(frozen=True)
class Step:
    action: Action
    intent: Intent
    fraction: Decimal
    reason_codes: tuple[str, ...]
    campaign: Campaign


@dataclass(frozen=True)
class Closed:
    """A campaign that ended with this fill: its return on the quote spent, for the karma scorecard."""

    position_id: str | None
    cost: Decimal
    proceeds: Decimal

    @property
    def return_(self) -> float:
        return float(self.proceeds / self.cost - 1) if self.cost > 0 else 0.0


def _hold(campaign: Campaign, *reasons: str) -> Step:
    return Step(Action.HOLD, Intent.NONE, ZERO, reasons, campaign)


def manage(campaign: Campaign, *, price: Decimal, outlook: float, consensus: Action, p_up: float | None,
           params: CampaignParams, sell_exits: bool = False) -> Step:
    """The next step of the campaign given the council's consensus and outlook (-1 bearish .. +1 bullish).

    ``sell_exits``: a SELL consensus ends the campaign at once (Solo mode: the named strategy decides).
    Otherwise a SELL consensus is one more negative reading and the campaign ends only when they persist.
    """
    gated = params.entry_gate_p is not None and p_up is not None and p_up < params.entry_gate_p
    if not campaign.is_open:
        if consensus is Action.BUY and gated:
            return _hold(replace(campaign, negative_streak=0), "ENTRY_GATED", "DOWNSIDE_EXPECTED", "MODEL")
        if consensus is Action.BUY:
            return Step(Action.BUY, Intent.ENTRY, ONE, ("ENTRY",), replace(campaign, negative_streak=0))
        return _hold(replace(campaign, negative_streak=0), "NO_POSITION" if consensus is Action.SELL else "FLAT")

    negative = consensus is Action.SELL or outlook <= -params.negative_level
    c = replace(campaign, negative_streak=campaign.negative_streak + 1 if negative else 0)
    ret = c.unrealized_return(price)

    if consensus is Action.SELL and sell_exits:
        return Step(Action.SELL, Intent.EXIT, ONE, ("FINAL_EXIT", "SELL_SIGNAL"), c)
    if c.negative_streak >= params.final_exit_streak:
        return Step(Action.SELL, Intent.EXIT, ONE, ("FINAL_EXIT", "PERSISTENT_NEGATIVE_OUTLOOK"), c)
    if ret <= params.deep_adverse_return:
        source = "MODEL" if p_up is not None else "COUNCIL_OUTLOOK"
        p_rebound = p_up if p_up is not None else (outlook + 1) / 2
        if p_rebound >= params.rebound_hold_p:
            return _hold(c, "DEEP_ADVERSE", "REBOUND_EXPECTED", source)
        if p_rebound <= params.continuation_exit_p:
            return Step(Action.SELL, Intent.EXIT, ONE, ("DEEP_ADVERSE", "CONTINUATION_EXPECTED", source), c)
        if not c.derisked:
            return Step(Action.SELL, Intent.DERISK, params.derisk_fraction,
                        ("DEEP_ADVERSE", "UNCERTAIN_OUTLOOK_DERISK", source), c)
        return _hold(c, "DEEP_ADVERSE", "ALREADY_DERISKED", source)
    if (c.partials_taken < params.max_partials and outlook < params.weaken_level
            and ret >= params.take_profit_step * (c.partials_taken + 1)):
        return Step(Action.SELL, Intent.TAKE_PROFIT, params.partial_fraction,
                    ("TACTICAL_TAKE_PROFIT", "EDGE_WEAKENING"), c)
    if consensus is Action.BUY:
        if c.quantity < c.peak_quantity and gated:
            return _hold(c, "REENTRY_GATED", "DOWNSIDE_EXPECTED", "MODEL")
        if c.quantity < c.peak_quantity:
            return Step(Action.BUY, Intent.REENTRY, (c.peak_quantity - c.quantity) / c.peak_quantity,
                        ("TACTICAL_REENTRY", "EDGE_RECOVERED"), c)
        return _hold(c, "ALREADY_LONG")
    return _hold(c, "HOLDING", *((f"NEGATIVE_OUTLOOK_{c.negative_streak}_OF_{params.final_exit_streak}",)
                                 if negative else ()))


def apply_fill(campaign: Campaign, *, side: Side, quantity: Decimal, price: Decimal, fee: Decimal,
               fee_in_base: bool, intent: Intent, decision_id: str) -> tuple[Campaign, Closed | None]:
    """Fold one fill into the campaign; the second value is set when this fill closed the position."""
    fee_quote = fee * price if fee_in_base else fee
    if side is Side.BUY:
        start = not campaign.is_open
        base = Campaign(position_id=decision_id) if start else campaign
        received = quantity - fee if fee_in_base else quantity
        spent = quantity * price + (ZERO if fee_in_base else fee)
        qty = base.quantity + received
        cost = base.cost + spent
        avg = (base.average_cost * base.quantity + spent) / qty
        return replace(base, quantity=qty, average_cost=avg, cost=cost, peak_quantity=max(base.peak_quantity, qty),
                       derisked=base.derisked and intent is not Intent.REENTRY), None
    qty = max(ZERO, campaign.quantity - quantity)
    proceeds = campaign.proceeds + quantity * price - fee_quote
    after = replace(campaign, quantity=qty, proceeds=proceeds,
                    partials_taken=campaign.partials_taken + (intent is Intent.TAKE_PROFIT),
                    derisked=campaign.derisked or intent is Intent.DERISK)
    if qty == 0:
        return Campaign(), Closed(campaign.position_id, campaign.cost, proceeds)
    return after, None
