"""The council service's behaviour as pure decisions over a ``CouncilBook``: one decision per candle from the
feature history and predictions (``Council.decide``), every fill of a symbol folded into its campaign (whoever
placed the order), and the operator's per-symbol controls and the risk profile it follows.

The feature history and the predictions of the candle are inputs (the service reads them from the features
and predictions tables, the runner keeps them in memory); what the council remembers is the book.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any

from quorum.council.base import PositionView, StrategyInput
from quorum.council.campaign import Campaign, Closed, apply_fill
from quorum.council.engine import CastVote, Council, Outcome, SymbolControl
from quorum.events.control import ControlRefused, CouncilModeChanged, RiskProfileChanged, SetCouncilMode
from quorum.events.fills import OrderFilled
from quorum.events.predictions import PredictionMade
from quorum.events.signals import DecisionMade, StrategyDisabled
from quorum.ids import client_order_id
from quorum.outcome import Emit
from quorum.outcome import Outcome as Decided
from quorum.types import Action, Intent, RiskProfile, split_symbol

ALL_SYMBOLS = "*"
SymbolKey = tuple[str, str]  # (exchange, symbol)


@dataclass(frozen=True)
class CouncilParams:
    council: Council
    default_control: SymbolControl
    default_profile: RiskProfile = RiskProfile.MEDIUM


@dataclass(frozen=True)
class Origin:
    """The decision an order came from, for the fills that come back."""

    decision_id: Any
    intent: Intent


@dataclass(frozen=True)
class CouncilBook:
    campaigns: Mapping[SymbolKey, Campaign] = field(default_factory=dict)
    controls: Mapping[SymbolKey, SymbolControl] = field(default_factory=dict)  # symbol ALL_SYMBOLS: the default
    profile: RiskProfile | None = None
    disabled: Mapping[SymbolKey, frozenset[str]] = field(default_factory=dict)
    origins: Mapping[str, Origin] = field(default_factory=dict)  # by client order id (the slice fills need)

    def campaign(self, exchange: str, symbol: str) -> Campaign:
        return self.campaigns.get((exchange, symbol)) or Campaign()

    def control(self, exchange: str, symbol: str, default: SymbolControl) -> SymbolControl:
        return self.controls.get((exchange, symbol)) or self.controls.get((exchange, ALL_SYMBOLS)) or default


@dataclass(frozen=True)
class DecisionRecorded:
    """The decision, its votes and the convictions karma will judge (``decisions``, ``signals``, ``karma_votes``)."""

    decision: Emit
    outcome: Outcome
    campaign_before: Campaign


@dataclass(frozen=True)
class StrategyFailed:
    exchange: str
    symbol: str
    strategy: str
    error: str
    decision_ts: Any


@dataclass(frozen=True)
class CampaignClosed:
    """A campaign ended: every conviction cast about it is scored with its return."""

    closed: Closed


def on_prediction(book: CouncilBook, p: PredictionMade, inp: StrategyInput, event_id: Any, params: CouncilParams,
                  weights: Mapping[str, float] | None = None) -> Decided[CouncilBook]:
    """Decide the candle ``p`` is about; ``inp`` carries its feature history and predictions."""
    key = (p.exchange, p.symbol)
    campaign = book.campaign(*key)
    inp = StrategyInput(inp.exchange, inp.symbol, inp.timeframe, inp.history, inp.predictions,
                        PositionView(campaign.quantity, campaign.average_cost))
    profile = book.profile or params.default_profile
    disabled = book.disabled.get(key, frozenset())
    outcome = params.council.decide(inp, control=book.control(p.exchange, p.symbol, params.default_control),
                                    profile=profile, campaign=campaign, disabled=disabled, weights=weights)
    events, records = [], []
    for failure in outcome.failures:
        records.append(StrategyFailed(p.exchange, p.symbol, failure.strategy, failure.error, p.ts))
        events.append(Emit(StrategyDisabled(exchange=p.exchange, symbol=p.symbol, strategy=failure.strategy,
                                            error=failure.error), key=f"{event_id}:{failure.strategy}"))
        disabled |= {failure.strategy}
    decision = Emit(decision_made(p, inp, outcome, profile))
    events.append(decision)
    records.append(DecisionRecorded(decision, outcome, campaign))
    book = CouncilBook({**book.campaigns, key: outcome.campaign}, book.controls, book.profile,
                       {**book.disabled, key: disabled} if disabled else book.disabled, book.origins)
    return Decided(book, tuple(events), tuple(records))


def remember_origin(book: CouncilBook, decision_id: Any, d: DecisionMade) -> CouncilBook:
    """After emitting: the order a non-HOLD decision becomes, so its fills find their intent."""
    if d.action is Action.HOLD:
        return book
    return replace(book, origins={**book.origins, client_order_id(decision_id): Origin(decision_id, d.intent)})


def on_fill(book: CouncilBook, f: OrderFilled) -> Decided[CouncilBook]:
    """Every change of the symbol's position is the campaign's, whoever placed the order: a protective stop, a
    take-profit leg, a liquidation, close-all or panic moves it exactly like the council's own orders."""
    key = (f.exchange, f.symbol)
    origin = book.origins.get(f.client_order_id)
    base, _ = split_symbol(f.symbol)
    intent = origin.intent if origin is not None else Intent.NONE
    counted = intent if f.is_final or intent is not Intent.TAKE_PROFIT else Intent.NONE
    after, closed = apply_fill(book.campaign(*key), side=f.side, quantity=f.quantity, price=f.price, fee=f.fee,
                               fee_in_base=f.fee_currency == base, intent=counted,
                               decision_id=str(origin.decision_id) if origin is not None else f.client_order_id)
    book = replace(book, campaigns={**book.campaigns, key: after})
    records = (CampaignClosed(closed),) if closed is not None and closed.position_id is not None else ()
    return Decided(book, (), records)


