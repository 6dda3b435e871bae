"""The double-entry ledger: balanced postings, hash chain, average-cost positions."""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Iterable
from decimal import Decimal

import pytest
from hypothesis import given, seed, settings
from hypothesis import strategies as st
from quorum.domain.ledger import (
    GENESIS_HASH,
    Line,
    Position,
    UnbalancedTransaction,
    account,
    balances,
    check_balanced,
    fill_lines,
    opening_balance,
    txn_hash,
)
from quorum.types import Side, TradingMode

D = Decimal
PAPER = TradingMode.PAPER


def per_currency(lines: Iterable[Line]) -> dict[str, Decimal]:
    totals: dict[str, Decimal] = defaultdict(Decimal)
    for ln in lines:
        totals[ln.currency] += ln.amount
    return dict(totals)


def assert_balanced(lines: list[Line]) -> None:
    """Independent of ``check_balanced``: every currency sums to exactly zero."""
    assert lines
    assert all(total == 0 for total in per_currency(lines).values()), per_currency(lines)


# --- postings --------------------------------------------------------------------------------------------

QTY, PRICE, FEE_Q, FEE_B = D("0.01657"), D("60643.8"), D("1.004867766"), D("0.00001657")
NOTIONAL = QTY * PRICE  # 1004.867766


@pytest.mark.parametrize(("side", "fee", "fee_ccy", "expected"), [
    (Side.BUY, FEE_Q, "USDT", {"paper:asset:BTC": QTY, "paper:trading:BTC": -QTY,
                               "paper:trading:USDT": NOTIONAL, "paper:cash:USDT": -NOTIONAL - FEE_Q,
                               "paper:fees:USDT": FEE_Q}),
    (Side.BUY, FEE_B, "BTC", {"paper:asset:BTC": QTY - FEE_B, "paper:trading:BTC": -QTY,
                              "paper:trading:USDT": NOTIONAL, "paper:cash:USDT": -NOTIONAL,
                              "paper:fees:BTC": FEE_B}),
    (Side.SELL, FEE_Q, "USDT", {"paper:asset:BTC": -QTY, "paper:trading:BTC": QTY,
                                "paper:trading:USDT": -NOTIONAL, "paper:cash:USDT": NOTIONAL - FEE_Q,
                                "paper:fees:USDT": FEE_Q}),
    (Side.SELL, FEE_B, "BTC", {"paper:asset:BTC": -QTY - FEE_B, "paper:trading:BTC": QTY,
                               "paper:trading:USDT": -NOTIONAL, "paper:cash:USDT": NOTIONAL,
                               "paper:fees:BTC": FEE_B}),
], ids=["buy-fee-in-quote", "buy-fee-in-base", "sell-fee-in-quote", "sell-fee-in-base"])
def test_fill_lines_balance_per_currency_and_move_the_right_accounts(
        side: Side, fee: Decimal, fee_ccy: str, expected: dict[str, Decimal]) -> None:
    lines = fill_lines(PAPER, "BTC/USDT", side, QTY, PRICE, fee, fee_ccy)

    assert_balanced(lines)
    assert balances(lines) == expected


def test_a_fill_without_fee_posts_no_fee_lines() -> None:
    lines = fill_lines(PAPER, "ETH/USDT", Side.BUY, D("1.5"), D("3000"), D("0"), "USDT")

    assert_balanced(lines)
    assert len(lines) == 4
    assert not any(":fees:" in ln.account for ln in lines)


def test_paper_and_live_books_use_separate_accounts() -> None:
    live = fill_lines(TradingMode.LIVE, "BTC/USDT", Side.BUY, QTY, PRICE, FEE_Q, "USDT")

    assert all(ln.account.startswith("live:") for ln in live)
    assert account(PAPER, "cash", "USDT") == "paper:cash:USDT"


