"""Pre-trade risk: exact fixed-fraction sizing, cash with a fee reserve, and every refusal by its reason."""

from __future__ import annotations

from decimal import ROUND_FLOOR, Decimal, localcontext
from typing import Any

import pytest
from hypothesis import example, given, seed, settings
from hypothesis import strategies as st
from quorum.domain.risk import Reason, RiskLimits, SymbolView, Verdict, assess
from quorum.types import Action, Intent, Side

D = Decimal
LIMITS = RiskLimits()  # fraction 0.10, lot 0.00001, min notional 10, fee 0.001
FLAT = SymbolView(position=D(0), pending=False)


def run(action: Action = Action.BUY, *, price: str = "60000", position: str = "0", pending: bool = False,
        cash: str = "10000", equity: str = "10000", halted: bool = False, limits: RiskLimits = LIMITS,
        intent: Intent = Intent.ENTRY, fraction: str = "1") -> Verdict:
    return assess(action, D(price), SymbolView(D(position), pending), cash=D(cash), equity=D(equity),
                  halted=halted, limits=limits, intent=intent, fraction=D(fraction))


def spend(qty: Decimal, price: Decimal, fee_rate: Decimal) -> Decimal:
    """What a buy costs with its fee, computed exactly (no 28-digit rounding)."""
    with localcontext() as ctx:
        ctx.prec = 200
        return qty * price * (1 + fee_rate)


# --- sizing ----------------------------------------------------------------------------------------------

def test_buy_is_sized_as_a_fraction_of_equity_floored_to_the_lot_step() -> None:
    v = run(equity="10000", cash="10000", price="60000")

    assert v.approved and v.side is Side.BUY
    assert v.quantity == D("0.01666")  # 1000 / 60000 = 0.016666… floored, never rounded up
    assert v.checks["sizing"] == "fraction=0.10 qty=0.01666"
    assert v.checks["cash"] == "PASS"


def test_sizing_uses_equity_not_cash_when_cash_is_plentiful() -> None:
    assert run(equity="20000", cash="15000", price="50000").quantity == D("0.04")


def test_cash_caps_the_buy_and_reserves_the_fee_on_top_of_the_notional() -> None:
    v = run(equity="100000", cash="1000", price="60000")

    # fee-free the cap would be 1000/60000 = 0.01666; with a 0.1% fee reserve it is 1000/60060 = 0.016650…
    assert v.approved and v.quantity == D("0.01665")
    assert spend(v.quantity, D("60000"), LIMITS.fee_rate) <= D("1000")
    assert spend(v.quantity + LIMITS.lot_step, D("60000"), LIMITS.fee_rate) > D("1000")


def test_whole_lot_step_sizing_floors_to_integers() -> None:
    limits = RiskLimits(fraction=D("0.5"), lot_step=D("1"), min_notional=D("0"))

    assert run(price="3", equity="100", cash="100", limits=limits).quantity == D("16")


# --- refusals --------------------------------------------------------------------------------------------

def test_buy_too_small_for_the_venue_is_refused_as_below_min_notional() -> None:
    v = run(equity="50", cash="50", price="60000")  # target 5 USDT < 10 USDT minimum, and cash is not the cap

    assert (v.approved, v.quantity, v.reason_code) == (False, None, Reason.BELOW_MIN_NOTIONAL)
    assert v.checks["below_min_notional"] == "FAIL"


def test_buy_without_enough_cash_is_refused_as_insufficient_cash() -> None:
    v = run(equity="10000", cash="5", price="60000")

    assert (v.approved, v.quantity, v.reason_code) == (False, None, Reason.INSUFFICIENT_CASH)


@pytest.mark.parametrize(("equity", "cash", "reason"), [
    ("0.50", "100", Reason.BELOW_MIN_NOTIONAL),  # a tenth of 0.50 buys no whole lot at 60000
    ("100000", "0", Reason.INSUFFICIENT_CASH),
])
def test_buy_that_sizes_to_zero_lots_is_refused_even_without_a_min_notional(equity: str, cash: str,
                                                                           reason: str) -> None:
    v = run(equity=equity, cash=cash, price="60000", limits=RiskLimits(min_notional=D("0")))

    assert (v.approved, v.quantity, v.reason_code) == (False, None, reason)


