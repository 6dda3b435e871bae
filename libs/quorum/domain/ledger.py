"""Double-entry ledger: postings per fill, balance checks per currency, positions as a fold over fills,
and the keyed hash chain that makes any edited journal row detectable.

Sign convention: debit > 0, credit < 0; every transaction sums to zero *per currency*. Exchanging one
currency for another goes through a ``trading`` account per currency so each currency balances alone.
"""

from __future__ import annotations

import hashlib
import hmac
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, replace
from decimal import Decimal

from quorum.domain.position import fill_effect
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
               fee_currency: str, realized: Decimal = ZERO) -> list[Line]:
    """A fill's postings, always in this order (``parse_fill`` relies on it): asset, trading base, trading
    quote, cash; then the fee pair when there is a fee; then, for a sell that realized a profit or loss, the
    ``realized`` amount moved from the quote trading account to realized PnL (a gain is a credit)."""
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
    if realized:
        lines += [Line(account(mode, "trading", quote), quote, realized),
                  Line(account(mode, "realized_pnl", quote), quote, -realized)]
    check_balanced(lines)
    return lines


@dataclass(frozen=True)
class ParsedFill:
    base: str
    quote: str
    side: Side
    quantity: Decimal
    notional: Decimal
    fee: Decimal
    fee_currency: str | None
    realized: Decimal


def parse_fill(lines: list[Line]) -> ParsedFill | None:
    """The fill a journal transaction records (None when it is not a fill, e.g. the opening balance)."""
    if len(lines) < 4 or not lines[0].account.split(":")[1:2] == ["asset"]:
        return None
    asset, _, trading_quote, _ = lines[:4]
    rest = lines[4:]
    fee = fee_ccy = None
    if rest and rest[0].account.split(":")[1] == "fees":
        fee, fee_ccy, rest = rest[0].amount, rest[0].currency, rest[2:]
    realized = rest[1].amount * -1 if rest and rest[1].account.split(":")[1] == "realized_pnl" else ZERO
    return ParsedFill(asset.currency, trading_quote.currency, Side.BUY if asset.amount > 0 else Side.SELL,
                      abs(asset.amount), abs(trading_quote.amount), fee or ZERO, fee_ccy, realized)


def _txn_body(prev_hash: str, txn_id: str, ts_iso: str, description: str, lines: Iterable[Line]) -> bytes:
    return "|".join(
        [prev_hash, txn_id, ts_iso, description]
        + [f"{ln.account}:{ln.currency}:{ln.amount.normalize():f}" for ln in sorted(lines, key=_key)]
    ).encode()


def txn_hash(prev_hash: str, txn_id: str, ts_iso: str, description: str, lines: Iterable[Line], *,
             key: bytes) -> str:
    """HMAC-SHA256, under a key kept outside the database, over the previous hash and a canonical rendering of
    this transaction: whoever owns the database can edit a row but cannot recompute a hash that passes."""
    return hmac.new(key, _txn_body(prev_hash, txn_id, ts_iso, description, lines), hashlib.sha256).hexdigest()


def legacy_txn_hash(prev_hash: str, txn_id: str, ts_iso: str, description: str, lines: Iterable[Line]) -> str:
    """The unkeyed SHA-256 of transactions posted before migration 0008 (it re-chains them under the key)."""
    return hashlib.sha256(_txn_body(prev_hash, txn_id, ts_iso, description, lines)).hexdigest()


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
        return self.apply(side, qty, qty * price, fee_in_quote)

    def realized_by(self, qty: Decimal, notional: Decimal) -> Decimal:
        """What selling ``qty`` for ``notional`` realizes against the average cost (fees apart)."""
        return notional - self.avg_cost * qty

    def apply(self, side: Side, qty: Decimal, notional: Decimal, fee_in_quote: Decimal) -> Position:
        """Fold one fill given its quote notional (exact: no price division needed to rebuild from a journal)."""
        if side is Side.BUY:
            new_qty = self.quantity + qty
            avg = (self.quantity * self.avg_cost + notional) / new_qty
            return replace(self, quantity=new_qty, avg_cost=avg, fees_paid=self.fees_paid + fee_in_quote)
        if qty > self.quantity:
            raise ValueError(f"sell of {qty} exceeds position {self.quantity} (spot is long-only)")
        remaining = self.quantity - qty
        return replace(
            self,
            quantity=remaining,
            avg_cost=self.avg_cost if remaining else ZERO,
            realized_pnl=self.realized_pnl + self.realized_by(qty, notional),
            fees_paid=self.fees_paid + fee_in_quote,
        )

    def unrealized(self, mark: Decimal) -> Decimal:
        return (mark - self.avg_cost) * self.quantity


def position_effect(fill: ParsedFill) -> tuple[Side, Decimal, Decimal, Decimal]:
    """(side, quantity, notional, fee in quote) a fill has on the position, by ``fill_effect``: a fee paid in
    the base asset changes what is held (a buy receives less, a sell gives more) and is valued at the fill's
    price; the cost basis never includes fees, which are kept apart."""
    effect = fill_effect(fill.side, fill.quantity, fill.notional, fill.fee, fill.fee_currency, fill.base)
    if effect.quantity == fill.quantity:  # no fee in the base asset: the fill's own quantity and notional
        return fill.side, fill.quantity, fill.notional, effect.fee_quote
    if fill.side is Side.BUY:  # what is held cost its share of the notional
        return fill.side, effect.quantity, effect.quantity * (fill.notional / fill.quantity), effect.fee_quote
    return fill.side, effect.quantity, fill.notional + effect.fee_quote, effect.fee_quote


# --- the journal as a fold ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class JournalEntry:
    """One stored transaction, as read back from the journal (``seq`` order)."""

    seq: int
    txn_id: str
    ts_iso: str
    description: str
    lines: tuple[Line, ...]
    prev_hash: str
    hash: str


def verify_chain(journal: Iterable[JournalEntry], *, key: bytes | None) -> list[str]:
    """Every way the journal differs from an untouched chain: a recomputed hash that does not match (an
    edited row), or a link that does not point at its predecessor (a removed or reordered row).
    ``key=None`` checks the legacy unkeyed chain (for migration 0008)."""
    problems, prev = [], GENESIS_HASH
    for e in journal:
        if e.prev_hash != prev:
            problems.append(f"seq {e.seq} ({e.txn_id}): links to {e.prev_hash[:12]}…, expected {prev[:12]}…")
        fields = (e.prev_hash, e.txn_id, e.ts_iso, e.description, e.lines)
        if (legacy_txn_hash(*fields) if key is None else txn_hash(*fields, key=key)) != e.hash:
            problems.append(f"seq {e.seq} ({e.txn_id}): content does not match its hash (altered)")
        prev = e.hash
    return problems


@dataclass(frozen=True)
class Books:
    balances: dict[str, Decimal]
    positions: dict[str, Position]


def replay(journal: Iterable[JournalEntry]) -> Books:
    """Balances per account and positions per symbol, rebuilt from nothing but the journal."""
    totals: dict[str, Decimal] = defaultdict(Decimal)
    positions: dict[str, Position] = {}
    for e in journal:
        for line in e.lines:
            totals[line.account] += line.amount
        fill = parse_fill(list(e.lines))
        if fill is None:
            continue
        symbol = f"{fill.base}/{fill.quote}"
        positions[symbol] = positions.get(symbol, Position()).apply(*position_effect(fill))
    return Books(dict(totals), positions)
