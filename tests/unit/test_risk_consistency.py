"""The comparison of risk's books with the ledger's, and when a difference is real rather than in flight."""

from __future__ import annotations

from decimal import Decimal

from quorum.risk.consistency import BookView, Check, Divergence, Kind, compare, review, risk_view

D = Decimal
CASH = Divergence(Kind.CASH, "USDT", D("9101.71"), D("9847.89"))
BTC = Divergence(Kind.POSITION, "BTC/USDT", D(0), D("0.5"))


def test_reserved_cash_still_counts_as_cash_and_equal_books_have_no_divergence() -> None:
    risk = risk_view(D(9000), D(1000), {"BTC/USDT": D("0.5"), "ETH/USDT": D(0)})

    assert compare(risk, BookView(D(10000), {"BTC/USDT": D("0.5")}), "USDT") == ()


def test_every_differing_figure_is_named_cash_first_then_symbols_in_order() -> None:
    risk = BookView(D("9101.71"), {"ETH/USDT": D(2), "BTC/USDT": D(0)})
    ledger = BookView(D("9847.89"), {"BTC/USDT": D("0.5"), "SOL/USDT": D(3), "ETH/USDT": D(2)})

    found = compare(risk, ledger, "USDT")

    assert found == (CASH, BTC, Divergence(Kind.POSITION, "SOL/USDT", D(0), D(3)))
    assert found[0].difference == D("-746.18")


def test_a_divergence_seen_once_or_across_order_activity_is_in_flight_not_an_alert() -> None:
    first = review(None, Check((CASH,), activity=(3, 7)))
    busy = review(Check((CASH,), (3, 7)), Check((CASH,), (4, 7)))  # an order settled in between
    moved = review(Check((CASH,), (3, 7)), Check((CASH,), (3, 8)))  # a fill was posted in between

    assert [r.alert for r in (first, busy, moved)] == [False, False, False]
    assert first.persistent == busy.persistent == moved.persistent == ()


def test_the_same_divergence_twice_with_no_activity_alerts_once_then_stands_until_the_books_agree() -> None:
    quiet = (3, 7)
    raised = review(Check((CASH, BTC), quiet), Check((CASH, BTC), quiet))
    again = review(Check((CASH, BTC), quiet), Check((CASH, BTC), quiet), raised.alerted)
    busy = review(Check((CASH, BTC), quiet), Check((CASH,), (4, 7)), again.alerted)
    fixed = review(Check((CASH,), (4, 7)), Check((), (4, 7)), busy.alerted)

    assert (raised.alert, raised.persistent) == (True, (CASH, BTC))
    assert (again.alert, again.alerted) == (False, (CASH, BTC))  # not one alert per check
    assert (busy.alert, busy.cleared, busy.alerted) == (False, ((Kind.POSITION, "BTC/USDT"),), (CASH,))
    assert (fixed.cleared, fixed.alerted) == (((Kind.CASH, "USDT"),), ())


def test_a_divergence_that_changed_its_figures_is_alerted_anew() -> None:
    worse = Divergence(Kind.CASH, "USDT", D("9000"), D("9847.89"))
    before = review(Check((CASH,), 1), Check((CASH,), 1))
    after = review(Check((worse,), 2), Check((worse,), 2), before.alerted)

    assert before.alert and after.alert and after.alerted == (worse,)


def test_a_divergence_that_differs_between_the_two_checks_is_not_confirmed() -> None:
    other = Divergence(Kind.CASH, "USDT", D("9100"), D("9847.89"))

    assert review(Check((CASH,), 1), Check((other,), 1)).persistent == ()