def test_buy_with_negative_cash_is_refused_as_insufficient_cash() -> None:
    assert run(equity="10000", cash="-5").reason_code == Reason.INSUFFICIENT_CASH


@pytest.mark.parametrize(("action", "position"), [(Action.BUY, "0"), (Action.SELL, "0.5")])
def test_halt_refuses_buys_and_sells_alike(action: Action, position: str) -> None:
    v = run(action, position=position, halted=True)

    assert (v.approved, v.reason_code, v.quantity) == (False, Reason.HALTED, None)
    assert v.checks == {"halted": "FAIL"}
    assert v.side is (Side.BUY if action is Action.BUY else Side.SELL)


@pytest.mark.parametrize(("action", "position"), [(Action.BUY, "0"), (Action.SELL, "0.5")])
def test_an_order_already_pending_refuses_a_new_one(action: Action, position: str) -> None:
    v = run(action, position=position, pending=True)

    assert (v.approved, v.reason_code) == (False, Reason.ORDER_PENDING)
    assert v.checks == {"halted": "PASS", "order_pending": "FAIL"}


def test_buy_while_holding_is_refused_as_position_already_open() -> None:
    v = run(Action.BUY, position="0.00001")

    assert (v.approved, v.reason_code) == (False, Reason.POSITION_ALREADY_OPEN)


@pytest.mark.parametrize("position", ["0", "-0.01"])
def test_sell_when_flat_is_refused_as_no_position_to_close(position: str) -> None:
    v = run(Action.SELL, position=position)

    assert (v.approved, v.side, v.reason_code, v.quantity) == (False, Side.SELL, Reason.NO_POSITION_TO_CLOSE, None)


def test_sell_closes_the_whole_position_whatever_the_cash() -> None:
    v = run(Action.SELL, position="0.01666", cash="0", equity="0", price="1")

    assert (v.approved, v.side, v.quantity) == (True, Side.SELL, D("0.01666"))
    assert v.checks["long_only"] == "PASS"


@pytest.mark.parametrize("halted", [False, True])
def test_hold_is_not_actionable(halted: bool) -> None:
    v = run(Action.HOLD, halted=halted)

    assert (v.approved, v.quantity, v.reason_code) == (False, None, Reason.NOT_ACTIONABLE)


