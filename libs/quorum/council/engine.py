"""The council: every enabled strategy votes, the risk profile decides who may, the mode decides what counts.

Pure and deterministic: the same input, controls and campaign always give the same outcome, voter by
voter. A strategy that raises (or returns something that is not a valid signal) is reported as a failure
and left out; the council itself never fails because of a strategy.

Council mode: ``agreement[d] = sum(weight * confidence of allowed voters saying d) / sum(weight of allowed
voters)``. An abstention (HOLD, or a signal below the profile's minimum confidence) keeps its weight in the
denominator: silence is not consent. The leading direction trades when its agreement reaches the threshold;
a tie between BUY and SELL is a conflict and holds. Raising the threshold can therefore only remove trades.

Regimes: the council sees the market regime of the candle (``regime_seen``: ``quorum.learning.regime.regime_of`` on
its features, by the configured rule). A strategy restricted to other regimes is not asked: it abstains with
``REGIME_EXCLUDED`` and, like a filtered risk tag, leaves the quorum (it was not meant to have a say here, so its
silence does not dilute the voters that were). While the regime is unknown (warming up) nobody is restricted.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from quorum.council.base import RiskTag, Signal, StrategyBase, StrategyInput, hold
from quorum.council.campaign import Campaign, CampaignParams, Step, manage
from quorum.learning.regime import Regime, RegimeRule, regime_of
from quorum.types import Action, CouncilMode, Intent, RiskProfile

DIRECTIONS = (Action.BUY, Action.SELL)


@dataclass(frozen=True)
class ProfileFilter:
    allowed_tags: frozenset[RiskTag]
    min_confidence: float


DEFAULT_PROFILE_FILTERS: Mapping[RiskProfile, ProfileFilter] = {
    RiskProfile.LOW: ProfileFilter(frozenset({RiskTag.LOW}), 0.6),
    RiskProfile.MEDIUM: ProfileFilter(frozenset({RiskTag.LOW, RiskTag.MEDIUM}), 0.5),
    RiskProfile.HIGH: ProfileFilter(frozenset({RiskTag.LOW, RiskTag.MEDIUM, RiskTag.HIGH}), 0.3),
}


@dataclass(frozen=True)
class SymbolControl:
    """Per-symbol runtime controls, changed through the gateway."""

    mode: CouncilMode = CouncilMode.COUNCIL
    threshold: float = 0.4
    solo_strategy: str | None = None

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold <= 1.0:
            raise ValueError("threshold must be within (0, 1]")
        if self.mode is CouncilMode.SOLO and not self.solo_strategy:
            raise ValueError("Solo mode needs a strategy name")


class Filtered:
    TAG_NOT_ALLOWED = "TAG_NOT_ALLOWED"
    BELOW_MIN_CONFIDENCE = "BELOW_MIN_CONFIDENCE"
    REGIME_EXCLUDED = "REGIME_EXCLUDED"


OUT_OF_QUORUM = frozenset({Filtered.TAG_NOT_ALLOWED, Filtered.REGIME_EXCLUDED})
"""Filter reasons that take a voter out of the denominator, not only out of the vote."""


def regime_seen(values: Mapping[str, float | None], rule: RegimeRule,
                predicted: Regime | None = None) -> Regime | None:
    """The regime the council decides in: a predicted one when given (a regime model's, once predictions carry
    one), else the rule's on the candle's features; None while those warm up."""
    return predicted if predicted is not None else regime_of(values, rule)


@dataclass(frozen=True)
class CastVote:
    """One voter's signal as the council counted it: ``eligible`` false means the profile (or the regime)
    filtered it."""

    strategy: StrategyBase
    signal: Signal
    weight: float
    eligible: bool
    filtered_reason: str | None = None

    @property
    def counts_for(self) -> Action:
        """The direction this vote supports in the tally (HOLD when abstaining or filtered)."""
        return self.signal.direction if self.eligible else Action.HOLD

    @property
    def in_quorum(self) -> bool:
        """Part of the denominator: every voter whose tag the profile allows and whose regimes include the current
        one, abstaining or not."""
        return self.filtered_reason not in OUT_OF_QUORUM


@dataclass(frozen=True)
class StrategyFailure:
    strategy: str
    error: str


@dataclass(frozen=True)
class Outcome:
    action: Action
    intent: Intent
    fraction: Decimal
    confidence: float
    threshold: float
    consensus: Action  # what the vote alone says, before the position and the mode are considered
    agreement: Mapping[Action, float]
    votes: tuple[CastVote, ...]
    failures: tuple[StrategyFailure, ...]
    reason_codes: tuple[str, ...]
    campaign: Campaign
    stop_loss: Decimal | None = None
    take_profit: Decimal | None = None
    mode: CouncilMode = CouncilMode.COUNCIL
    regime: Regime | None = None  # the regime it decided in (None: unknown, warming up)

    @property
    def outlook(self) -> float:
        return self.agreement[Action.BUY] - self.agreement[Action.SELL]


@dataclass(frozen=True)
class Council:
    strategies: Sequence[StrategyBase]
    profile_filters: Mapping[RiskProfile, ProfileFilter] = field(default_factory=lambda: DEFAULT_PROFILE_FILTERS)
    campaign_params: CampaignParams = field(default_factory=CampaignParams)
    regime_rule: RegimeRule = field(default_factory=RegimeRule)

    def __post_init__(self) -> None:
        names = [s.name for s in self.strategies]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate strategy names: {names}")
        if set(self.profile_filters) != set(RiskProfile):
            raise ValueError("profile filters must cover LOW, MEDIUM and HIGH")

    @property
    def names(self) -> frozenset[str]:
        return frozenset(s.name for s in self.strategies)

    @property
    def lookback(self) -> int:
        return max((s.lookback for s in self.strategies), default=1)

    def evaluate(self, inp: StrategyInput, disabled: frozenset[str] = frozenset(), regime: Regime | None = None
                 ) -> tuple[list[tuple[StrategyBase, Signal]], list[StrategyFailure]]:
        """Every enabled strategy's signal; a strategy that fails is contained and reported. One that does not vote
        in ``regime`` is not asked: its signal is a ``REGIME_EXCLUDED`` hold."""
        signals, failures = [], []
        for s in self.strategies:
            if not s.enabled or s.name in disabled:
                continue
            if not s.votes_in(regime):
                signals.append((s, hold(s.name, Filtered.REGIME_EXCLUDED, regime=str(regime))))
                continue
            try:
                signal = s.evaluate(inp)
                if not isinstance(signal, Signal):
                    raise TypeError(f"returned {type(signal).__name__}, not a Signal")
            except Exception as exc:  # noqa: BLE001 - containment is the point
                failures.append(StrategyFailure(s.name, f"{type(exc).__name__}: {exc}"[:500]))
                continue
            signals.append((s, signal))
        return signals, failures

    def cast(self, signals: Sequence[tuple[StrategyBase, Signal]], profile: RiskProfile,
             weights: Mapping[str, float] | None = None, regime: Regime | None = None) -> tuple[CastVote, ...]:
        rule = self.profile_filters[profile]
        allowed, floor, given = rule.allowed_tags, rule.min_confidence, weights or {}
        votes = []
        for s, signal in signals:
            weight = given.get(s.name, s.weight)
            reason = None
            if s.risk_tag not in allowed:
                reason = Filtered.TAG_NOT_ALLOWED
            elif not s.votes_in(regime):
                reason = Filtered.REGIME_EXCLUDED
            elif signal.direction is not Action.HOLD and signal.confidence < floor:
                reason = Filtered.BELOW_MIN_CONFIDENCE
            votes.append(CastVote(s, signal, weight, reason is None, reason))
        return tuple(votes)

    def decide(self, inp: StrategyInput, *, control: SymbolControl, profile: RiskProfile,
               campaign: Campaign | None = None, disabled: frozenset[str] = frozenset(),
               weights: Mapping[str, float] | None = None) -> Outcome:
        regime = regime_seen(inp.current.values, self.regime_rule)
        signals, failures = self.evaluate(inp, disabled, regime)
        votes = self.cast(signals, profile, weights, regime)
        agreement = tally(votes)
        if control.mode is CouncilMode.SOLO:
            consensus, confidence, threshold, why = self._solo(votes, control.solo_strategy or "", profile)
        else:
            threshold = control.threshold
            consensus, confidence, why = resolve(agreement, threshold)
        p = inp.prediction()
        step = manage(campaign or Campaign(), price=inp.close, outlook=agreement[Action.BUY] - agreement[Action.SELL],
                      consensus=consensus, p_up=p.p_up if p else None, params=self.campaign_params,
                      sell_exits=control.mode is CouncilMode.SOLO)
        reasons = why + step.reason_codes
        if control.mode is CouncilMode.OFF:
            reasons = ("MODE_OFF", f"WOULD_{step.action.value}") + reasons
            step = Step(Action.HOLD, Intent.NONE, Decimal(0), step.reason_codes, step.campaign)
        backers = [v for v in votes if v.strategy.name == control.solo_strategy] if control.mode is CouncilMode.SOLO \
            else votes
        stop, target = _levels(backers, step.action) if step.intent in (Intent.ENTRY, Intent.REENTRY) else (None, None)
        return Outcome(
            action=step.action, intent=step.intent, fraction=step.fraction,
            confidence=confidence if step.action is not Action.HOLD else 0.0, threshold=threshold,
            consensus=consensus, agreement=agreement, votes=votes, failures=tuple(failures),
            reason_codes=reasons, campaign=step.campaign, stop_loss=stop, take_profit=target, mode=control.mode,
            regime=regime,
        )

    def _solo(self, votes: Sequence[CastVote], name: str, profile: RiskProfile
              ) -> tuple[Action, float, float, tuple[str, ...]]:
        floor = self.profile_filters[profile].min_confidence
        vote = next((v for v in votes if v.strategy.name == name), None)
        if vote is None:
            return Action.HOLD, 0.0, floor, (f"SOLO:{name}", "SOLO_STRATEGY_UNAVAILABLE")
        if not vote.eligible:
            return Action.HOLD, 0.0, floor, (f"SOLO:{name}", f"SOLO_FILTERED_{vote.filtered_reason}")
        return vote.signal.direction, vote.signal.confidence, floor, (f"SOLO:{name}",)


def tally(votes: Sequence[CastVote]) -> dict[Action, float]:
    """Weighted agreement per direction over every voter in the quorum; HOLD is the abstaining share."""
    quorum = [(v.counts_for, v.weight, v.signal.confidence) for v in votes if v.in_quorum]
    total = sum(weight for _, weight, _ in quorum)
    if total <= 0:
        return {Action.BUY: 0.0, Action.SELL: 0.0, Action.HOLD: 1.0}
    agreement = {d: sum(weight * confidence for side, weight, confidence in quorum if side is d) / total
                 for d in DIRECTIONS}
    agreement[Action.HOLD] = max(0.0, 1.0 - agreement[Action.BUY] - agreement[Action.SELL])
    return agreement


def resolve(agreement: Mapping[Action, float], threshold: float) -> tuple[Action, float, tuple[str, ...]]:
    buy, sell = agreement[Action.BUY], agreement[Action.SELL]
    lead, score = (Action.BUY, buy) if buy > sell else (Action.SELL, sell)
    if buy == sell and buy > 0:
        return Action.HOLD, 0.0, ("CONFLICT",)
    if score <= 0 or score < threshold:
        return Action.HOLD, 0.0, ("BELOW_THRESHOLD",)
    return lead, score, ("CONSENSUS",)


def _levels(votes: Sequence[CastVote], action: Action) -> tuple[Decimal | None, Decimal | None]:
    """Stop and target of the strongest agreeing voter that suggested them (ties broken by name)."""
    backers = sorted((v for v in votes if v.eligible and v.signal.direction is action),
                     key=lambda v: (-v.weight * v.signal.confidence, v.strategy.name))
    stop = next((v.signal.stop_loss for v in backers if v.signal.stop_loss is not None), None)
    target = next((v.signal.take_profit for v in backers if v.signal.take_profit is not None), None)
    return stop, target