def test_opening_balance_debits_cash_against_equity_and_balances() -> None:
    lines = opening_balance(PAPER, "USDT", D("10000"))

    assert_balanced(lines)
    assert balances(lines) == {"paper:cash:USDT": D("10000"), "paper:equity:USDT": D("-10000")}


@pytest.mark.parametrize("lines", [
    [Line("a", "USDT", D("1")), Line("b", "USDT", D("-0.99"))],
    [Line("a", "USDT", D("1")), Line("b", "BTC", D("-1"))],  # nets to zero overall, but not per currency
    [Line("a", "USDT", D("0.00000001"))],
], ids=["short-by-a-cent", "cross-currency", "single-line"])
def test_check_balanced_refuses_an_unbalanced_transaction(lines: list[Line]) -> None:
    with pytest.raises(UnbalancedTransaction, match="does not balance"):
        check_balanced(lines)


def test_check_balanced_accepts_a_balanced_multi_currency_transaction() -> None:
    check_balanced(fill_lines(PAPER, "BTC/USDT", Side.BUY, QTY, PRICE, FEE_Q, "USDT"))


# --- hash chain ------------------------------------------------------------------------------------------

KEY = b"unit-test-chain-key-0123"
HASH_ARGS = dict(prev_hash=GENESIS_HASH, txn_id="t-1", ts_iso="2024-01-01T01:00:00+00:00", description="fill f-1",
                 key=KEY)
LINES = fill_lines(PAPER, "BTC/USDT", Side.BUY, QTY, PRICE, FEE_Q, "USDT")
BASE_HASH = txn_hash(lines=LINES, **HASH_ARGS)


def _with_line(i: int, **change: object) -> list[Line]:
    lines = list(LINES)
    old = lines[i]
    lines[i] = Line(**{"account": old.account, "currency": old.currency, "amount": old.amount, **change})
    return lines


@pytest.mark.parametrize(("args", "lines"), [
    ({}, _with_line(0, amount=QTY + D("0.00000001"))),
    ({}, _with_line(3, amount=-(LINES[3].amount))),
    ({}, _with_line(1, account="paper:asset:ETH")),
    ({}, _with_line(1, currency="ETH")),
    ({}, LINES[:-1]),
    ({"description": "fill f-2"}, LINES),
    ({"prev_hash": "f" * 64}, LINES),
    ({"txn_id": "t-2"}, LINES),
    ({"ts_iso": "2024-01-01T01:00:01+00:00"}, LINES),
], ids=["amount", "sign", "account", "currency", "dropped-line", "description", "prev-hash", "txn-id", "ts"])
def test_txn_hash_changes_when_anything_it_covers_changes(args: dict[str, str], lines: list[Line]) -> None:
    assert txn_hash(lines=lines, **{**HASH_ARGS, **args}) != BASE_HASH


def test_txn_hash_is_independent_of_line_order() -> None:
    shuffled = list(LINES)
    random.Random(7).shuffle(shuffled)

    assert shuffled != LINES
    assert txn_hash(lines=shuffled, **HASH_ARGS) == txn_hash(lines=reversed(LINES), **HASH_ARGS) == BASE_HASH


def test_txn_hash_depends_on_the_amount_value_not_its_trailing_zeros() -> None:
    padded = [Line(ln.account, ln.currency, ln.amount.quantize(D("1E-18"))) for ln in LINES]

    assert txn_hash(lines=padded, **HASH_ARGS) == BASE_HASH


def test_txn_hash_is_a_sha256_hex_digest_that_chains() -> None:
    second = txn_hash(prev_hash=BASE_HASH, txn_id="t-2", ts_iso="x", description="d", lines=LINES, key=KEY)

    assert len(BASE_HASH) == 64 and int(BASE_HASH, 16) >= 0
    assert second != txn_hash(prev_hash=GENESIS_HASH, txn_id="t-2", ts_iso="x", description="d", lines=LINES, key=KEY)


