"""The council's vote: containment, risk-profile filter, Council / Solo / Off, threshold monotonicity."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from quorum.council.base import FeatureRow, PredictionView, RiskTag, StrategyInput
from quorum.council.campaign import Campaign
from quorum.council.engine import Council, Filtered, SymbolControl, tally
from quorum.types import Action, CouncilMode, Intent, RiskProfile

from tests.council_scripts import Fixed, Raising

TS = datetime(2024, 1, 1, tzinfo=UTC)


def inp(close: str = "100", p_up: float | None = None) -> StrategyInput:
    preds = (PredictionView("m", "m@1", 1, p_up),) if p_up is not None else ()
    return StrategyInput("binance", "BTC/USDT", "1h", (FeatureRow(TS, Decimal(close), {}),), preds)


def buy(name: str, conf: float, tag: RiskTag = RiskTag.LOW, weight: float = 1.0) -> Fixed:
    return Fixed(name=name, direction=Action.BUY, confidence=conf, risk_tag=tag, weight=weight)


def sell(name: str, conf: float, tag: RiskTag = RiskTag.LOW, weight: float = 1.0) -> Fixed:
    return Fixed(name=name, direction=Action.SELL, confidence=conf, risk_tag=tag, weight=weight)


def abstain(name: str, tag: RiskTag = RiskTag.LOW, weight: float = 1.0) -> Fixed:
    return Fixed(name=name, risk_tag=tag, weight=weight)


COUNCIL = SymbolControl(CouncilMode.COUNCIL, 0.4)

# --- Council mode -------------------------------------------------------------------------------------------

def test_agreement_is_weighted_confidence_over_every_allowed_voter_including_abstentions() -> None:
    council = Council([buy("a", 0.8, weight=2.0), sell("b", 0.6), abstain("c")])

    out = council.decide(inp(), control=COUNCIL, profile=RiskProfile.MEDIUM)

    assert out.agreement[Action.BUY] == pytest.approx(1.6 / 4)
    assert out.agreement[Action.SELL] == pytest.approx(0.6 / 4)
    assert (out.action, out.intent, out.fraction) == (Action.BUY, Intent.ENTRY, Decimal(1))
    assert out.confidence == pytest.approx(0.4)
    assert out.reason_codes[:2] == ("CONSENSUS", "ENTRY")


def test_below_threshold_holds_and_says_so() -> None:
    council = Council([buy("a", 0.7), abstain("b"), abstain("c")])

    out = council.decide(inp(), control=SymbolControl(CouncilMode.COUNCIL, 0.5), profile=RiskProfile.MEDIUM)

    assert (out.action, out.consensus, out.confidence) == (Action.HOLD, Action.HOLD, 0.0)
    assert "BELOW_THRESHOLD" in out.reason_codes


def test_an_even_split_between_buy_and_sell_is_a_conflict() -> None:
    council = Council([buy("a", 0.9), sell("b", 0.9)])

    out = council.decide(inp(), control=SymbolControl(CouncilMode.COUNCIL, 0.1), profile=RiskProfile.MEDIUM)

    assert out.action is Action.HOLD and "CONFLICT" in out.reason_codes


def test_the_entry_carries_the_stop_of_the_strongest_agreeing_voter() -> None:
    council = Council([buy("weak", 0.55), buy("strong", 0.9)])

    out = council.decide(inp("200"), control=COUNCIL, profile=RiskProfile.MEDIUM)

    assert out.stop_loss == Decimal("190.00")


# --- risk-profile filter --------------------------------------------------------------------------------------

def test_profile_keeps_disallowed_tags_out_of_the_vote_and_records_why() -> None:
    council = Council([buy("risky", 1.0, RiskTag.HIGH), abstain("calm")])

    low = council.decide(inp(), control=COUNCIL, profile=RiskProfile.LOW)
    high = council.decide(inp(), control=COUNCIL, profile=RiskProfile.HIGH)

    risky = next(v for v in low.votes if v.strategy.name == "risky")
    assert (risky.eligible, risky.filtered_reason) == (False, Filtered.TAG_NOT_ALLOWED)
    assert low.action is Action.HOLD and low.agreement[Action.BUY] == 0.0
    assert high.action is Action.BUY and high.agreement[Action.BUY] == pytest.approx(0.5)


def test_a_signal_below_the_profiles_minimum_confidence_abstains_but_keeps_its_weight() -> None:
    council = Council([buy("a", 0.55), buy("b", 0.9)])

    out = council.decide(inp(), control=COUNCIL, profile=RiskProfile.LOW)  # LOW: min confidence 0.6

    a = next(v for v in out.votes if v.strategy.name == "a")
    assert (a.eligible, a.filtered_reason) == (False, Filtered.BELOW_MIN_CONFIDENCE)
    assert out.agreement[Action.BUY] == pytest.approx(0.9 / 2)


# --- Solo and Off ---------------------------------------------------------------------------------------------

def test_solo_lets_the_named_strategy_decide_against_the_majority() -> None:
    council = Council([sell("x", 0.9), sell("y", 0.9), buy("solo", 0.7)])

    out = council.decide(inp(), control=SymbolControl(CouncilMode.SOLO, 0.9, "solo"), profile=RiskProfile.MEDIUM)

    assert (out.action, out.confidence) == (Action.BUY, 0.7)
    assert out.reason_codes[0] == "SOLO:solo"


def test_solo_holds_when_its_strategy_is_disabled_or_filtered() -> None:
    council = Council([buy("solo", 0.9, RiskTag.HIGH), buy("other", 0.9)])
    solo = SymbolControl(CouncilMode.SOLO, 0.4, "solo")

    disabled = council.decide(inp(), control=solo, profile=RiskProfile.HIGH, disabled=frozenset({"solo"}))
    filtered = council.decide(inp(), control=solo, profile=RiskProfile.LOW)

    assert disabled.action is Action.HOLD and "SOLO_STRATEGY_UNAVAILABLE" in disabled.reason_codes
    assert filtered.action is Action.HOLD and "SOLO_FILTERED_TAG_NOT_ALLOWED" in filtered.reason_codes


def test_off_still_computes_and_shows_what_it_would_have_done() -> None:
    council = Council([buy("a", 0.9)])

    out = council.decide(inp(), control=SymbolControl(CouncilMode.OFF, 0.4), profile=RiskProfile.MEDIUM)

    assert (out.action, out.intent, out.consensus) == (Action.HOLD, Intent.NONE, Action.BUY)
    assert out.reason_codes[:2] == ("MODE_OFF", "WOULD_BUY")
    assert out.votes[0].signal.direction is Action.BUY


# --- containment ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["raise", "garbage"])
def test_a_failing_strategy_is_reported_and_the_rest_still_decide(mode: str) -> None:
    council = Council([Raising(name="broken", failure=mode), buy("a", 0.9)])

    out = council.decide(inp(), control=COUNCIL, profile=RiskProfile.MEDIUM)

    assert [f.strategy for f in out.failures] == ["broken"]
    assert ("ZeroDivisionError" if mode == "raise" else "not a Signal") in out.failures[0].error
    assert [v.strategy.name for v in out.votes] == ["a"]
    assert out.action is Action.BUY


def test_a_disabled_strategy_is_not_asked() -> None:
    council = Council([Raising(name="broken"), buy("a", 0.9)])

    out = council.decide(inp(), control=COUNCIL, profile=RiskProfile.MEDIUM, disabled=frozenset({"broken"}))

    assert out.failures == ()


def test_duplicate_strategy_names_are_refused() -> None:
    with pytest.raises(ValueError, match="duplicate"):
        Council([buy("a", 0.5), sell("a", 0.5)])


# --- properties over random councils ----------------------------------------------------------------------------

directions = st.sampled_from([Action.BUY, Action.SELL, Action.HOLD])
voters = st.lists(
    st.tuples(directions, st.floats(0.0, 1.0), st.sampled_from(list(RiskTag)), st.floats(0.0, 5.0)),
    min_size=0, max_size=7,
)
campaigns = st.one_of(
    st.just(Campaign()),
    st.builds(lambda q, peak, cost, partials, streak, derisked: Campaign(
        quantity=Decimal(q), average_cost=Decimal(cost), peak_quantity=Decimal(max(q, peak)),
        cost=Decimal(cost) * Decimal(q), partials_taken=partials, negative_streak=streak, derisked=derisked,
        position_id="p"),
        st.integers(1, 10), st.integers(1, 10), st.integers(50, 150), st.integers(0, 3), st.integers(0, 5),
        st.booleans()),
)


def council_of(spec: list[tuple[Action, float, RiskTag, float]]) -> Council:
    return Council([Fixed(name=f"s{i}", direction=d, confidence=c, risk_tag=t, weight=w)
                    for i, (d, c, t, w) in enumerate(spec)])


@settings(max_examples=300, derandomize=True, deadline=None)
@given(voters, campaigns, st.sampled_from(list(RiskProfile)), st.floats(0.01, 1.0),
       st.one_of(st.none(), st.floats(0.0, 1.0)), st.sampled_from(["60", "100", "140"]))
def test_off_mode_never_lets_an_order_intent_leave(spec, campaign, profile, threshold, p_up, close) -> None:  # noqa: ANN001
    out = council_of(spec).decide(inp(close, p_up), control=SymbolControl(CouncilMode.OFF, threshold),
                                  profile=profile, campaign=campaign)

    assert (out.action, out.intent, out.fraction) == (Action.HOLD, Intent.NONE, Decimal(0))


@settings(max_examples=300, derandomize=True, deadline=None)
@given(voters, campaigns, st.sampled_from(list(RiskProfile)), st.floats(0.01, 1.0), st.floats(0.01, 1.0),
       st.one_of(st.none(), st.floats(0.0, 1.0)), st.sampled_from(["60", "100", "140"]))
def test_raising_the_threshold_never_creates_a_trade(spec, campaign, profile, t1, t2, p_up, close) -> None:  # noqa: ANN001
    low, high = sorted((t1, t2))
    council = council_of(spec)

    def decide(t: float):  # noqa: ANN202
        return council.decide(inp(close, p_up), control=SymbolControl(CouncilMode.COUNCIL, t), profile=profile,
                              campaign=campaign)

    at_low, at_high = decide(low), decide(high)
    if at_high.action is not Action.HOLD:
        assert at_low.action is at_high.action  # the same trade (a lower bar may pick a stronger exit intent)


@settings(max_examples=200, derandomize=True, deadline=None)
@given(voters, st.sampled_from(list(RiskProfile)))
def test_agreement_shares_are_bounded_and_sum_to_one(spec, profile) -> None:  # noqa: ANN001
    council = council_of(spec)
    signals, _ = council.evaluate(inp())

    agreement = tally(council.cast(signals, profile))

    assert all(0.0 <= v <= 1.0 + 1e-12 for v in agreement.values())
    assert sum(agreement.values()) == pytest.approx(1.0)
