"""Campaign exits: partial profit, re-entry, final exit on persistent negativity, deep-adverse choices; the
fold of fills into a campaign; karma scoring."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from quorum.council.campaign import Campaign, CampaignParams, apply_fill, manage
from quorum.council.karma import Observation, adaptive_weights, score, scorecard
from quorum.types import Action, Intent, Side

P = CampaignParams()
D = Decimal
OPEN = Campaign(quantity=D(2), average_cost=D(100), peak_quantity=D(2), cost=D(200), position_id="p1")


def step(campaign: Campaign = OPEN, *, price: str = "100", outlook: float = 0.0,
         consensus: Action = Action.HOLD, p_up: float | None = None, sell_exits: bool = False):  # noqa: ANN201
    return manage(campaign, price=D(price), outlook=outlook, consensus=consensus, p_up=p_up, params=P,
                  sell_exits=sell_exits)


# --- manage -----------------------------------------------------------------------------------------------------

def test_a_model_expecting_downside_gates_an_entry_and_a_re_entry_only_when_the_gate_is_set() -> None:
    gate = CampaignParams(entry_gate_p=0.45)
    reduced = Campaign(quantity=D(1), average_cost=D(100), peak_quantity=D(2), cost=D(100), position_id="p1")

    def gated(campaign: Campaign, p_up: float | None, params: CampaignParams = gate):  # noqa: ANN202
        return manage(campaign, price=D(100), outlook=0.5, consensus=Action.BUY, p_up=p_up, params=params)

    assert (gated(Campaign(), 0.40).action, gated(Campaign(), 0.40).reason_codes) == (
        Action.HOLD, ("ENTRY_GATED", "DOWNSIDE_EXPECTED", "MODEL"))
    assert gated(Campaign(), 0.50).intent is Intent.ENTRY
    assert gated(Campaign(), None).intent is Intent.ENTRY  # no model: nothing to gate on
    assert gated(reduced, 0.40).reason_codes[0] == "REENTRY_GATED" and gated(reduced, 0.6).intent is Intent.REENTRY
    assert gated(Campaign(), 0.40, P).intent is Intent.ENTRY  # the default: no gate


def test_flat_buy_consensus_is_a_full_entry_and_a_sell_has_nothing_to_close() -> None:
    assert (step(Campaign(), consensus=Action.BUY).intent, step(Campaign(), consensus=Action.BUY).fraction) == (
        Intent.ENTRY, D(1))
    flat_sell = step(Campaign(), consensus=Action.SELL)
    assert (flat_sell.action, flat_sell.reason_codes) == (Action.HOLD, ("NO_POSITION",))


def test_profit_is_taken_in_part_when_the_edge_weakens() -> None:
    s = step(price="104", outlook=0.1)

    assert (s.action, s.intent, s.fraction) == (Action.SELL, Intent.TAKE_PROFIT, D("0.33"))
    assert s.reason_codes == ("TACTICAL_TAKE_PROFIT", "EDGE_WEAKENING")


def test_profit_is_left_running_while_the_edge_is_strong() -> None:
    assert step(price="110", outlook=0.6).action is Action.HOLD


def test_the_second_partial_needs_twice_the_gain_and_partials_are_capped() -> None:
    one_taken = Campaign(**{**vars(OPEN), "partials_taken": 1})
    capped = Campaign(**{**vars(OPEN), "partials_taken": 2})

    assert step(one_taken, price="107", outlook=0.0).action is Action.HOLD
    assert step(one_taken, price="108", outlook=0.0).intent is Intent.TAKE_PROFIT
    assert step(capped, price="150", outlook=0.0).action is Action.HOLD


def test_reentry_restores_the_size_sold_when_the_edge_recovers() -> None:
    reduced = Campaign(**{**vars(OPEN), "quantity": D("1.5")})

    s = step(reduced, price="103", outlook=0.6, consensus=Action.BUY)

    assert (s.action, s.intent, s.fraction) == (Action.BUY, Intent.REENTRY, D("0.25"))


def test_a_full_position_does_not_add_on_a_buy_consensus() -> None:
    assert step(consensus=Action.BUY, outlook=0.6).reason_codes == ("ALREADY_LONG",)


def test_the_campaign_ends_only_when_the_negative_outlook_persists() -> None:
    c, steps = OPEN, []
    for _ in range(P.final_exit_streak):
        s = step(c, outlook=-0.5)
        steps.append(s)
        c = s.campaign

    assert [s.action for s in steps] == [Action.HOLD] * (P.final_exit_streak - 1) + [Action.SELL]
    assert (steps[-1].intent, steps[-1].fraction) == (Intent.EXIT, D(1))
    assert steps[-1].reason_codes == ("FINAL_EXIT", "PERSISTENT_NEGATIVE_OUTLOOK")


def test_a_single_non_negative_reading_resets_the_streak() -> None:
    c = step(step(OPEN, outlook=-0.5).campaign, outlook=-0.5).campaign
    c = step(c, outlook=0.0).campaign

    assert c.negative_streak == 0
    assert step(c, outlook=-0.5).action is Action.HOLD


@pytest.mark.parametrize(("p_up", "action", "intent", "why"), [
    (0.7, Action.HOLD, Intent.NONE, "REBOUND_EXPECTED"),
    (0.3, Action.SELL, Intent.EXIT, "CONTINUATION_EXPECTED"),
    (0.5, Action.SELL, Intent.DERISK, "UNCERTAIN_OUTLOOK_DERISK"),
])
def test_a_deeply_adverse_position_is_held_derisked_or_closed_by_the_prediction(
        p_up: float, action: Action, intent: Intent, why: str) -> None:
    s = step(price="85", p_up=p_up)

    assert (s.action, s.intent, s.reason_codes[1], s.reason_codes[2]) == (action, intent, why, "MODEL")


def test_a_derisked_adverse_position_is_not_derisked_twice() -> None:
    derisked = Campaign(**{**vars(OPEN), "derisked": True})

    assert step(derisked, price="85", p_up=0.5).reason_codes == ("DEEP_ADVERSE", "ALREADY_DERISKED", "MODEL")


def test_without_a_model_the_council_outlook_stands_in_for_the_rebound_probability() -> None:
    s = step(price="85", outlook=0.5)

    assert (s.action, s.reason_codes) == (Action.HOLD, ("DEEP_ADVERSE", "REBOUND_EXPECTED", "COUNCIL_OUTLOOK"))


@settings(max_examples=200, derandomize=True, deadline=None)
@given(st.integers(1, 99), st.integers(1, 500))
def test_a_loss_alone_never_forces_an_exit_and_time_alone_never_does(loss_pct: int, holds: int) -> None:
    """However deep the loss and however long the hold: with a rebound predicted and a neutral council, hold."""
    c = OPEN
    price = str(D(100) * (100 - loss_pct) / 100)
    for _ in range(min(holds, 50)):
        s = step(c, price=price, outlook=0.0, p_up=0.8)
        assert s.action is Action.HOLD
        c = s.campaign


def test_solo_sell_exits_at_once() -> None:
    s = step(consensus=Action.SELL, sell_exits=True)

    assert (s.intent, s.reason_codes) == (Intent.EXIT, ("FINAL_EXIT", "SELL_SIGNAL"))


def test_params_refuse_a_continuation_bar_above_the_rebound_bar() -> None:
    with pytest.raises(ValueError, match="continuation_exit_p"):
        CampaignParams(continuation_exit_p=0.6, rebound_hold_p=0.55)


# --- apply_fill -------------------------------------------------------------------------------------------------

def fill(c: Campaign, side: Side, qty: str, price: str, fee: str = "0", *, in_base: bool = False,
         intent: Intent = Intent.ENTRY, decision: str = "d1"):  # noqa: ANN201
    return apply_fill(c, side=side, quantity=D(qty), price=D(price), fee=D(fee), fee_in_base=in_base,
                      intent=intent, decision_id=decision)


def test_an_entry_fill_opens_a_campaign_keyed_by_its_decision_with_fees_in_the_cost() -> None:
    c, closed = fill(Campaign(), Side.BUY, "2", "100", "0.2")

    assert closed is None
    assert (c.quantity, c.cost, c.average_cost, c.peak_quantity, c.position_id) == (
        D(2), D("200.2"), D("100.1"), D(2), "d1")


def test_a_base_currency_fee_reduces_the_quantity_received() -> None:
    c, _ = fill(Campaign(), Side.BUY, "2", "100", "0.002", in_base=True)

    assert (c.quantity, c.cost) == (D("1.998"), D(200))


def test_partial_and_derisk_sells_are_counted_and_the_final_sell_closes_with_its_return() -> None:
    c, _ = fill(Campaign(), Side.BUY, "2", "100", "0.2")
    c, _ = fill(c, Side.SELL, "0.5", "110", "0.055", intent=Intent.TAKE_PROFIT)
    assert (c.quantity, c.partials_taken) == (D("1.5"), 1)
    c, _ = fill(c, Side.SELL, "0.5", "90", intent=Intent.DERISK)
    assert c.derisked
    c2, closed = fill(c, Side.SELL, "1", "100", "0.1", intent=Intent.EXIT)

    assert c2 == Campaign()
    assert closed is not None and closed.position_id == "d1"
    assert closed.cost == D("200.2")
    assert closed.proceeds == D("54.945") + D(45) + D("99.9")
    assert closed.return_ == pytest.approx(float(D("199.845") / D("200.2") - 1))


# --- karma ------------------------------------------------------------------------------------------------------

def obs(strategy: str, direction: Action, conf: float, ret: float, producer: str = "technical") -> Observation:
    return Observation(strategy, producer, direction, conf, ret)


def test_a_buy_is_right_when_the_campaign_made_money_and_a_sell_when_it_did_not() -> None:
    assert obs("a", Action.BUY, 0.7, 0.05).hit and not obs("a", Action.BUY, 0.7, -0.01).hit
    assert obs("a", Action.SELL, 0.7, -0.01).hit and not obs("a", Action.SELL, 0.7, 0.05).hit
    assert obs("a", Action.SELL, 0.7, -0.01).signed_return == 0.01


def test_score_reports_hit_rate_average_return_brier_and_calibration_bins() -> None:
    s = score([obs("a", Action.BUY, 0.9, 0.1), obs("a", Action.BUY, 0.9, -0.1), obs("a", Action.BUY, 0.3, 0.05)])

    assert (s.n, s.hits, s.hit_rate) == (3, 2, pytest.approx(2 / 3))
    assert s.average_return == pytest.approx(0.05 / 3)
    assert s.brier == pytest.approx(((0.9 - 1) ** 2 + 0.9 ** 2 + (0.3 - 1) ** 2) / 3)
    top, low = s.calibration[4], s.calibration[1]
    assert (top.n, top.mean_confidence, top.hit_rate) == (2, pytest.approx(0.9), 0.5)
    assert (low.n, low.hit_rate) == (1, 1.0)
    assert s.calibration[0].n == 0 and s.calibration[0].hit_rate is None


def test_scorecard_groups_by_strategy_or_by_producer() -> None:
    o = [obs("rsi", Action.BUY, 0.6, 0.1), obs("model", Action.BUY, 0.6, -0.1, "model"),
         obs("macd", Action.BUY, 0.6, 0.2)]

    assert sorted(scorecard(o, "strategy")) == ["macd", "model", "rsi"]
    by_producer = scorecard(o, "producer")
    assert (by_producer["technical"].n, by_producer["model"].hit_rate) == (2, 0.0)
    with pytest.raises(ValueError):
        scorecard(o, "symbol")


def test_adaptive_weights_follow_the_hit_rate_once_there_is_enough_evidence() -> None:
    scores = scorecard([obs("good", Action.BUY, 0.6, 0.1)] * 20 + [obs("bad", Action.BUY, 0.6, -0.1)] * 20
                       + [obs("new", Action.BUY, 0.6, -0.1)] * 3)

    w = adaptive_weights(scores, {"good": 1.0, "bad": 1.0, "new": 1.0, "unscored": 0.5})

    assert w == {"good": 2.0, "bad": 0.25, "new": 1.0, "unscored": 0.5}


def test_an_abstention_is_not_an_observation() -> None:
    with pytest.raises(ValueError):
        obs("a", Action.HOLD, 0.0, 0.1)
