"""Double-entry ledger: postings per fill, balance checks per currency, positions as a fold over fills,
and the hash chain that makes any edited journal row detectable.

Sign convention: debit > 0, credit < 0; every transaction sums to zero *per currency*. Exchanging one
currency for another goes through a ``trading`` account per currency so each currency balances alone.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, replace
from decimal import Decimal

from quorum.types import Side, TradingMode, split_symbol

GENESIS_HASH = "0" * 64
ZERO = Decimal(0)


@dataclass(frozen=True)
class Line:
    account: str
    currency: str
    amount: Decimal


class UnbalancedTransaction(ValueError):
    pass


def account(mode: TradingMode, kind: str, currency: str) -> str:
    """Accounts are namespaced by mode so paper and live books never mix: ``paper:cash:USDT``."""
    return f"{mode.value.lower()}:{kind}:{currency}"


def check_balanced(lines: Iterable[Line]) -> None:
    totals: dict[str, Decimal] = defaultdict(Decimal)
    for line in lines:
        totals[line.currency] += line.amount
    bad = {c: t for c, t in totals.items() if t != 0}
    if bad:
        raise UnbalancedTransaction(f"transaction does not balance: {bad}")


def opening_balance(mode: TradingMode, currency: str, amount: Decimal) -> list[Line]:
    lines = [Line(account(mode, "cash", currency), currency, amount),
             Line(account(mode, "equity", currency), currency, -amount)]
    check_balanced(lines)
    return lines


def fill_lines(mode: TradingMode, symbol: str, side: Side, qty: Decimal, price: Decimal, fee: Decimal,
               fee_currency: str) -> list[Line]:
    base, quote = split_symbol(symbol)
    notional = qty * price
    sign = Decimal(1) if side is Side.BUY else Decimal(-1)
    lines = [
        Line(account(mode, "asset", base), base, sign * qty),
        Line(account(mode, "trading", base), base, -sign * qty),
        Line(account(mode, "trading", quote), quote, sign * notional),
        Line(account(mode, "cash", quote), quote, -sign * notional),
    ]
    if fee:
        fee_source = "cash" if fee_currency == quote else "asset"
        lines += [Line(account(mode, "fees", fee_currency), fee_currency, fee),
                  Line(account(mode, fee_source, fee_currency), fee_currency, -fee)]
    check_balanced(lines)
    return lines


def txn_hash(prev_hash: str, txn_id: str, ts_iso: str, description: str, lines: Iterable[Line]) -> str:
    """SHA-256 over the previous hash and a canonical rendering of this transaction."""
    body = "|".join(
        [prev_hash, txn_id, ts_iso, description]
        + [f"{ln.account}:{ln.currency}:{ln.amount.normalize():f}" for ln in sorted(lines, key=_key)]
    )
    return hashlib.sha256(body.encode()).hexdigest()


def _key(line: Line) -> tuple[str, str, Decimal]:
    return (line.account, line.currency, line.amount)


def balances(lines: Iterable[Line]) -> dict[str, Decimal]:
    out: dict[str, Decimal] = defaultdict(Decimal)
    for line in lines:
        out[line.account] += line.amount
    return dict(out)


@dataclass(frozen=True)
class Position:
    """Average-cost position; fees are tracked apart from the cost basis."""

    quantity: Decimal = ZERO
    avg_cost: Decimal = ZERO
    realized_pnl: Decimal = ZERO
    fees_paid: Decimal = ZERO

    def apply_fill(self, side: Side, qty: Decimal, price: Decimal, fee_in_quote: Decimal) -> Position:
        if side is Side.BUY:
            new_qty = self.quantity + qty
            avg = (self.quantity * self.avg_cost + qty * price) / new_qty
            return replace(self, quantity=new_qty, avg_cost=avg, fees_paid=self.fees_paid + fee_in_quote)
        if qty > self.quantity:
            raise ValueError(f"sell of {qty} exceeds position {self.quantity} (spot is long-only)")
        remaining = self.quantity - qty
        return replace(
            self,
            quantity=remaining,
            avg_cost=self.avg_cost if remaining else ZERO,
            realized_pnl=self.realized_pnl + (price - self.avg_cost) * qty,
            fees_paid=self.fees_paid + fee_in_quote,
        )

    def unrealized(self, mark: Decimal) -> Decimal:
        return (mark - self.avg_cost) * self.quantity
