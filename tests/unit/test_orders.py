"""The order state machine and the order's fold over its fills."""

from __future__ import annotations

from decimal import Decimal
from itertools import product

import pytest
from quorum.domain.orders import TRANSITIONS, IllegalTransition, OrderState, check_transition
from quorum.types import TERMINAL_STATUSES, OrderStatus

S = OrderStatus
D = Decimal
ALL_PAIRS = list(product(S, S))
LEGAL = [(a, b) for a, b in ALL_PAIRS if b in TRANSITIONS[a]]
ILLEGAL = [(a, b) for a, b in ALL_PAIRS if b not in TRANSITIONS[a]]


def _id(pair: tuple[S, S]) -> str:
    return f"{pair[0]}->{pair[1]}"


def test_every_status_has_a_transition_entry() -> None:
    assert set(TRANSITIONS) == set(S)
    assert len(LEGAL) + len(ILLEGAL) == len(S) ** 2 and LEGAL and ILLEGAL


@pytest.mark.parametrize("pair", LEGAL, ids=_id)
def test_legal_transition_is_accepted(pair: tuple[S, S]) -> None:
    current, target = pair
    check_transition(current, target)

    assert OrderState(D("1"), status=current).to(target).status is target


@pytest.mark.parametrize("pair", ILLEGAL, ids=_id)
def test_any_other_transition_raises_illegal_transition(pair: tuple[S, S]) -> None:
    current, target = pair
    state = OrderState(D("1"), status=current)

    with pytest.raises(IllegalTransition, match=f"{current} -> {target}") as info:
        state.to(target)
    assert (info.value.current, info.value.target) == (current, target)
    assert state.status is current  # the state object is untouched


@pytest.mark.parametrize("status", sorted(TERMINAL_STATUSES))
def test_terminal_states_have_no_exits(status: S) -> None:
    assert status.is_terminal
    assert TRANSITIONS[status] == frozenset()


@pytest.mark.parametrize("status", sorted(set(S) - TERMINAL_STATUSES))
def test_every_live_state_can_still_end(status: S) -> None:
    assert not status.is_terminal
    assert TRANSITIONS[status] & TERMINAL_STATUSES


@pytest.mark.parametrize(("current", "target", "legal"), [
    (S.PENDING, S.FILLED, False),                          # never fills before it reaches a venue
    (S.PENDING, S.SUBMITTED, True),
    (S.SUBMITTED, S.FILLED, True),                     # a market order may fill at once
    (S.PARTIALLY_FILLED, S.PARTIALLY_FILLED, True),    # several partial fills
    (S.ACCEPTED, S.REJECTED, False),                   # accepted orders end by fill, cancel or expiry
    (S.FILLED, S.CANCELED, False),
    (S.CANCELED, S.PENDING, False),
    (S.ACCEPTED, S.PENDING, False),
])
def test_business_rules_of_the_order_lifecycle(current: S, target: S, legal: bool) -> None:
    assert (target in TRANSITIONS[current]) is legal


def test_no_state_leads_back_to_new() -> None:
    assert all(S.PENDING not in exits for exits in TRANSITIONS.values())


# --- fills -----------------------------------------------------------------------------------------------

def submitted(qty: str = "0.03") -> OrderState:
    return OrderState(D(qty)).to(S.SUBMITTED)


def test_partial_then_full_fill_ends_filled_with_the_exact_average_price() -> None:
    partial = submitted().apply_fill(D("0.01"), D("60000"), D("0.6"))
    full = partial.apply_fill(D("0.02"), D("60300"), D("1.206"))

    assert (partial.status, partial.filled_quantity, partial.average_price) == (S.PARTIALLY_FILLED, D("0.01"),
                                                                               D("60000"))
    assert (full.status, full.filled_quantity) == (S.FILLED, D("0.03"))
    assert full.quote_spent == D("1806")  # 600 + 1206
    assert full.average_price == D("60200")
    assert full.fees == D("1.806")


def test_several_partials_stay_partially_filled_until_the_quantity_is_reached() -> None:
    state = submitted("0.03")
    statuses = []
    for _ in range(3):
        state = state.apply_fill(D("0.01"), D("100.5"), D("0"))
        statuses.append(state.status)

    assert statuses == [S.PARTIALLY_FILLED, S.PARTIALLY_FILLED, S.FILLED]
    assert state.average_price == D("100.5")


def test_a_single_full_fill_goes_straight_to_filled_from_accepted() -> None:
    state = submitted().to(S.ACCEPTED).apply_fill(D("0.03"), D("61000.5"), D("1.830015"))

    assert (state.status, state.average_price) == (S.FILLED, D("61000.5"))


def test_no_average_price_before_any_fill() -> None:
    assert submitted().average_price is None


def test_overfill_raises_and_leaves_the_order_unchanged() -> None:
    partial = submitted().apply_fill(D("0.02"), D("60000"), D("0"))

    with pytest.raises(ValueError, match="overfill"):
        partial.apply_fill(D("0.01001"), D("60000"), D("0"))
    assert (partial.status, partial.filled_quantity) == (S.PARTIALLY_FILLED, D("0.02"))


def test_a_fill_on_an_order_not_yet_submitted_is_illegal() -> None:
    with pytest.raises(IllegalTransition):
        OrderState(D("1")).apply_fill(D("0.5"), D("10"), D("0"))


@pytest.mark.parametrize("terminal", [S.CANCELED, S.EXPIRED, S.REJECTED])
def test_a_fill_after_the_order_ended_is_illegal(terminal: S) -> None:
    ended = submitted().to(terminal)

    with pytest.raises(IllegalTransition):
        ended.apply_fill(D("0.01"), D("60000"), D("0"))