# --- limits ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("fields", [
    {"fraction": D("0")}, {"fraction": D("1.01")}, {"fraction": D("-0.1")},
    {"lot_step": D("0")}, {"min_notional": D("-1")}, {"fee_rate": D("-0.001")},
], ids=["fraction-0", "fraction-over-1", "fraction-negative", "lot-0", "min-notional-negative", "fee-negative"])
def test_risk_limits_refuse_nonsensical_values(fields: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        RiskLimits(**fields)


def test_a_fraction_of_exactly_one_is_allowed() -> None:
    assert RiskLimits(fraction=D("1")).fraction == D("1")


# --- properties ------------------------------------------------------------------------------------------

money = st.decimals(min_value=D("0"), max_value=D("1000000"), places=2)
prices = st.decimals(min_value=D("0.01"), max_value=D("100000"), places=2)
limits_st = st.builds(
    RiskLimits,
    fraction=st.decimals(min_value=D("0.01"), max_value=D("1"), places=2),
    lot_step=st.sampled_from([D("1"), D("0.1"), D("0.003"), D("0.001"), D("0.00001")]),
    min_notional=st.sampled_from([D("0"), D("5"), D("10")]),
    fee_rate=st.decimals(min_value=D("0"), max_value=D("0.01"), places=4),
)


def assert_sound_buy(v: Verdict, price: Decimal, cash: Decimal, equity: Decimal, limits: RiskLimits) -> None:
    if not v.approved:
        assert v.reason_code in {Reason.BELOW_MIN_NOTIONAL, Reason.INSUFFICIENT_CASH}
        return
    qty = v.quantity
    assert qty is not None and qty > 0
    assert spend(qty, price, limits.fee_rate) <= cash, "the buy and its fee must fit in the cash"
    assert qty % limits.lot_step == 0, "quantity must be a whole number of lots"
    assert qty * price <= equity * limits.fraction, "never more than the fraction of equity"
    assert qty * price >= limits.min_notional
    # and it is the largest such quantity: one more lot breaks the cash or the fraction
    bigger = qty + limits.lot_step
    assert spend(bigger, price, limits.fee_rate) > cash or bigger * price > equity * limits.fraction


@seed(20240201)
@settings(max_examples=200, deadline=None)
@given(cash=money, extra_equity=money, price=prices, limits=limits_st)
def test_an_approved_buy_never_spends_more_than_cash_and_is_whole_lots(
        cash: Decimal, extra_equity: Decimal, price: Decimal, limits: RiskLimits) -> None:
    equity = cash + extra_equity
    v = assess(Action.BUY, price, FLAT, cash=cash, equity=equity, halted=False, limits=limits)

    assert_sound_buy(v, price, cash, equity, limits)


@seed(20240202)
@settings(max_examples=200, deadline=None)
@given(price=st.decimals(min_value=D("0.00000001"), max_value=D("10000000"), places=8),
       lots=st.integers(min_value=1, max_value=10**7),
       fee_rate=st.sampled_from([D("0"), D("0.001"), D("0.00075")]))
@example(price=D("4194.10398236"), lots=220154, fee_rate=D("0.001"))
def test_a_buy_never_overspends_when_cash_sits_just_below_a_lot_boundary(
        price: Decimal, lots: int, fee_rate: Decimal) -> None:
    """Cash one 28-digit step below the exact cost of ``lots`` lots: the 28-digit division rounds the affordable
    quantity up onto the boundary, so the sizing must not trust it blindly."""
    limits = RiskLimits(fraction=D("1"), min_notional=D("0"), fee_rate=fee_rate)
    boundary = spend(lots * limits.lot_step, price, fee_rate)
    with localcontext() as ctx:
        ctx.rounding = ROUND_FLOOR
        cash = +boundary  # to the context's 28 digits, rounding down
        if cash == boundary:
            cash = cash.next_minus()
    v = assess(Action.BUY, price, FLAT, cash=cash, equity=D("1E+12"), halted=False, limits=limits)

    assert_sound_buy(v, price, cash, D("1E+12"), limits)
    if v.approved:
        assert v.quantity < lots * limits.lot_step


# --- council intents: partial sells and re-entries ------------------------------------------------------------

def test_a_partial_sell_sells_that_fraction_of_the_position_floored_to_the_lot_step() -> None:
    v = run(Action.SELL, position="0.01666", intent=Intent.TAKE_PROFIT, fraction="0.33")

    assert v.approved and v.quantity == D("0.00549")  # 0.0054978 floored
    assert v.checks["sizing"] == "sell fraction=0.33 qty=0.00549"


def test_a_partial_sell_below_the_venue_minimum_is_refused_but_a_full_exit_is_not() -> None:
    assert run(Action.SELL, price="100", position="0.15", intent=Intent.DERISK,
               fraction="0.5").reason_code == Reason.BELOW_MIN_NOTIONAL
    assert run(Action.SELL, price="100", position="0.05", intent=Intent.EXIT).quantity == D("0.05")


def test_a_reentry_tops_up_its_fraction_of_a_full_entry_on_an_open_position() -> None:
    v = run(position="0.01", intent=Intent.REENTRY, fraction="0.25", price="50000")

    assert v.approved and v.quantity == D("0.005")  # 10000 x 10% x 25% / 50000
    assert v.checks["one_position_per_symbol"] == "REENTRY"