# --- positions -------------------------------------------------------------------------------------------

def test_position_average_cost_and_realized_pnl_are_exact() -> None:
    p = Position()
    p = p.apply_fill(Side.BUY, D("0.01"), D("60000"), D("0.6"))
    p = p.apply_fill(Side.BUY, D("0.03"), D("62000"), D("1.86"))
    assert (p.quantity, p.avg_cost) == (D("0.04"), D("61500"))  # (600 + 1860) / 0.04

    p = p.apply_fill(Side.SELL, D("0.02"), D("63000"), D("1.26"))
    assert (p.quantity, p.avg_cost, p.realized_pnl) == (D("0.02"), D("61500"), D("30"))
    assert p.unrealized(D("60000")) == D("-30")

    p = p.apply_fill(Side.SELL, D("0.02"), D("61000"), D("1.22"))
    assert (p.quantity, p.avg_cost, p.realized_pnl) == (D("0"), D("0"), D("20"))  # 30 - 500 * 0.02
    assert p.fees_paid == D("4.94")


@pytest.mark.parametrize(("held", "sell"), [("0", "0.00001"), ("0.01", "0.01001")])
def test_selling_more_than_held_raises(held: str, sell: str) -> None:
    p = Position() if held == "0" else Position().apply_fill(Side.BUY, D(held), D("100"), D("0"))

    with pytest.raises(ValueError, match="exceeds position"):
        p.apply_fill(Side.SELL, D(sell), D("100"), D("0"))
    assert p.quantity == D(held)


# --- property: a random trading day keeps the books straight ----------------------------------------------

START = D("1000000.00")
FEE_RATE = D("0.001")


@st.composite
def trade_sequences(draw: st.DrawFn) -> list[tuple[Side, Decimal, Decimal, Decimal]]:
    """Buys and sells (never selling more than held): 5-dp quantities, 2-dp prices, fee in quote."""
    held_lots, trades = 0, []
    for _ in range(draw(st.integers(min_value=1, max_value=25))):
        sell = held_lots > 0 and draw(st.booleans())
        lots = draw(st.integers(min_value=1, max_value=held_lots if sell else 200_000))
        held_lots += -lots if sell else lots
        qty = D(lots) * D("0.00001")
        price = D(draw(st.integers(min_value=1, max_value=10_000_000))) / 100
        fee = draw(st.sampled_from([D(0), qty * price * FEE_RATE]))
        trades.append((Side.SELL if sell else Side.BUY, qty, price, fee))
    return trades


@seed(20240301)
@settings(max_examples=200, deadline=None)
@given(trades=trade_sequences())
def test_ledger_and_position_agree_over_any_sequence_of_fills(
        trades: list[tuple[Side, Decimal, Decimal, Decimal]]) -> None:
    journal = opening_balance(PAPER, "USDT", START)
    position = Position()
    for side, qty, price, fee in trades:
        lines = fill_lines(PAPER, "BTC/USDT", side, qty, price, fee, "USDT")
        assert_balanced(lines)
        journal += lines
        position = position.apply_fill(side, qty, price, fee)

    bought = sum((q for s, q, _, _ in trades if s is Side.BUY), D(0))
    sold = sum((q for s, q, _, _ in trades if s is Side.SELL), D(0))
    spent = sum((q * p for s, q, p, _ in trades if s is Side.BUY), D(0))
    received = sum((q * p for s, q, p, _ in trades if s is Side.SELL), D(0))
    fees = sum((f for *_, f in trades), D(0))
    book = balances(journal)

    assert_balanced(journal)
    assert book["paper:asset:BTC"] == position.quantity == bought - sold
    assert book["paper:trading:BTC"] == -(bought - sold)
    assert book["paper:cash:USDT"] == START - spent - fees + received
    assert book.get("paper:fees:USDT", D(0)) == fees == position.fees_paid
    assert book["paper:equity:USDT"] == -START