def on_control(book: CouncilBook, cmd: Any, params: CouncilParams) -> Decided[CouncilBook]:
    if isinstance(cmd, RiskProfileChanged):
        return Decided(replace(book, profile=cmd.profile))
    assert isinstance(cmd, SetCouncilMode), f"the council does not handle {type(cmd).__name__}"
    symbol = cmd.symbol or ALL_SYMBOLS
    current = book.control(cmd.exchange, symbol, params.default_control)
    solo = cmd.solo_strategy or current.solo_strategy
    if solo not in params.council.names:
        return Decided(book, (Emit(ControlRefused(command_type=cmd.event_type(), reason_code="UNKNOWN_STRATEGY",
                                                  detail=f"{solo!r} is not one of {sorted(params.council.names)}")),))
    control = SymbolControl(cmd.mode, cmd.threshold or current.threshold, solo)
    disabled = dict(book.disabled)
    if cmd.reenable_strategies:
        disabled = {k: v for k, v in disabled.items() if k[0] != cmd.exchange or (cmd.symbol and k[1] != cmd.symbol)}
    book = replace(book, controls={**book.controls, (cmd.exchange, symbol): control}, disabled=disabled)
    return Decided(book, (Emit(CouncilModeChanged(actor=cmd.actor, reason=cmd.reason, exchange=cmd.exchange,
                                                  symbol=cmd.symbol, mode=control.mode, threshold=control.threshold,
                                                  solo_strategy=control.solo_strategy)),))


def decision_made(p: PredictionMade, inp: StrategyInput, o: Outcome, profile: RiskProfile) -> DecisionMade:
    votes = [_vote(v) for v in o.votes]  # validated into Votes with the decision, in one pass
    return DecisionMade(
        exchange=p.exchange, symbol=p.symbol, timeframe=p.timeframe, ts=p.ts, mode=o.mode, action=o.action,
        intent=o.intent, fraction=o.fraction, confidence=o.confidence, threshold=o.threshold,
        agreement=dict(o.agreement), votes=votes, reason_codes=o.reason_codes, risk_profile=profile,
        model_versions=tuple(sorted({v.model_version for v in inp.predictions})), feature_set=p.feature_set,
        price=inp.close, stop_loss=o.stop_loss, take_profit=o.take_profit, atr=_atr(inp),
        regime=None if o.regime is None else o.regime.value,
    )


def _vote(v: CastVote) -> dict[str, Any]:
    """The fields of the ``Vote`` of ``v`` (``str`` of a ``StrEnum`` is its value)."""
    s, signal = v.strategy, v.signal
    return {
        "strategy": s.name, "producer": str(s.kind), "risk_tag": str(s.risk_tag),
        "action": signal.direction, "confidence": signal.confidence, "weight": v.weight, "eligible": v.eligible,
        "filtered_reason": v.filtered_reason, "stop_loss": signal.stop_loss, "take_profit": signal.take_profit,
        "reason_codes": signal.reason_codes, "metadata": dict(signal.metadata),
    }


def _atr(inp: StrategyInput) -> Decimal | None:
    """The feature set's ATR (the first ``atr_*`` feature), as a price; None while it warms up."""
    name = _atr_name(tuple(inp.current.values))
    value = inp.value(name) if name else None
    return Decimal(repr(value)) if value is not None and value > 0 else None


@functools.lru_cache(maxsize=64)
def _atr_name(features: tuple[str, ...]) -> str | None:
    """Per feature set (every candle's row has the same names): sorting them each time cost more than the rest."""
    return next((k for k in sorted(features) if k.startswith("atr_") and k.count("_") == 1), None)
